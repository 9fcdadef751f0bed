"""Batches stay whole: a steady rate (with or without a spool) and a wake for a full
batch send whole batches, not the one being filled.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from support import KEY, Endpoint

from bucket_logging import BulkSender, Item, TrackingServer


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


def test_a_wake_for_a_full_batch_does_not_send_the_batch_being_filled(
    make_sender: Callable[..., BulkSender],
) -> None:
    """Woken for a full batch, the sender also sent the one being filled: a burst went
    out as full bodies with small ones in between (seen as a 50 kB body among 2 MB ones)."""
    endpoint = Endpoint()
    sender = make_sender(transport=endpoint.transport(), flush_interval=60, max_batch_items=3)
    items = [Item.event("e", i) for i in range(4)]
    for item in items:
        assert sender.enqueue(item)
    assert endpoint.wait_delivered(3)
    assert not endpoint.wait_requests(2, timeout=0.3)  # the fourth waits for a flush
    assert sender.stats.queued == 4
    assert sender.flush(10)
    assert [len(r.items) for r in endpoint.requests] == [3, 1]
