"""At the close, the spool's backlog (an earlier sender's batches) is delivered too, and
the close never waits on it for nothing: a failed spool, a close on the sender's own
thread (an ``on_error`` that closes), a deadline too near for a request."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from support import KEY, closed_port_url

from bucket_logging import BulkSender, Item, TrackingServer


def leave_backlog(spool: Path, count: int = 20) -> None:
    """``count`` items left in the spool by a sender that never reached its endpoint."""
    earlier = BulkSender(KEY, base_url=closed_port_url(), spool_dir=str(spool))
    for i in range(count):
        earlier.enqueue(Item.event("Earlier", f"u{i}"))
    earlier.close(0.5)
    assert earlier.stats.spooled == count


def test_the_close_delivers_the_backlog(tmp_path: Path, server: TrackingServer) -> None:
    leave_backlog(tmp_path)
    url = f"http://localhost:{server.port}"  # (as a configuration names it)
    sender = BulkSender(KEY, base_url=url, spool_dir=str(tmp_path), shutdown_timeout=5)
    sender.close()
    assert sorted(int(c["userId"][1:]) for c in server.calls) == list(range(20))


def test_a_failed_spool_does_not_hold_the_close(tmp_path: Path, server: TrackingServer) -> None:
    leave_backlog(tmp_path)
    sender = BulkSender(KEY, base_url=server.url, spool_dir=str(tmp_path), shutdown_timeout=3)
    sender.enqueue(Item.event("Now", "x"))
    assert sender.flush(5)
    engine = sender.engine
    assert engine is not None and engine.spool is not None
    failed = threading.Event()

    def fail() -> None:
        engine.spool.fail(OSError("disk I/O error"))  # type: ignore[union-attr]
        failed.set()

    engine.call_soon(fail)
    assert failed.wait(5)
    began = time.monotonic()
    sender.close()
    assert time.monotonic() - began < 1.0  # not the 3 s deadline


def test_a_close_on_the_senders_own_thread_does_not_wait_for_itself(
    tmp_path: Path, server: TrackingServer
) -> None:
    took: list[float] = []
    closed = threading.Event()

    def on_error(_: object) -> None:  # a user's on_error that shuts the sender down
        began = time.monotonic()
        sender.close()
        took.append(time.monotonic() - began)
        closed.set()

    sender = BulkSender(
        KEY, base_url=server.url, spool_dir=str(tmp_path), shutdown_timeout=3, on_error=on_error
    )
    sender.enqueue(Item.event("Now", "x"))
    assert sender.flush(5)
    sender.refused("invalid_item", "event", "a refusal: on_error runs on the sender's thread")
    assert closed.wait(10)
    assert took[0] < 1.0  # not the 3 s deadline


def test_no_backlog_batch_is_claimed_too_near_the_deadline(
    tmp_path: Path, server: TrackingServer
) -> None:
    leave_backlog(tmp_path)
    # 0.5 s to the deadline: under the margin, nothing of the backlog is started (a batch
    # cut by the deadline may have reached the server, and would come again)
    sender = BulkSender(KEY, base_url=server.url, spool_dir=str(tmp_path), shutdown_timeout=0.5)
    sender.close()
    assert server.calls == []
    later = BulkSender(KEY, base_url=server.url, spool_dir=str(tmp_path), shutdown_timeout=5)
    later.close()
    assert sorted(int(c["userId"][1:]) for c in server.calls) == list(range(20))
