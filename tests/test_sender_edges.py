"""Edge cases of the bulk sender (bucket_logging._sender).

Retry-After parsing, a sender thread that cannot start, callbacks that raise or
close the sender from its own thread, flushes and the exit hook across several
senders, and what a forked child does with a sender (the fork hooks are called
directly on senders of this test, whose threads were stopped first, as a child
has no threads).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import logging
import ssl
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest
from _helpers import KEY, Endpoint, _fresh_rate_limits, make_sender

import bucket_logging
from bucket_logging import BulkSender, DeliveryError, Item, _diagnostics, _process, _sender
from bucket_logging._engine import tls_verify
from bucket_logging._retry import parse_retry_after
from bucket_logging._server import TrackingServer

__all__ = ["_fresh_rate_limits", "make_sender"]

Make = Callable[..., BulkSender]


def events(n: int, start: int = 0) -> list[Item]:
    return [Item.event("e", i, {"i": i}) for i in range(start, start + n)]


def enqueue_all(sender: BulkSender, items: list[Item]) -> None:
    results = [sender.enqueue(item) for item in items]  # every one, even after a False
    assert all(results)


def http_date(seconds_from_now: float) -> str:
    when = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=seconds_from_now)
    return email.utils.format_datetime(when, usegmt=True)


def hanging() -> tuple[httpx.MockTransport, threading.Event]:
    """A transport whose requests never end (until the sender is closed)."""
    started = threading.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    return httpx.MockTransport(handler), started


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING, logger="bucket_logging")
    return caplog


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "bucket_logging"]


@pytest.fixture
def only(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Make the process-wide functions see only the given senders (not other tests')."""

    def set_live(*senders: BulkSender) -> None:
        monkeypatch.setattr(_process.state, "live", weakref.WeakSet(senders))

    return set_live


# --------------------------------------------------------------------------- Retry-After


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("2.5", 2.5),
        ("-3", 0.0),
        ("soon", None),
        ("Mon, 99 Foo 2024 99:99:99 GMT", None),
        (http_date(-3600), 0.0),  # a date in the past: at once
    ],
)
def test_retry_after_values(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_retry_after_as_a_future_http_date() -> None:
    delay = parse_retry_after(http_date(120))
    assert delay is not None
    assert 118 <= delay <= 121  # whole seconds in the date


def test_a_retry_after_date_in_the_past_keeps_the_backoff(make_sender: Make) -> None:
    times: list[float] = []

    def answer(r: httpx.Request, n: int) -> httpx.Response | None:
        times.append(time.monotonic())
        return httpx.Response(503, headers={"Retry-After": http_date(-60)}) if n == 0 else None

    endpoint = Endpoint(answer)
    # a date in the past asks for no wait: the back-off (0.4 s, jitter 0.5-1x) still applies
    sender = make_sender(
        transport=endpoint.transport(), flush_interval=0.01, backoff_base=0.4, backoff_max=0.4
    )
    enqueue_all(sender, events(1))
    assert endpoint.wait_delivered(1, timeout=10)  # no flush: nothing hurries the back-off
    assert sender.stats.retried == 1
    assert times[1] - times[0] >= 0.19


def test_a_garbage_retry_after_falls_back_to_the_backoff(make_sender: Make) -> None:
    endpoint = Endpoint(
        lambda r, n: httpx.Response(429, headers={"Retry-After": "later"}) if n < 2 else None
    )
    sender = make_sender(transport=endpoint.transport(), flush_interval=0.01)
    enqueue_all(sender, events(3))
    assert sender.flush(10)
    assert (sender.stats.sent, sender.stats.retried) == (3, 2)


@pytest.mark.parametrize("code", [301, 302, 304])
def test_a_redirect_is_a_client_error(make_sender: Make, code: int) -> None:
    errors: list[DeliveryError] = []
    endpoint = Endpoint(
        lambda r, n: httpx.Response(code, headers={"Location": "https://elsewhere.example/"})
    )
    sender = make_sender(transport=endpoint.transport(), on_error=errors.append, flush_interval=60)
    enqueue_all(sender, events(2))
    assert sender.flush(10)
    assert len(endpoint.requests) == 1  # neither followed nor retried
    assert sender.stats.dropped == {"client_error": 2}
    assert [(e.reason, e.count, e.status) for e in errors] == [("client_error", 2, code)]


# --------------------------------------------------------------------------- callbacks


def test_an_on_error_callback_that_raises_is_reported(
    make_sender: Make, logged: pytest.LogCaptureFixture
) -> None:
    def on_error(error: DeliveryError) -> None:
        raise RuntimeError("callback bug")

    endpoint = Endpoint(lambda r, n: httpx.Response(401) if n == 0 else None)
    sender = make_sender(transport=endpoint.transport(), on_error=on_error, max_batch_items=1)
    enqueue_all(sender, events(1))
    assert sender.flush(10)
    enqueue_all(sender, events(1, start=1))
    assert sender.flush(10)  # the sender goes on
    assert sender.stats.sent == 1
    assert "on_error callback raised RuntimeError('callback bug')" in messages(logged)


def test_close_from_the_senders_own_thread(make_sender: Make) -> None:
    problems: list[BaseException] = []
    holder: list[BulkSender] = []

    def on_error(error: DeliveryError) -> None:
        try:
            holder[0].close(0)  # e.g. "give up on the first failure"; must not self-join
        except BaseException as exc:
            problems.append(exc)

    queued = threading.Event()

    def answer(request: httpx.Request, n: int) -> httpx.Response:
        queued.wait(10)  # (holds the sender's loop until every item is queued)
        return httpx.Response(401)

    endpoint = Endpoint(answer)
    sender = make_sender(
        transport=endpoint.transport(),
        on_error=on_error,
        max_batch_items=1,
        max_concurrent_requests=1,
        flush_interval=60,
    )
    holder.append(sender)
    enqueue_all(sender, events(3))
    queued.set()
    assert sender.thread is not None
    sender.thread.join(10)
    assert not sender.thread.is_alive()
    assert problems == []
    stats = sender.stats
    assert stats.dropped.get("client_error", 0) >= 1
    assert sum(stats.dropped.values()) == 3 and stats.pending == 0
    assert sender.enqueue(events(1)[0]) is False


def test_a_sender_built_on_a_senders_thread_keeps_it_internal(make_sender: Make) -> None:
    seen: list[bool] = []

    def on_error(error: DeliveryError) -> None:  # on the sender's thread
        make_sender(transport=Endpoint().transport())
        seen.append(threading.get_ident() in _diagnostics.internal_threads)

    endpoint = Endpoint(lambda r, n: httpx.Response(401))
    sender = make_sender(transport=endpoint.transport(), on_error=on_error)
    enqueue_all(sender, events(1))
    assert sender.flush(10)
    # still the sender's thread: its records (and httpx's) must never be tracked
    assert seen == [True]


# --------------------------------------------------------------------------- thread and loop life


def test_a_sender_thread_that_cannot_start(
    monkeypatch: pytest.MonkeyPatch, logged: pytest.LogCaptureFixture
) -> None:
    real_start = threading.Thread.start

    def start(self: threading.Thread) -> None:
        if self.name == "bucket_logging-sender":
            raise RuntimeError("can't create new thread at interpreter shutdown")
        real_start(self)

    monkeypatch.setattr(threading.Thread, "start", start)
    errors: list[DeliveryError] = []
    sender = BulkSender(KEY, transport=Endpoint().transport(), on_error=errors.append)
    try:
        assert sender.thread is None
        assert sender.enqueue(events(1)[0]) is False
        assert sender.enqueue(events(1)[0]) is False
        assert sender.stats.dropped == {"closed": 2}
        assert sender.stats.pending == 0
        assert sender.flush(5)  # nothing to wait for
    finally:
        sender.close()
    said = messages(logged)
    first = said.index(
        "cannot start the sender thread (can't create new thread at interpreter shutdown)"
    )
    assert "dropped a event item: the sender is closed" in said[first + 1 :]


def test_flush_after_close_returns_at_once(make_sender: Make) -> None:
    transport, started = hanging()
    sender = make_sender(
        transport=transport, max_batch_items=1, max_concurrent_requests=1, flush_interval=60
    )
    enqueue_all(sender, events(2))  # one hangs in its request, one waits in the queue
    assert started.wait(10)
    sender.close(0.2)
    assert sender.thread is not None
    sender.thread.join(10)
    assert sender.stats.dropped == {"shutdown": 2}
    began = time.monotonic()
    assert sender.flush(30)  # the loop is gone: nothing will ever finish, nothing to wait for
    assert time.monotonic() - began < 10


def test_dedupe_memory_is_pruned(make_sender: Make) -> None:
    endpoint = Endpoint()
    sender = make_sender(transport=endpoint.transport(), flush_interval=60)
    enqueue_all(sender, [Item.user("u1", {"plan": "pro"})])
    assert sender.flush(10)
    assert sender.enqueue(Item.user("u1", {"plan": "pro"}))
    assert sender.flush(10)
    assert sender.stats.deduplicated == 1  # the fresh one still counts
    assert len(endpoint.delivered) == 1


# --------------------------------------------------------------------------- offline


def test_offline_without_debug_logging_logs_nothing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("BUCKET_TRACKING_KEY", raising=False)
    caplog.set_level(logging.INFO, logger="bucket_logging")
    sender = BulkSender(offline=True)
    assert all(sender.enqueue(item) for item in events(3))
    assert sender.stats.offline == 3
    assert messages(caplog) == []
    sender.close()


def test_offline_debug_output_shows_each_item(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("BUCKET_TRACKING_KEY", raising=False)
    caplog.set_level(logging.DEBUG, logger="bucket_logging")
    sender = BulkSender(offline=True)
    assert sender.enqueue(Item.event("Sent message", "u1", {"caf\u00e9": 1}))
    [line] = messages(caplog)
    assert line.startswith('offline: {"type":"event","event":"Sent message","userId":"u1",')
    assert orjson.loads(line.removeprefix("offline: "))["attributes"] == {"caf\u00e9": 1}
    sender.close()


# --------------------------------------------------------------------------- several senders


def test_module_flush_and_aflush_cover_every_sender(make_sender: Make, only: Any) -> None:
    ends = [Endpoint(), Endpoint()]
    a, b = (make_sender(transport=e.transport(), flush_interval=60) for e in ends)
    only(a, b)
    enqueue_all(a, events(3))
    enqueue_all(b, events(4))
    assert asyncio.run(bucket_logging.aflush(10))
    assert [len(e.delivered) for e in ends] == [3, 4]
    enqueue_all(a, events(1))
    assert asyncio.run(bucket_logging.aflush())  # no timeout
    assert bucket_logging.flush(10)
    assert [len(e.delivered) for e in ends] == [4, 4]


def test_module_aflush_is_false_when_one_sender_cannot_finish(make_sender: Make, only: Any) -> None:
    endpoint = Endpoint()
    transport, _ = hanging()
    stuck = make_sender(transport=transport, flush_interval=60)
    fine = make_sender(transport=endpoint.transport(), flush_interval=60)
    only(stuck, fine)
    enqueue_all(stuck, events(1))
    enqueue_all(fine, events(2))
    assert asyncio.run(bucket_logging.aflush(0.5)) is False
    assert fine.flush(10) and len(endpoint.delivered) == 2
    stuck.close(0.1)


def test_the_exit_hook_closes_every_open_sender(
    make_sender: Make, only: Any, logged: pytest.LogCaptureFixture
) -> None:
    endpoint = Endpoint()
    transport, started = hanging()
    fine = make_sender(transport=endpoint.transport(), flush_interval=60, shutdown_timeout=10)
    stuck = make_sender(transport=transport, flush_interval=0.01, shutdown_timeout=0.3)
    closed = make_sender(transport=Endpoint().transport())
    closed.close()
    only(fine, stuck, closed)
    enqueue_all(fine, events(5))
    enqueue_all(stuck, events(2))
    assert started.wait(10)
    _process.shutdown_all()
    assert len(endpoint.delivered) == 5  # delivered at exit
    assert stuck.stats.dropped == {"shutdown": 2}  # given up on at its own deadline
    for sender in (fine, stuck):
        assert sender.enqueue(events(1)[0]) is False
        assert sender.stats.pending == 0
    assert closed.stats.dropped == {}  # already closed: left alone
    assert "2 item(s) not delivered: shutdown" in " ".join(messages(logged))


def test_the_exit_hook_without_senders(only: Any, logged: pytest.LogCaptureFixture) -> None:
    only()
    began = time.monotonic()
    _process.shutdown_all()  # nothing to do: nothing raised, said or waited for
    assert time.monotonic() - began < 1.0
    assert messages(logged) == []
    assert len(_process.state.live) == 0


# --------------------------------------------------------------------------- TLS


def test_an_ssl_context_is_used_as_given() -> None:
    context = ssl.create_default_context()
    assert tls_verify(context, None) is context
    assert tls_verify(False, None) is False
    made = tls_verify(True, None)
    assert isinstance(made, ssl.SSLContext) and made is not context


# --------------------------------------------------------------------------- fork


@pytest.fixture
def server() -> Iterator[TrackingServer]:
    with TrackingServer() as srv:
        yield srv


def pretend_fork(monkeypatch: pytest.MonkeyPatch, *senders: BulkSender) -> None:
    """Run the sender module's after-fork hook as a child would, for ``senders`` only.

    Their threads must be stopped first: a forked child has none.
    """
    child = _process.State()  # the process state as the child inherits it, these senders
    child.live.update(senders)
    monkeypatch.setattr(_process, "state", child)
    monkeypatch.setattr(_diagnostics, "_lock", _diagnostics._lock)  # restored after
    lock = child.registry_lock
    _process.after_fork_in_child()
    assert child.registry_lock is not lock  # a lock held at the fork is not inherited


def test_a_forked_child_starts_afresh_on_first_use(
    make_sender: Make, server: TrackingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[object] = []

    def counting(verify: object, transport: object) -> object:
        made.append(tls_verify(verify, transport))  # type: ignore[arg-type]
        return made[-1]

    monkeypatch.setattr(_sender, "tls_verify", counting)
    sender = make_sender(base_url=server.url, flush_interval=60)  # a real client: TLS set up
    assert len(made) == 1 and isinstance(made[0], ssl.SSLContext)
    enqueue_all(sender, events(3))
    assert sender.flush(10)
    parent_thread = sender.thread
    assert parent_thread is not None
    sender.close(5)
    parent_thread.join(10)

    pretend_fork(monkeypatch, sender)
    assert sender.thread is None and (sender.engine.thread_id if sender.engine else None) is None
    assert sender.stats == bucket_logging.SenderStats()  # the parent's counts stay its own
    assert sender.flush(1)  # nothing queued in the child yet
    enqueue_all(sender, events(2, start=10))  # the first use starts a new thread
    assert sender.thread is not None and sender.thread is not parent_thread
    assert sender.flush(10)
    assert sender.stats.sent == 2
    assert len(made) == 1  # the TLS context is made once per sender, reused by the child
    assert server.wait_for(5)
    assert sorted(c["attributes"]["i"] for c in server.calls) == [0, 1, 2, 10, 11]


def test_a_forked_child_that_closes_before_use_starts_nothing(
    make_sender: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    sender = make_sender(transport=Endpoint().transport())
    enqueue_all(sender, events(1))
    assert sender.flush(10)
    thread = sender.thread
    assert thread is not None
    sender.close(5)
    thread.join(10)
    monkeypatch.delenv("BUCKET_TRACKING_KEY", raising=False)
    offline = BulkSender(offline=True)  # never had a thread
    assert offline.enqueue(events(1)[0])
    pretend_fork(monkeypatch, sender, offline)
    sender.close(5)
    assert sender.thread is None  # no thread was started just to stop it
    assert sender.flush(5)
    assert offline.stats.offline == 0  # the parent's count stays the parent's
    assert offline.enqueue(events(1)[0]) and offline.stats.offline == 1
    offline.close()


def test_a_forked_child_that_closed_its_sender_drops_without_a_thread(
    make_sender: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    sender = make_sender(transport=Endpoint().transport())
    thread = sender.thread
    assert thread is not None
    sender.close(5)
    thread.join(10)
    pretend_fork(monkeypatch, sender)
    sender.close(5)
    try:
        assert sender.enqueue(events(1)[0]) is False
        assert sender.stats.dropped == {"closed": 1}
        assert sender.thread is None
    finally:
        sender.engine.stop() if sender.engine else None  # stop the thread it may have started
        if sender.thread is not None:
            sender.thread.join(10)
