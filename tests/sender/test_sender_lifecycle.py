"""A sender's life: a flush answered when it stops, items after close, a forked child's
first calls, what a subclass or a bad item does to enqueue, its own logs hidden.

The batch queue's own (the queue lock, a drain or a put re-entered by a signal
handler) are in test_queue.py.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator

import httpx
import pytest
from support import KEY, Endpoint

from bucket_logging import BulkSender, Item


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
    sender.after_fork_in_child()  # what os.fork() runs in the child
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


def test_a_subclass_that_overrides_enqueue_sees_every_item(
    make_sender: Callable[..., BulkSender],
) -> None:
    """The trackers queued the everyday event behind an overridden enqueue's back."""
    from bucket_logging import BucketHandler

    seen: list[Item] = []

    class Spy(BulkSender):
        def enqueue(self, item: Item) -> bool:
            seen.append(item)
            return super().enqueue(item)

    endpoint = Endpoint()
    sender = Spy(KEY, transport=endpoint.transport(), flush_interval=60)
    try:
        log = logging.getLogger("regressions.spy")
        log.handlers[:] = [BucketHandler(sender=sender)]
        log.propagate = False
        log.setLevel(logging.INFO)
        log.info("sent", extra={"bucket_event": "Sent", "user_id": 1})
        assert sender.flush(10)
        assert [item.to_dict()["event"] for item in seen] == ["Sent"]
        assert endpoint.wait_delivered(1)
    finally:
        sender.close(1)


def test_an_item_whose_body_is_not_bytes_is_dropped_not_raised(
    make_sender: Callable[..., BulkSender], caplog: pytest.LogCaptureFixture
) -> None:
    sender = make_sender(transport=Endpoint().transport(), flush_interval=60)
    with caplog.at_level(logging.WARNING, logger="bucket_logging"):
        assert sender.enqueue(Item("event", '{"type":"event"}')) is False  # type: ignore[arg-type]
    assert sender.stats.dropped == {"invalid": 1}
    assert any("not bytes" in r.getMessage() for r in caplog.records)
    assert sender.enqueue(Item("event", bytearray(Item.event("e", 1).body)))  # type: ignore[arg-type]
    assert sender.flush(10)
    assert sender.stats.sent == 1
