"""BulkSender unit tests against ``httpx.MockTransport``."""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from support import KEY, Endpoint, error_body

import bucket_logging
from bucket_logging import (
    BulkSender,
    ConfigurationError,
    DeliveryError,
    Item,
    SenderStats,
    get_sender,
)
from bucket_logging._items.item import MAX_BODY_BYTES

Make = Callable[..., BulkSender]


def events(n: int, start: int = 0, **attributes: Any) -> list[Item]:
    return [Item.event("e", i, {"i": i, **attributes}) for i in range(start, start + n)]


def ids(items: list[dict[str, Any]]) -> list[int]:
    return sorted(item["attributes"]["i"] for item in items)


def enqueue_all(sender: BulkSender, items: list[Item]) -> None:
    results = [sender.enqueue(item) for item in items]  # every one, even after a False
    assert all(results)


class Errors:
    """An on_error callback that remembers what it got and on which thread."""

    def __init__(self) -> None:
        self.errors: list[DeliveryError] = []
        self.threads: set[int] = set()

    def __call__(self, error: DeliveryError) -> None:
        self.errors.append(error)
        self.threads.add(threading.get_ident())


def status(code: int, body: Any = None, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(code, json=body if body is not None else {}, headers=headers)


# --------------------------------------------------------------------------- batching


def test_batches_close_on_count(make_sender: Make) -> None:
    endpoint = Endpoint()
    sender = make_sender(transport=endpoint.transport(), max_batch_items=10, flush_interval=60)
    enqueue_all(sender, events(10))
    # a full batch goes out at once, long before the flush interval
    assert endpoint.wait_delivered(10)
    enqueue_all(sender, events(25, start=10))
    assert sender.flush(10)
    sizes = [len(seen.items) for seen in endpoint.requests]
    assert sizes[0] == 10
    assert max(sizes) <= 10
    assert len(sizes) >= 4
    assert ids(endpoint.delivered) == list(range(35))


def test_batches_close_on_bytes(make_sender: Make) -> None:
    endpoint = Endpoint()
    sender = make_sender(transport=endpoint.transport(), flush_interval=60)
    blob = "x" * 50_000
    items = events(120, blob=blob)  # about 6 MB
    assert sum(len(item.body) for item in items) > 6_000_000
    enqueue_all(sender, items)
    assert sender.flush(20)
    bodies = [len(seen.body) for seen in endpoint.requests]
    assert all(size <= MAX_BODY_BYTES for size in bodies), bodies
    assert len(bodies) >= 4
    # batches are filled: all but the last are within one item of the limit
    assert all(size > MAX_BODY_BYTES - 50_100 for size in bodies[:-1]), bodies
    assert ids(endpoint.delivered) == list(range(120))
    assert all(item["attributes"]["blob"] == blob for item in endpoint.delivered)


def test_batches_close_on_the_flush_interval(make_sender: Make) -> None:
    endpoint = Endpoint()
    sender = make_sender(transport=endpoint.transport(), flush_interval=0.05)
    enqueue_all(sender, events(3))
    # no flush(), no full batch: the interval alone sends them
    assert endpoint.wait_delivered(3, timeout=10)
    assert ids(endpoint.delivered) == [0, 1, 2]


def test_several_requests_in_flight_up_to_the_limit(make_sender: Make) -> None:
    state = {"inflight": 0, "peak": 0, "count": 0}
    all_in: list[asyncio.Event] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        if not all_in:
            all_in.append(asyncio.Event())
        state["inflight"] += 1
        state["count"] += 1
        state["peak"] = max(state["peak"], state["inflight"])
        if state["inflight"] >= 3:
            all_in[0].set()
        try:
            await asyncio.wait_for(all_in[0].wait(), 10)
        finally:
            state["inflight"] -= 1
        return httpx.Response(200, json={"success": True})

    sender = make_sender(
        transport=httpx.MockTransport(handler),
        max_batch_items=1,
        max_concurrent_requests=3,
        flush_interval=60,
    )
    enqueue_all(sender, events(12))
    assert sender.flush(15)
    assert state["peak"] == 3
    assert state["count"] == 12
    assert sender.stats.sent == 12


# --------------------------------------------------------------------------- retries


@pytest.mark.parametrize("code", [500, 502, 503, 504, 408, 429])
def test_retryable_statuses_then_success(make_sender: Make, code: int) -> None:
    endpoint = Endpoint(lambda request, n: status(code) if n < 3 else None)
    sender = make_sender(transport=endpoint.transport())
    enqueue_all(sender, events(20))
    assert sender.flush(10)
    assert len(endpoint.requests) == 4
    assert len({seen.body for seen in endpoint.requests}) == 1  # the same batch, resent
    assert ids(endpoint.delivered) == list(range(20))
    stats = sender.stats
    assert stats.retried == 3
    assert stats.sent == 20
    assert stats.requests == 4
    assert stats.dropped_total == 0


def test_network_errors_are_retried(make_sender: Make) -> None:
    failures: list[Exception] = [
        httpx.ConnectError("connection refused"),
        httpx.ReadTimeout("timed out"),
        httpx.RemoteProtocolError("server disconnected"),
        httpx.WriteError("broken pipe"),
    ]

    def answer(request: httpx.Request, n: int) -> None:
        if n < len(failures):
            raise failures[n]

    endpoint = Endpoint(answer)
    sender = make_sender(transport=endpoint.transport())
    enqueue_all(sender, events(5))
    assert sender.flush(10)
    assert len(endpoint.requests) == 5
    assert ids(endpoint.delivered) == list(range(5))
    assert sender.stats.retried == 4


def gap(endpoint: Endpoint) -> float:
    first, second = endpoint.requests[0], endpoint.requests[1]
    return second.at - first.at


def test_retry_after_seconds_is_honoured(make_sender: Make) -> None:
    endpoint = Endpoint(lambda r, n: status(429, headers={"Retry-After": "1"}) if n == 0 else None)
    sender = make_sender(transport=endpoint.transport(), flush_interval=0.01)
    enqueue_all(sender, events(1))
    assert endpoint.wait_delivered(1, timeout=15)
    assert gap(endpoint) >= 0.95  # backoff_base is 0.01: only Retry-After explains this
    assert sender.stats.retried == 1


def test_retry_after_http_date_is_honoured(make_sender: Make) -> None:
    def answer(request: httpx.Request, n: int) -> httpx.Response | None:
        if n:
            return None
        when = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=2)
        return status(503, headers={"Retry-After": email.utils.format_datetime(when, True)})

    endpoint = Endpoint(answer)
    sender = make_sender(transport=endpoint.transport(), flush_interval=0.01)
    enqueue_all(sender, events(1))
    assert endpoint.wait_delivered(1, timeout=15)
    assert gap(endpoint) >= 0.9  # the date has whole seconds: 1 to 2 s from now


def test_retry_after_is_honoured_during_a_flush(make_sender: Make) -> None:
    endpoint = Endpoint(lambda r, n: status(429, headers={"Retry-After": "1"}) if n == 0 else None)
    sender = make_sender(transport=endpoint.transport(), flush_interval=60)
    enqueue_all(sender, events(1))
    assert sender.flush(15)
    assert gap(endpoint) >= 0.95


def test_retry_budget_exhausted_drops_counts_and_reports(
    make_sender: Make, caplog: pytest.LogCaptureFixture
) -> None:
    errors = Errors()
    endpoint = Endpoint(lambda r, n: status(503))
    sender = make_sender(transport=endpoint.transport(), retry_budget=0.3, on_error=errors)
    enqueue_all(sender, events(7))
    with caplog.at_level(logging.WARNING, logger="bucket_logging"):
        assert sender.flush(10)
    assert len(endpoint.requests) >= 2
    stats = sender.stats
    assert stats.dropped == {"retries_exhausted": 7}
    assert stats.sent == 0 and stats.pending == 0
    assert len(errors.errors) == 1
    error = errors.errors[0]
    assert isinstance(error, DeliveryError)
    assert (error.reason, error.count, error.status) == ("retries_exhausted", 7, 503)
    assert errors.threads == {endpoint.requests[0].thread}  # called on the sender's thread
    assert "7 item(s) not delivered: retries_exhausted (HTTP 503)" in caplog.text


def test_flush_does_not_sit_out_a_long_backoff(make_sender: Make) -> None:
    endpoint = Endpoint(lambda r, n: status(503) if n == 0 else None)
    sender = make_sender(
        transport=endpoint.transport(), backoff_base=30, backoff_max=60, flush_interval=60
    )
    enqueue_all(sender, events(3))
    started = time.monotonic()
    assert sender.flush(10)
    assert time.monotonic() - started < 8
    assert ids(endpoint.delivered) == [0, 1, 2]


def test_flush_cuts_a_backoff_already_in_progress(make_sender: Make) -> None:
    endpoint = Endpoint(lambda r, n: status(503) if n == 0 else None)
    sender = make_sender(
        transport=endpoint.transport(), backoff_base=30, backoff_max=60, flush_interval=0.01
    )
    enqueue_all(sender, events(3))
    assert endpoint.wait_requests(1)  # the failure came; a 15-30 s back-off follows
    started = time.monotonic()
    assert sender.flush(10)
    assert time.monotonic() - started < 8
    assert ids(endpoint.delivered) == [0, 1, 2]


def test_a_flush_that_timed_out_leaves_the_backoff_alone(make_sender: Make) -> None:
    # while a flush waits, retries are quick; once it gave up, the normal back-off resumes
    endpoint = Endpoint(lambda r, n: status(503))
    sender = make_sender(
        transport=endpoint.transport(), backoff_base=5, backoff_max=5, flush_interval=60
    )
    enqueue_all(sender, events(1))
    assert not sender.flush(0.6)
    seen = len(endpoint.requests)
    assert seen >= 2
    # a 2.5-5 s back-off now: no new request within a second
    assert not endpoint.wait_requests(seen + 2, timeout=1.0)


# --------------------------------------------------------------------------- 4xx


def poison_answer(marker: bytes = b'"poison"') -> Callable[[httpx.Request, int], Any]:
    def answer(request: httpx.Request, n: int) -> httpx.Response | None:
        if marker in request.content:
            return status(
                400,
                error_body(
                    "BODY_VALIDATION_FAILED",
                    "Invalid request body",
                    "items[0].attributes.kind: poison is not allowed here",
                ),
            )
        return None

    return answer


def test_one_poison_item_in_a_thousand(make_sender: Make, caplog: pytest.LogCaptureFixture) -> None:
    errors = Errors()
    endpoint = Endpoint(poison_answer())
    sender = make_sender(transport=endpoint.transport(), on_error=errors, flush_interval=60)
    items = events(1000)
    items[617] = Item.event("e", 617, {"i": 617, "kind": "poison"})
    with caplog.at_level(logging.WARNING, logger="bucket_logging"):
        enqueue_all(sender, items)
        assert sender.flush(20)
    assert ids(endpoint.delivered) == [i for i in range(1000) if i != 617]
    stats = sender.stats
    assert (stats.sent, stats.rejected, stats.pending) == (999, 1, 0)
    assert stats.dropped == {}
    assert len(endpoint.requests) <= 45  # bisection: about 2 * log2(1000) requests
    assert [(e.reason, e.count, e.status) for e in errors.errors] == [("rejected", 1, 400)]
    assert "poison is not allowed here" in errors.errors[0].detail
    rejected = [r for r in caplog.records if "rejected" in r.getMessage()]
    assert len(rejected) == 1
    assert rejected[0].name == "bucket_logging"
    assert "poison is not allowed here" in rejected[0].getMessage()
    assert '"kind":"poison"' in rejected[0].getMessage()  # which item it was


def test_413_is_split_until_the_server_takes_it(make_sender: Make) -> None:
    def answer(request: httpx.Request, n: int) -> httpx.Response | None:
        if request.content.count(b'"type"') > 8:
            return status(413, error_body("PAYLOAD_TOO_LARGE", "too large"))
        return None

    endpoint = Endpoint(answer)
    sender = make_sender(transport=endpoint.transport(), flush_interval=60)
    enqueue_all(sender, events(50))
    assert sender.flush(10)
    assert ids(endpoint.delivered) == list(range(50))
    assert sender.stats.rejected == 0


def test_invalid_api_key_is_not_bisected(make_sender: Make) -> None:
    errors = Errors()
    endpoint = Endpoint(
        lambda r, n: status(400, error_body("INVALID_API_KEY", "invalid tracking key"))
    )
    sender = make_sender(transport=endpoint.transport(), on_error=errors, flush_interval=60)
    enqueue_all(sender, events(200))
    assert sender.flush(10)
    assert len(endpoint.requests) == 1
    stats = sender.stats
    assert stats.dropped == {"client_error": 200}
    assert stats.rejected == 0
    [error] = errors.errors
    assert (error.reason, error.count, error.status) == ("client_error", 200, 400)
    assert "INVALID_API_KEY" in error.detail
    assert "check the tracking key" in error.detail


@pytest.mark.parametrize("code", [401, 403, 404, 405, 422])
def test_other_client_errors_drop_the_batch(make_sender: Make, code: int) -> None:
    errors = Errors()
    endpoint = Endpoint(lambda r, n: httpx.Response(code, text="<html>nope</html>"))
    sender = make_sender(transport=endpoint.transport(), on_error=errors, flush_interval=60)
    enqueue_all(sender, events(30))
    assert sender.flush(10)
    assert len(endpoint.requests) == 1
    assert sender.stats.dropped == {"client_error": 30}
    assert [(e.reason, e.count, e.status) for e in errors.errors] == [("client_error", 30, code)]


# --------------------------------------------------------------------------- the queue


def test_queue_full_by_count_drops_and_counts(
    make_sender: Make, caplog: pytest.LogCaptureFixture
) -> None:
    endpoint = Endpoint()
    sender = make_sender(transport=endpoint.transport(), flush_interval=60, max_queue_items=5)
    with caplog.at_level(logging.WARNING, logger="bucket_logging"):
        results = [sender.enqueue(item) for item in events(8)]
    assert results == [True] * 5 + [False] * 3
    assert sender.stats.dropped == {"queue_full": 3}
    assert sender.stats.queued == 5
    assert "the queue is full" in caplog.text
    assert sender.flush(10)
    assert ids(endpoint.delivered) == [0, 1, 2, 3, 4]
    assert sender.enqueue(events(1)[0])  # room again


def test_queue_full_by_bytes(make_sender: Make) -> None:
    sender = make_sender(
        transport=Endpoint().transport(), flush_interval=60, max_queue_bytes=10_000
    )
    items = events(20, blob="y" * 900)
    size = len(items[0].body)
    results = [sender.enqueue(item) for item in items]
    assert results.count(True) == 10_000 // size
    assert sender.stats.dropped == {"queue_full": 20 - 10_000 // size}


def hanging_transport(started: threading.Event) -> httpx.MockTransport:
    async def handler(request: httpx.Request) -> httpx.Response:
        started.set()
        await asyncio.Event().wait()  # forever (until the sender is closed)
        raise AssertionError("unreachable")

    return httpx.MockTransport(handler)


def test_enqueue_never_blocks_when_the_endpoint_hangs(make_sender: Make) -> None:
    started = threading.Event()
    sender = make_sender(
        transport=hanging_transport(started),
        max_queue_items=2_000,
        max_batch_items=100,
        max_concurrent_requests=2,
        flush_interval=0.01,
    )
    items = events(10_000)
    sender.enqueue(items[0])
    assert started.wait(10)  # a request hangs now
    began = time.perf_counter()
    results = [sender.enqueue(item) for item in items[1:]]
    elapsed = time.perf_counter() - began
    assert elapsed < 2.0, elapsed  # about 10 ms on an idle machine
    stats = sender.stats
    assert results.count(False) == stats.dropped["queue_full"] >= 10_000 - 2_000 - 300
    assert not sender.flush(0.2)  # gives up on time, too
    sender.close(0.3)
    assert sender.stats.dropped["shutdown"] == stats.queued
    assert sender.stats.pending == 0


def test_default_bounds_hold_a_burst_of_100k(make_sender: Make) -> None:
    gate = threading.Event()
    endpoint = Endpoint(lambda r, n: None if gate.wait(30) else status(500))
    # every bound at its default; the endpoint holds the first request until the
    # burst is queued, so the queue really holds it all
    sender = BulkSender(KEY, transport=endpoint.transport())
    try:
        items = [
            Item.event("Sent message", i, {"position": "popover", "i": i, "pad": "x" * 60})
            for i in range(100_000)
        ]
        assert 150 <= len(items[0].body) <= 250
        results = [sender.enqueue(item) for item in items]
        assert all(results)
        assert sender.stats.pending == 100_000
        assert sender.stats.dropped == {}
        gate.set()
        assert sender.flush(60)
        assert len(endpoint.delivered) == 100_000
        assert ids(endpoint.delivered) == list(range(100_000))
    finally:
        gate.set()
        sender.close(5)


# --------------------------------------------------------------------------- flush & close


def test_aflush_in_an_asyncio_app(make_sender: Make) -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.3)  # latency of the endpoint
        return httpx.Response(200, json={"success": True})

    sender = make_sender(transport=httpx.MockTransport(slow), flush_interval=60)

    async def app() -> tuple[bool, int, bool]:
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.create_task(ticker())
        enqueue_all(sender, events(10))
        ok = await sender.aflush(10)
        done.set()
        await task
        nothing_pending = await sender.aflush(0.01)
        return ok, ticks, nothing_pending

    ok, ticks, nothing_pending = asyncio.run(app())
    assert ok
    assert ticks >= 5  # the app's loop kept running while it awaited the flush
    assert nothing_pending
    assert sender.stats.sent == 10


def test_aflush_times_out(make_sender: Make) -> None:
    sender = make_sender(transport=hanging_transport(threading.Event()), flush_interval=60)
    enqueue_all(sender, events(1))

    async def app() -> tuple[bool, float]:
        began = time.monotonic()
        ok = await sender.aflush(0.2)
        return ok, time.monotonic() - began

    ok, took = asyncio.run(app())
    assert not ok
    assert took < 3
    sender.close(0.2)


def test_flush_from_the_senders_own_thread_returns_false(make_sender: Make) -> None:
    results: list[tuple[bool, float]] = []
    holder: list[BulkSender] = []

    def on_error(error: DeliveryError) -> None:
        began = time.monotonic()
        results.append((holder[0].flush(5), time.monotonic() - began))

    endpoint = Endpoint(lambda r, n: status(401) if n == 0 else None)
    sender = make_sender(transport=endpoint.transport(), on_error=on_error, flush_interval=60)
    holder.append(sender)
    enqueue_all(sender, events(2))
    assert sender.flush(10)
    [(result, took)] = results
    assert result is False
    assert took < 1
    enqueue_all(sender, events(2))
    assert sender.flush(10)  # the sender still works
    assert ids(endpoint.delivered) == [0, 1]


def test_flush_with_nothing_queued_returns_at_once(make_sender: Make) -> None:
    sender = make_sender(transport=Endpoint().transport())
    began = time.monotonic()
    assert sender.flush(5)
    assert sender.flush(0)
    assert time.monotonic() - began < 1


def test_close_delivers_then_drops_as_closed(make_sender: Make) -> None:
    endpoint = Endpoint()
    sender = make_sender(transport=endpoint.transport(), flush_interval=60)
    enqueue_all(sender, events(25))
    sender.close(10)
    assert ids(endpoint.delivered) == list(range(25))
    assert sender.enqueue(events(1)[0]) is False
    stats = sender.stats
    assert stats.dropped == {"closed": 1}
    assert (stats.sent, stats.pending) == (25, 0)
    sender.close(1)  # idempotent
    assert sender.flush(1)
    assert len(endpoint.requests) == 1


def test_close_reports_what_it_could_not_deliver(
    make_sender: Make, caplog: pytest.LogCaptureFixture
) -> None:
    errors = Errors()
    sender = make_sender(
        transport=hanging_transport(threading.Event()), on_error=errors, flush_interval=60
    )
    enqueue_all(sender, events(4))
    began = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="bucket_logging"):
        sender.close(0.5)
    assert time.monotonic() - began < 3
    assert sender.stats.dropped == {"shutdown": 4}
    assert sender.stats.pending == 0
    assert any(e.reason == "shutdown" and e.count == 4 for e in errors.errors)
    assert "4 item(s) not delivered: shutdown" in caplog.text


# --------------------------------------------------------------------------- stats


def test_stats_counters(make_sender: Make) -> None:
    endpoint = Endpoint(lambda r, n: status(500) if n == 0 else poison_answer()(r, n))
    sender = make_sender(transport=endpoint.transport(), flush_interval=60)
    assert sender.stats == SenderStats()
    items = [
        *events(3),
        Item.user(1, {"a": 1}),
        Item.user(1, {"a": 1}),
        Item.event("e", 9, {"i": 9, "kind": "poison"}),
    ]
    enqueue_all(sender, items)
    # the second, identical user update is skipped as it is queued
    assert sender.stats.pending == 5
    assert sender.pending == 5
    assert sender.stats.deduplicated == 1
    assert sender.flush(10)
    stats = sender.stats
    assert stats.queued == 5
    assert stats.sent == 4
    assert stats.deduplicated == 1
    assert stats.rejected == 1
    assert stats.retried == 1
    assert stats.requests == len(endpoint.requests) >= 4
    assert stats.pending == 0
    assert stats.dropped == {}
    assert stats.dropped_total == 1
    assert stats.offline == 0


# --------------------------------------------------------------------------- configuration


def test_offline_mode_validates_counts_and_sends_nothing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("BUCKET_TRACKING_KEY", raising=False)
    endpoint = Endpoint()
    sender = BulkSender(offline=True, transport=endpoint.transport())
    try:
        with caplog.at_level(logging.DEBUG, logger="bucket_logging"):
            assert all(sender.enqueue(item) for item in events(3))
        assert sender.flush(1)
        stats = sender.stats
        assert stats.offline == 3
        assert (stats.sent, stats.queued, stats.requests) == (0, 0, 0)
        assert endpoint.requests == []
        assert sender.thread is None  # no thread, no client
        assert "offline" in repr(sender)
        offline_lines = [r.getMessage() for r in caplog.records if "offline:" in r.getMessage()]
        assert len(offline_lines) == 3
        assert '"type":"event"' in offline_lines[0]
    finally:
        sender.close()
    assert endpoint.requests == []


def test_missing_key_names_both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BUCKET_TRACKING_KEY", raising=False)
    for key in (None, ""):
        with pytest.raises(ConfigurationError) as info:
            BulkSender(key, require_key=True)
        message = str(info.value)
        assert "BUCKET_TRACKING_KEY" in message
        assert "tracking_key" in message
    monkeypatch.setenv("BUCKET_REQUIRE_KEY", "1")
    with pytest.raises(ConfigurationError) as info:
        get_sender()
    assert "BUCKET_TRACKING_KEY" in str(info.value)


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"base_url": "ftp://example.com"}, "base_url must be an http(s) URL"),
        ({"max_batch_items": 0}, "max_batch_items must be positive"),
        ({"flush_interval": -1}, "flush_interval must be positive"),
        ({"max_queue_items": 0}, "max_queue_items must be positive"),
    ],
)
def test_invalid_settings(options: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        BulkSender(KEY, **options)
    assert fragment in str(info.value)
    assert KEY not in str(info.value)


def test_environment_variables(monkeypatch: pytest.MonkeyPatch, make_sender: Make) -> None:
    monkeypatch.setenv("BUCKET_TRACKING_KEY", "trENVKEY")
    monkeypatch.setenv("BUCKET_TRACKING_URL", "http://tracking.example:8787/")
    endpoint = Endpoint()
    sender = make_sender(tracking_key=None, transport=endpoint.transport())
    assert sender.base_url == "http://tracking.example:8787"
    enqueue_all(sender, events(1))
    assert sender.flush(10)
    assert endpoint.requests[0].url == "http://tracking.example:8787/trENVKEY/bulk"
    # explicit arguments win over the environment
    other = make_sender(base_url="https://elsewhere.example", transport=endpoint.transport())
    enqueue_all(other, events(1))
    assert other.flush(10)
    assert endpoint.requests[1].url == f"https://elsewhere.example/{KEY}/bulk"


def test_default_base_url_and_tls(make_sender: Make, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BUCKET_TRACKING_URL", raising=False)
    sender = make_sender(transport=Endpoint().transport())
    assert sender.base_url == "https://tracking.bucket.co"
    assert sender._verify is True


def test_get_sender_shares_one_sender_per_key_and_url(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("BUCKET_TRACKING_KEY", KEY)
    monkeypatch.setenv("BUCKET_TRACKING_URL", "http://one.example")
    made: list[BulkSender] = []
    try:
        a = get_sender(KEY, base_url="http://one.example", flush_interval=60)
        made.append(a)
        assert get_sender(KEY, base_url="http://one.example/", flush_interval=60) is a
        assert get_sender() is a  # the same key and URL, from the environment
        b = get_sender(KEY, base_url="http://two.example")
        c = get_sender("trOTHER", base_url="http://one.example")
        made += [b, c]
        assert len({id(a), id(b), id(c)}) == 3
        with caplog.at_level(logging.INFO, logger="bucket_logging"):
            e = get_sender(KEY, base_url="http://one.example", flush_interval=5)
        made.append(e)
        assert e is not a and e.flush_interval == 5  # other options: a sender of its own
        assert "a sender of its own" in caplog.text
        assert get_sender() is a  # no options: the first one for the key and URL
        a.close(1)
        d = get_sender(KEY, base_url="http://one.example")  # a closed sender is replaced
        made.append(d)
        assert d is not a
    finally:
        for sender in made:
            sender.close(1)


def test_module_level_flush_flushes_every_sender(make_sender: Make) -> None:
    ends = [Endpoint(), Endpoint()]
    senders = [make_sender(transport=e.transport(), flush_interval=60) for e in ends]
    for sender in senders:
        enqueue_all(sender, events(5))
    assert bucket_logging.flush(10)
    assert [ids(e.delivered) for e in ends] == [list(range(5))] * 2
    assert bucket_logging.flush()  # nothing left: at once


def test_module_level_flush_times_out(make_sender: Make) -> None:
    sender = make_sender(transport=hanging_transport(threading.Event()), flush_interval=60)
    enqueue_all(sender, events(1))
    began = time.monotonic()
    assert bucket_logging.flush(0.3) is False
    assert time.monotonic() - began < 3
    sender.close(0.2)


# --------------------------------------------------------------------------- secrecy & logging


def test_the_key_appears_nowhere(make_sender: Make, caplog: pytest.LogCaptureFixture) -> None:
    def answer(request: httpx.Request, n: int) -> httpx.Response | None:
        url = str(request.url)
        if n == 0:
            raise httpx.ConnectError(f"cannot connect to {url}")
        if n == 1:
            return httpx.Response(502, text=f"bad gateway for {url}")
        if b'"poison"' in request.content:
            return status(
                400, error_body("BODY_VALIDATION_FAILED", f"bad item posted to {url}", url)
            )
        if b'"unauthorized"' in request.content:
            return httpx.Response(401, text=f"no such key: {url}")
        return None

    errors = Errors()
    endpoint = Endpoint(answer)
    caplog.set_level(logging.DEBUG)
    sender = make_sender(
        transport=endpoint.transport(), on_error=errors, flush_interval=60, max_batch_items=5
    )
    enqueue_all(sender, [*events(4), Item.event("e", 5, {"kind": "poison"})])
    assert sender.flush(10)
    enqueue_all(sender, [Item.event("e", 6, {"kind": "unauthorized"})])
    assert sender.flush(10)
    sender2 = make_sender(transport=endpoint.transport(), retry_budget=0.05, on_error=errors)
    endpoint.answer = lambda r, n: httpx.Response(503, text=f"down: {r.url}")
    enqueue_all(sender2, events(1))
    assert sender2.flush(10)
    assert KEY in endpoint.requests[0].url  # the key was really used
    reasons = sorted(e.reason for e in errors.errors)
    assert reasons == ["client_error", "rejected", "retries_exhausted"]
    texts = [caplog.text, repr(sender), str(sender), repr(sender2), repr(sender.stats)]
    texts += [r.getMessage() for r in caplog.records]
    texts += [str(e) + repr(e) + e.detail for e in errors.errors]
    assert any("bucket_logging" in r.name for r in caplog.records)
    for text in texts:
        assert KEY not in text
    assert "<tracking-key>" in caplog.text  # what was scrubbed is still readable


def test_sender_thread_records_never_reach_app_handlers(make_sender: Make) -> None:
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Collect(logging.DEBUG)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        endpoint = Endpoint(lambda r, n: status(500) if n == 0 else None)
        sender = make_sender(transport=endpoint.transport(), flush_interval=60)
        enqueue_all(sender, events(3))
        assert sender.flush(10)
        sender_thread = endpoint.requests[0].thread
        # the application's own httpx use, on its own thread, still logs
        with httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(204))) as app:
            app.get("http://app.example/health")
        sender.close(5)
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    from_sender = [
        r
        for r in records
        if r.thread == sender_thread
        and r.name.partition(".")[0] in ("httpx", "httpcore", "asyncio")
    ]
    assert from_sender == []
    mine = [r for r in records if r.name == "httpx" and r.thread == threading.get_ident()]
    assert any("app.example/health" in r.getMessage() for r in mine)
    assert all(KEY not in r.getMessage() for r in records)


def test_repr_hides_the_key(make_sender: Make) -> None:
    sender = make_sender(transport=Endpoint().transport())
    assert KEY not in repr(sender)
    assert "key=<redacted>" in repr(sender)
    assert "https://tracking.bucket.co" in repr(sender)


def test_a_closed_senders_thread_id_is_forgotten(make_sender: Make) -> None:
    from bucket_logging._runtime import diagnostics as _diagnostics

    sender = make_sender(transport=Endpoint().transport())
    assert sender.enqueue(events(1)[0])
    assert sender.flush(10)  # the thread runs (and knows its id) by now
    ident = sender.engine.thread_id if sender.engine else None
    assert ident is not None
    assert ident in _diagnostics.internal_threads
    sender.close(5)
    assert sender.thread is not None
    sender.thread.join(5)
    # thread ids are reused by later threads, whose records must still count as the app's
    assert ident not in _diagnostics.internal_threads
    seen: list[bool] = []
    for _ in range(20):
        thread = threading.Thread(
            target=lambda: seen.append(_diagnostics.is_internal("app", threading.get_ident()))
        )
        thread.start()
        thread.join()
    assert seen == [False] * 20
