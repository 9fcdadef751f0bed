"""The sender's thread: what runs on it, its start, several senders, a fork.

Callbacks that raise or close the sender from its own thread, a sender thread that
cannot start, flushes and the exit hook across several senders, and what a forked
child does with a sender (the fork hooks are called
directly on senders of this test, whose threads were stopped first, as a child
has no threads).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from support import KEY, Endpoint

import bucket_logging
from bucket_logging import BulkSender, DeliveryError, Item
from bucket_logging._runtime import diagnostics as _diagnostics
from bucket_logging._runtime import shutdown as _shutdown
from bucket_logging._runtime import state as _process
from bucket_logging._sender import sender as _sender
from bucket_logging._sender.http_stack import tls_verify
from bucket_logging._server.server import TrackingServer

Make = Callable[..., BulkSender]


def events(n: int, start: int = 0) -> list[Item]:
    return [Item.event("e", i, {"i": i}) for i in range(start, start + n)]


def enqueue_all(sender: BulkSender, items: list[Item]) -> None:
    results = [sender.enqueue(item) for item in items]  # every one, even after a False
    assert all(results)


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
    assert "dropped an event item: the sender is closed" in said[first + 1 :]


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
    _shutdown.shutdown_all()
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
    _shutdown.shutdown_all()  # nothing to do: nothing raised, said or waited for
    assert time.monotonic() - began < 1.0
    assert messages(logged) == []
    assert len(_process.state.live) == 0


# --------------------------------------------------------------------------- fork


def pretend_fork(monkeypatch: pytest.MonkeyPatch, *senders: BulkSender) -> None:
    """Run the sender module's after-fork hook as a child would, for ``senders`` only.

    Their threads must be stopped first: a forked child has none.
    """
    child = _process.State()  # the process state as the child inherits it, these senders
    child.live.update(senders)
    monkeypatch.setattr(_process, "state", child)
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
