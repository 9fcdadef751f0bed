"""A retried request is counted as it happened: a possible duplicate only when it may
have arrived (no answer), never after a refused connection."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson
import pytest
from support import KEY

from bucket_logging import BulkSender, Item, SenderStats


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
