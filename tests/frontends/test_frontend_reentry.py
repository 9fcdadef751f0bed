"""The front ends are never re-entered: a bridged event leaves no claim behind, a signal
handler or a custom sender that logs while an item is queued neither hangs nor recurses."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest
import structlog

from bucket_logging import BucketHandler, BucketProcessor, Item
from bucket_logging.testing import capture_tracking


@pytest.fixture
def bridged() -> Iterator[None]:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    structlog.reset_defaults()


def test_a_bridged_event_no_bucket_handler_sees_leaves_no_claim(bridged: None) -> None:
    # The handler only takes WARNING: the INFO event's record never reaches it, so the
    # processor must not claim it, or the next stdlib record with the same constant
    # tags on this thread would pass for it and go untracked.
    structlog.configure(
        processors=[BucketProcessor(offline=True), structlog.stdlib.render_to_log_kwargs],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
    )
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    root.addHandler(BucketHandler(offline=True, level="WARNING"))
    with capture_tracking() as calls:
        structlog.get_logger("app").info("clicked", bucket_event="Clicked", user_id=42)
        logging.getLogger("app").warning(
            "clicked from stdlib", extra={"bucket_event": "Clicked", "user_id": 42}
        )
    assert [c["event"] for c in calls] == ["Clicked", "Clicked"]


_SIGNAL_SCRIPT = """
import faulthandler, logging, os, signal, sys, time
import httpx
from bucket_logging import BucketHandler, BulkSender

ok = httpx.MockTransport(lambda request: httpx.Response(200, json={}))
sender = BulkSender("k" * 20, transport=ok)
log = logging.getLogger("app")
log.addHandler(BucketHandler(sender=sender))
log.setLevel(logging.INFO)
log.propagate = False
fired = 0

def on_alarm(signum, frame):
    global fired
    fired += 1
    log.info("tick", extra={"bucket_event": "Tick", "user_id": "u1"})

signal.signal(signal.SIGALRM, on_alarm)
faulthandler.dump_traceback_later(20, exit=True)
signal.setitimer(signal.ITIMER_REAL, 0.0003, 0.0003)
calls = 0
while fired < 3000:
    log.info("hello", extra={"bucket_event": "Hello", "user_id": "u1"})
    calls += 1
signal.setitimer(signal.ITIMER_REAL, 0, 0)
faulthandler.cancel_dump_traceback_later()
assert sender.flush(10)
stats = sender.stats
assert stats.sent == calls + fired and not stats.dropped, (calls, fired, stats)
print("delivered", stats.sent)
os._exit(0)
"""


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs signal.setitimer")
def test_a_signal_handler_that_logs_while_an_item_is_queued_does_not_hang() -> None:
    """A handler run inside BulkSender._put (which holds the queue lock) spun forever on
    the lock its own thread held; its event is now queued from the sender's thread."""
    proc = subprocess.run(
        [sys.executable, "-c", _SIGNAL_SCRIPT],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and "delivered" in proc.stdout, proc.stderr[-2000:]


def test_a_custom_sender_that_logs_a_tracked_record_is_not_reentered() -> None:
    """A custom sender's enqueue is application code: what it logs is not tracked
    (it recursed until a RecursionError was swallowed)."""
    log = logging.getLogger("regressions.audit")

    class Audit:
        def __init__(self) -> None:
            self.items: list[Item] = []

        def enqueue(self, item: Item) -> bool:
            self.items.append(item)
            log.info("forwarded", extra={"bucket_event": "Forwarded", "user_id": "audit"})
            return True

        def flush(self, timeout: float | None = None) -> bool:
            return True

    audit = Audit()
    log.handlers[:] = [BucketHandler(sender=audit)]
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        log.info("hi", extra={"bucket_event": "Hi", "user_id": 1})
        log.info("hi", extra={"bucket_event": "Hi", "user_id": 1, "bucket_user": True})
    finally:
        log.handlers[:] = []
    assert [item.to_dict().get("event", item.kind) for item in audit.items] == ["Hi", "user", "Hi"]
