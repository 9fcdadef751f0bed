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
