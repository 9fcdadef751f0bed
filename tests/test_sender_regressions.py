"""Regression tests for sender bugs found in review (each failed before its fix)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator

import httpx
import pytest
from _helpers import KEY, Endpoint, _fresh_rate_limits, make_sender

from bucket_logging import BulkSender, Item

__all__ = ["_fresh_rate_limits", "make_sender"]


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def root_records() -> Iterator[_Collect]:
    root = logging.getLogger()
    handler = _Collect()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_a_pending_flush_is_answered_when_the_sender_stops(
    make_sender: Callable[..., BulkSender],
) -> None:
    release = asyncio.Event()

    async def hang(request: httpx.Request) -> httpx.Response:
        await release.wait()  # never set: the endpoint hangs
        return httpx.Response(200)

    sender = make_sender(transport=httpx.MockTransport(hang), flush_interval=60)
    sender.enqueue(Item.event("e", 1))
    result: list[bool] = []
    waiting = threading.Thread(target=lambda: result.append(sender.flush(None)))
    waiting.start()
    sender.close(0.3)
    waiting.join(10)
    assert not waiting.is_alive()  # it used to block forever
    assert len(result) == 1
    assert sender.stats.dropped == {"shutdown": 1}


def test_the_senders_http_logs_stay_hidden_with_log_threads_off(
    make_sender: Callable[..., BulkSender],
    root_records: _Collect,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(logging, "logThreads", False)  # record.thread is None then
    monkeypatch.setattr(logging.getLogger("httpx"), "level", logging.DEBUG)
    endpoint = Endpoint()
    sender = make_sender(transport=endpoint.transport())
    sender.enqueue(Item.event("e", 1))
    assert sender.flush(10)
    assert endpoint.delivered
    assert not [r for r in root_records.records if r.name.startswith(("httpx", "httpcore"))]
    assert KEY not in "".join(r.getMessage() for r in root_records.records)


def test_concurrent_first_calls_in_a_forked_child_all_queue(
    make_sender: Callable[..., BulkSender],
) -> None:
    endpoint = Endpoint()
    sender = make_sender(transport=endpoint.transport())
    sender._after_fork_in_child()  # what os.fork() runs in the child
    start = threading.Barrier(8)

    def log() -> None:
        start.wait()
        for i in range(50):
            sender.enqueue(Item.event("e", i))

    threads = [threading.Thread(target=log) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sender.flush(10)
    assert sender.stats.dropped == {}  # some used to be dropped as "closed"
    assert len(endpoint.delivered) == 400


def test_an_item_after_close_is_counted_as_closed(
    make_sender: Callable[..., BulkSender],
) -> None:
    sender = make_sender(transport=Endpoint().transport())
    sender.close(1)
    assert sender.enqueue(Item.event("e", 1)) is False
    assert sender.stats.dropped == {"closed": 1}


def test_a_contended_queue_lock_is_awaited_with_the_gil_released(
    make_sender: Callable[..., BulkSender], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A logging thread never blocks inside the queue lock's acquire().

    A thread blocked there is handed the lock before it has the GIL back, and every
    other logging thread then blocked behind it: 4 logging threads ran 3x slower.
    """
    from bucket_logging import _sender

    endpoint = Endpoint()
    sender = make_sender(transport=endpoint.transport(), flush_interval=60)
    blocking: list[object] = []
    real_lock = sender._lock

    class Watched:
        def acquire(self, blocking_: bool = True, timeout: float = -1) -> bool:
            if blocking_:
                blocking.append(threading.current_thread())
            return real_lock.acquire(blocking_, timeout)

        def release(self) -> None:
            real_lock.release()

        def __enter__(self) -> bool:
            return real_lock.__enter__()

        def __exit__(self, *exc: object) -> None:
            real_lock.__exit__(*exc)

    yields: list[float] = []
    released = threading.Event()

    def sleep(seconds: float) -> None:
        yields.append(seconds)
        if len(yields) == 3:
            released.set()
            real_lock.release()  # the holder (this test) lets go after a few tries

    monkeypatch.setattr(_sender.time, "sleep", sleep)
    sender._lock = Watched()  # type: ignore[assignment]
    real_lock.acquire()  # held by "another thread"
    put = threading.Thread(target=sender.enqueue, args=(Item.event("e", 1),))
    put.start()
    put.join(10)
    assert not put.is_alive()
    assert released.is_set() and yields == [0, 0, 0]
    assert put not in blocking  # never waited inside acquire()
    sender._lock = real_lock
    assert sender.flush(10)
    assert sender.stats.sent == 1
