"""BulkSender across process boundaries: interpreter exit and fork (subprocess tests)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import KEY, free_port

from bucket_logging._server.server import TrackingServer

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes")


@pytest.fixture
def server() -> Iterator[TrackingServer]:
    # stopped for an outage by a test: off the ephemeral range, so the port stays free
    with TrackingServer(port=free_port(), tracking_keys={KEY}) as srv:
        yield srv


def run(
    tmp_path: Path, server: TrackingServer, source: str, timeout: float = 60
) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run ``source`` in a fresh interpreter; the key and URL come from the environment."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(source))
    env = dict(os.environ)
    env.update(
        BUCKET_TRACKING_KEY=KEY,
        BUCKET_TRACKING_URL=server.url,
        NO_PROXY="127.0.0.1,localhost",
        PYTHONUNBUFFERED="1",
    )
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-W", "ignore:This process:DeprecationWarning", str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return done, time.monotonic() - began


def assert_no_key(done: subprocess.CompletedProcess[str]) -> None:
    assert KEY not in done.stdout
    assert KEY not in done.stderr


def test_queued_items_are_delivered_at_exit(tmp_path: Path, server: TrackingServer) -> None:
    done, _ = run(
        tmp_path,
        server,
        """
        from bucket_logging import Item, get_sender

        sender = get_sender(flush_interval=60)  # nothing is sent before exit
        for i in range(300):
            sender.enqueue(Item.event("e", i, {"i": i}))
        print("pending", sender.pending)
        """,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["pending", "300"]
    assert server.call_count == 300  # all there when the process has exited
    assert sorted(c["attributes"]["i"] for c in server.calls) == list(range(300))
    assert done.stderr == ""
    assert_no_key(done)


def test_the_first_request_imports_nothing_on_the_senders_thread(
    tmp_path: Path, server: TrackingServer
) -> None:
    # anyio 4.16+ imports its parts on first use: the sender imports them up front, or
    # the first request spends ~25 ms importing on the sender's thread (at exit, when that
    # is the first send) and a fork during that import leaves a partial module
    done, _ = run(
        tmp_path,
        server,
        """
        import sys
        from bucket_logging import Item, get_sender

        sender = get_sender(flush_interval=60)
        before = set(sys.modules)
        sender.enqueue(Item.event("e", "u1"))
        assert sender.flush(10)
        print(sorted(set(sys.modules) - before))
        """,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[]"]
    assert server.call_count == 1


@pytest.mark.parametrize("fault", ["hanging", "down"])
def test_a_bad_endpoint_does_not_hold_the_exit(
    tmp_path: Path, server: TrackingServer, fault: str
) -> None:
    if fault == "hanging":
        server.delay(120)  # every request is held, unanswered
    else:
        server.stop()  # connection refused
    shutdown_timeout = 1.5
    done, _ = run(
        tmp_path,
        server,
        f"""
        import time
        from bucket_logging import BulkSender, Item

        sender = BulkSender(shutdown_timeout={shutdown_timeout}, request_timeout=60)
        for i in range(5):
            sender.enqueue(Item.event("e", i))
        print(time.monotonic())  # the exit starts now (the clock is system-wide)
        """,
    )
    exit_took = time.monotonic() - float(done.stdout.split()[-1])  # not the wall clock
    assert done.returncode == 0, done.stderr
    assert exit_took < shutdown_timeout + 3, exit_took
    if fault == "hanging":  # a request was really held by the endpoint (its body, sent
        # before the exit, may be read by the server's thread only now)
        assert server.wait_for_received(1, timeout=10)
    assert server.call_count == 0
    # what was not delivered is reported on the bucket_logging logger (last resort: stderr)
    assert "bucket_logging: 5 item(s) not delivered: shutdown" in done.stderr
    assert "Traceback" not in done.stderr
    assert_no_key(done)


FORK_SCRIPT = """
import os, sys
from bucket_logging import BulkSender, Item

MODE, A_STATE = {mode!r}, {a_state!r}
sender = BulkSender(flush_interval=60)

def item(who):
    return Item.event(who, 1, {{"who": who, "pid": os.getpid()}})

sender.enqueue(item("A"))
if A_STATE == "sent":
    assert sender.flush(10)  # the parent's thread and connections exist at the fork
pid = os.fork()
if pid == 0:
    sender.enqueue(item("B"))
    if MODE == "flush-then-_exit":
        ok = sender.flush(10)
        os._exit(0 if ok else 3)
    sys.exit(0)  # a normal exit: the exit hook delivers B
_, status = os.waitpid(pid, 0)
sender.enqueue(item("C"))
print(os.getpid(), pid, os.waitstatus_to_exitcode(status), sender.flush(10))
"""


@pytest.mark.parametrize("a_state", ["queued", "sent"])
@pytest.mark.parametrize("mode", ["flush-then-_exit", "normal-exit"])
def test_fork_each_item_arrives_once(
    tmp_path: Path, server: TrackingServer, mode: str, a_state: str
) -> None:
    done, _ = run(tmp_path, server, FORK_SCRIPT.format(mode=mode, a_state=a_state))
    assert done.returncode == 0, done.stderr
    parent, child, child_code, flushed = done.stdout.split()
    assert (child_code, flushed) == ("0", "True"), done.stderr
    calls = server.calls
    who = sorted((c["event"], c["attributes"]["pid"]) for c in calls)
    assert who == [("A", int(parent)), ("B", int(child)), ("C", int(parent))]
    assert done.stderr == ""
    assert_no_key(done)


def test_the_key_is_in_no_output_even_when_everything_goes_wrong(
    tmp_path: Path, server: TrackingServer
) -> None:
    server.fail_next(2)
    server.reject_items(lambda call: call.get("event") == "poison")
    done, _ = run(
        tmp_path,
        server,
        """
        import logging, os
        logging.basicConfig(level=logging.DEBUG)  # httpx, httpcore, asyncio: all on
        from bucket_logging import BulkSender, Item, get_sender

        sender = get_sender(flush_interval=60, backoff_base=0.01)
        for i in range(10):
            sender.enqueue(Item.event("e", i))
        sender.enqueue(Item.event("poison", 1))
        print("flushed", sender.flush(10))
        print(repr(sender), sender.stats)
        wrong = BulkSender("trWRONGkey", backoff_base=0.01)
        wrong.enqueue(Item.event("e", 1))
        print("flushed", wrong.flush(10))
        sender.enqueue(Item.event("late", 1))
        print("base", os.environ["BUCKET_TRACKING_URL"])
        """,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("flushed True") == 2
    # the run did say things (so the check below is not vacuous) ...
    assert "the server rejected an item (event; HTTP 400" in done.stderr
    assert "INVALID_API_KEY" in done.stderr
    # the sender thread's HTTP client and event loop logged nothing on the app's handlers
    assert "HTTP Request" not in done.stderr
    assert "httpcore" not in done.stderr
    assert "asyncio" not in done.stderr
    # ... and never the key
    assert_no_key(done)
    assert server.call_count == 11  # 10 + "late", delivered at exit
