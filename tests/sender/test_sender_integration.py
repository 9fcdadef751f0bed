"""BulkSender against a real HTTP server on 127.0.0.1 (:class:`TrackingServer`)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from support import KEY, free_port

from bucket_logging import BulkSender, DeliveryError, Item
from bucket_logging._items.item import MAX_BODY_BYTES
from bucket_logging._server.server import RequestRecord, TrackingServer

Make = Callable[..., BulkSender]


class Times:
    """Records when the server answered each request (its on_request callback)."""

    def __init__(self) -> None:
        self.records: list[tuple[float, RequestRecord]] = []

    def __call__(self, record: RequestRecord) -> None:
        self.records.append((time.monotonic(), record))


@pytest.fixture
def times() -> Times:
    return Times()


@pytest.fixture
def server(times: Times) -> Iterator[TrackingServer]:
    with TrackingServer(tracking_keys={KEY}, on_request=times) as srv:
        yield srv


@pytest.fixture
def make(server: TrackingServer, make_sender: Make) -> Make:
    """make_sender, closing its senders before the server stops (set up after it)."""
    return make_sender


@pytest.fixture
def sender(make: Make, server: TrackingServer) -> BulkSender:
    return make(base_url=server.url, flush_interval=60)


def events(n: int, start: int = 0, **attributes: Any) -> list[Item]:
    return [Item.event("e", i, {"i": i, **attributes}) for i in range(start, start + n)]


def ids(calls: list[dict[str, Any]]) -> list[int]:
    return sorted(call["attributes"]["i"] for call in calls)


def enqueue_all(sender: BulkSender, items: list[Item]) -> None:
    results = [sender.enqueue(item) for item in items]  # every one, even after a False
    assert all(results)


def statuses(server: TrackingServer) -> list[int]:
    return [record.status for record in server.requests]


def test_delivers_every_kind(sender: BulkSender, server: TrackingServer) -> None:
    items = [
        Item.user(1, {"name": "Ada"}, active=True),
        Item.company("acme", {"plan": "pro"}, user_id=1),
        Item.event("Sent message", 1, {"v": 3}, company_id="acme"),
        Item.feedback(1, feature_id="f1", score=5, comment="great", source="sdk"),
    ]
    enqueue_all(sender, items)
    assert sender.flush(10)
    assert server.calls == [item.to_dict() for item in items]
    assert statuses(server) == [200]


def test_500s_then_success(sender: BulkSender, server: TrackingServer) -> None:
    server.fail_next(3)
    enqueue_all(sender, events(10))
    assert sender.flush(15)
    assert statuses(server) == [500, 500, 500, 200]
    assert ids(server.calls) == list(range(10))
    assert sender.stats.retried == 3


def test_connection_resets(sender: BulkSender, server: TrackingServer) -> None:
    server.reset_next(3)
    enqueue_all(sender, events(10))
    assert sender.flush(15)
    assert statuses(server) == [0, 0, 0, 200]
    assert ids(server.calls) == list(range(10))
    assert sender.stats.dropped == {}


def test_429_with_retry_after(make: Make, server: TrackingServer, times: Times) -> None:
    server.throttle_next(1, retry_after=1)
    sender = make(base_url=server.url, flush_interval=0.01)
    enqueue_all(sender, events(5))
    assert server.wait_for(5, timeout=15)
    (t0, first), (t1, second) = times.records[:2]
    assert (first.status, second.status) == (429, 200)
    assert t1 - t0 >= 0.95
    assert ids(server.calls) == list(range(5))


def test_one_poison_item_in_a_thousand(
    sender: BulkSender, server: TrackingServer, caplog: pytest.LogCaptureFixture
) -> None:
    errors: list[DeliveryError] = []
    sender.on_error = errors.append
    server.reject_items(lambda call: call.get("attributes", {}).get("i") == 321)
    with caplog.at_level(logging.WARNING, logger="bucket_logging"):
        enqueue_all(sender, events(1000))
        assert sender.flush(30)
    assert server.call_count == 999
    assert ids(server.calls) == [i for i in range(1000) if i != 321]
    stats = sender.stats
    assert (stats.sent, stats.rejected, stats.pending) == (999, 1, 0)
    assert [(e.reason, e.count, e.status) for e in errors] == [("rejected", 1, 400)]
    assert "rejected by the server" in errors[0].detail
    assert "rejected by the server" in caplog.text
    assert len(server.requests) <= 45


def test_six_megabytes_in_bodies_within_the_limit(
    sender: BulkSender, server: TrackingServer
) -> None:
    items = events(120, blob="z" * 50_000)
    assert sum(len(item.body) for item in items) > 6_000_000
    enqueue_all(sender, items)
    assert sender.flush(30)
    assert server.wait_for(120, timeout=10)
    records = server.requests
    assert all(record.status == 200 for record in records)
    assert all(record.body_bytes <= MAX_BODY_BYTES for record in records)
    assert sum(record.items for record in records) == 120
    assert len(records) >= 4
    assert ids(server.calls) == list(range(120))


def test_endpoint_down_then_up(make_sender: Make) -> None:
    first = TrackingServer(port=free_port()).start()  # its port stays free while it is down
    port = first.port
    url = first.url
    first.stop()
    sender = make_sender(base_url=url, flush_interval=0.05, backoff_base=0.05, backoff_max=0.5)
    enqueue_all(sender, events(50))
    assert not sender.flush(1.5)  # down: nothing can be delivered
    stats = sender.stats
    assert stats.retried >= 2
    assert stats.pending == 50
    assert stats.dropped == {}
    with TrackingServer(port=port) as second:  # up again, on the same port
        assert second.url == url
        assert sender.flush(15)
        assert ids(second.calls) == list(range(50))
    assert sender.stats.sent == 50
    assert sender.stats.dropped == {}


def test_eight_threads_five_thousand_each(make: Make, server: TrackingServer) -> None:
    sender = make(base_url=server.url, flush_interval=0.05)
    barrier = threading.Barrier(8)
    failures: list[int] = []

    def work(t: int) -> None:
        items = [Item.event("e", t, {"t": t, "i": i}) for i in range(5_000)]
        barrier.wait()
        failures.extend(i for i, item in enumerate(items) if not sender.enqueue(item))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert sender.flush(60)
    assert server.wait_for(40_000, timeout=10)
    calls = server.calls
    assert len(calls) == 40_000
    assert len({(c["attributes"]["t"], c["attributes"]["i"]) for c in calls}) == 40_000
    stats = sender.stats
    assert (stats.queued, stats.sent, stats.pending, stats.dropped_total) == (40_000,) * 2 + (0, 0)


def test_wrong_key_is_a_client_error(make: Make, server: TrackingServer) -> None:
    errors: list[DeliveryError] = []
    sender = make(
        tracking_key="trWRONG", base_url=server.url, flush_interval=60, on_error=errors.append
    )
    enqueue_all(sender, events(500))
    assert sender.flush(10)
    assert statuses(server) == [400]  # not bisected
    assert sender.stats.dropped == {"client_error": 500}
    assert "INVALID_API_KEY" in errors[0].detail


def test_close_with_a_hanging_endpoint(make: Make, server: TrackingServer) -> None:
    server.delay(60)
    sender = make(base_url=server.url, flush_interval=0.01, request_timeout=30)
    enqueue_all(sender, events(3))
    assert server.wait_for_received(1, timeout=10)  # the request hangs now
    began = time.monotonic()
    sender.close(0.5)
    assert time.monotonic() - began < 3
    assert sender.stats.dropped == {"shutdown": 3}


def test_sender_thread_records_stay_out_of_app_handlers(make: Make, server: TrackingServer) -> None:
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
        server.fail_next(1)
        sender = make(base_url=server.url, flush_interval=60)
        enqueue_all(sender, events(20))
        assert sender.flush(10)
        sender_thread = sender.engine.thread_id if sender.engine else None
        # the application's own httpx use, on its thread, still logs as usual
        with httpx.Client() as app:
            response = app.post(f"{server.url}/app-key/event", json={"event": "x", "userId": 1})
            assert response.status_code == 400  # INVALID_API_KEY: the server knows one key
        sender.close(5)
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    assert sender_thread is not None
    leaked = [
        (r.name, r.getMessage())
        for r in records
        if r.thread == sender_thread
        and r.name.partition(".")[0] in ("httpx", "httpcore", "asyncio")
    ]
    assert leaked == []
    mine = {r.name for r in records if r.thread == threading.get_ident()}
    assert "httpx" in mine
    assert any(name.startswith("httpcore") for name in mine)
    assert all(KEY not in r.getMessage() for r in records)
    assert server.call_count == 20
