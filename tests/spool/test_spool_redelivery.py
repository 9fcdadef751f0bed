"""Defects of the spool found by a soak under faults (issue 13); each failed before its fix."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import orjson
import pytest
from support import KEY

from bucket_logging import BulkSender, Item, SenderStats, TrackingServer


def steady(sender: BulkSender, rate: float, seconds: float) -> int:
    """Enqueue events at ``rate`` a second for ``seconds`` (paced, as an application logs)."""
    count = int(rate * seconds)
    began = time.monotonic()
    for i in range(count):
        due = began + i / rate
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        assert sender.enqueue(Item.event("Steady", i, {"n": i}))
    return count


@pytest.mark.parametrize("spooled", [False, True], ids=["memory", "spool"])
def test_a_steady_rate_keeps_batches_whole(tmp_path: Path, spooled: bool) -> None:
    """With spool_dir set, the spool's pump took the batch being filled on every pass
    (each time a request ended, or while it awaited SQLite): under a steady rate
    batches shrank to a few items, one request each (3,478 requests instead of 11 in
    the soak, where the server answered after 50 ms)."""
    with TrackingServer() as server:
        sender = BulkSender(
            KEY,
            base_url=server.url.replace("127.0.0.1", "localhost"),
            flush_interval=0.5,
            spool_dir=tmp_path / "spool" if spooled else None,
        )
        try:
            assert sender.enqueue(Item.event("warm", 0))
            assert sender.flush(10)
            server.delay(0.05)
            count = steady(sender, rate=2000, seconds=1.5)
            assert sender.flush(10)
            sizes = [r.items for r in server.requests[1:]]
        finally:
            server.delay(0)
            sender.close(2)
    assert sum(sizes) == count == sender.stats.sent - 1
    # about one request per flush interval (3), plus the flush's: not one per pass
    assert len(sizes) <= 6, sizes


def first_request_fails(
    tmp_path: Path, error: httpx.TransportError, spooled: bool = True
) -> tuple[list[int], SenderStats]:
    """100 events whose first request fails with ``error``: (request sizes, stats)."""
    received: list[int] = []

    def handle(request: httpx.Request) -> httpx.Response:
        received.append(len(orjson.loads(request.read())))
        if len(received) == 1:
            raise error
        return httpx.Response(200, json={"success": True})

    sender = BulkSender(
        KEY,
        transport=httpx.MockTransport(handle),
        flush_interval=60,
        backoff_base=0.01,
        backoff_max=0.05,
        spool_dir=tmp_path / "spool" if spooled else None,
    )
    try:
        for i in range(100):
            assert sender.enqueue(Item.event("e", i))
        assert sender.flush(10)
        return received, sender.stats
    finally:
        sender.close(2)


@pytest.mark.parametrize("spooled", [True, False], ids=["spool", "memory"])
def test_a_request_without_an_answer_that_is_retried_counts_as_redelivered(
    tmp_path: Path, spooled: bool
) -> None:
    """A server that records a bulk request and closes the connection without
    answering receives the batch twice: the retry's items are possible duplicates
    (stats said sent=100, retried=1, redelivered=0)."""
    lost = httpx.RemoteProtocolError("Server disconnected without sending a response.")
    received, stats = first_request_fails(tmp_path, lost, spooled)
    assert received == [100, 100]
    assert (stats.sent, stats.retried, stats.redelivered) == (100, 1, 100)


def test_a_refused_connection_that_is_retried_is_not_a_duplicate(tmp_path: Path) -> None:
    """A request that surely never reached the server is retried without counting."""
    received, stats = first_request_fails(tmp_path, httpx.ConnectError("Connection refused"))
    assert received == [100, 100]
    assert (stats.sent, stats.retried, stats.redelivered) == (100, 1, 0)
