"""SIGTERM to a Python process that is PID 1 (a container without ``--init``).

The kernel ignores a signal's default action for PID 1, so the library's handler cannot
end the process by re-raising SIGTERM: the app goes on. It must deliver what was queued,
keep the senders open for what the app logs next, and say once why the signal did not
end the process. The program (``stop_apps/pid1.py``) runs as PID 1 of its own PID
namespace (``unshare --pid --fork --mount-proc``, as root, or in a user namespace) and
SIGTERM is sent from outside, as ``docker stop`` does. Without ``unshare`` (or the right
to use it) the tests skip locally; under ``CI`` they fail instead.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import test_stop_paths as stop
from support import KEY
from test_stop_paths import server

from bucket_logging import BulkSender, Item, TrackingServer
from bucket_logging._runtime import shutdown as _shutdown

__all__ = ["server"]

LINUX = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux namespaces")
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

UNSHARE = [
    ["unshare", "--pid", "--fork", "--mount-proc"],
    ["unshare", "--user", "--map-root-user", "--pid", "--fork", "--mount-proc"],
]

#: Events logged before the SIGTERM, and after it per stdin line.
EVENTS = 20


def _unshare() -> list[str]:
    """The first ``unshare`` command line that makes ``python`` PID 1 here."""
    problems = []
    if shutil.which("unshare") is not None:
        for argv in UNSHARE:
            probe = subprocess.run(
                [*argv, sys.executable, "-c", "import os; print(os.getpid())"],
                check=False,
                capture_output=True,
                text=True,
                timeout=30,
            )
            if probe.stdout.strip() == "1":
                return argv
            problems.append(f"{' '.join(argv)}: {probe.stderr.strip()[-200:]}")
    else:
        problems.append("no unshare (util-linux)")
    message = "cannot run a process as PID 1: " + "; ".join(problems)
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def as_pid1(server: TrackingServer) -> Iterator[stop.Child]:
    """``pid1.py`` as PID 1 of a new PID namespace, against ``server``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUCKET_")}
    env.pop(_shutdown.ENV_HANDLE_SIGTERM, None)
    env.update(
        BUCKET_TRACKING_KEY=KEY,
        BUCKET_TRACKING_URL=f"http://localhost:{server.port}",
        NO_PROXY="127.0.0.1,localhost",
        PYTHONPATH=os.pathsep.join(filter(None, [str(stop.APPS), os.environ.get("PYTHONPATH")])),
        PYTHONUNBUFFERED="1",
        STOP_APP_FLUSH_INTERVAL="30",
    )
    child = stop.Child([*_unshare(), sys.executable, "pid1.py", str(EVENTS)], env, stdin=True)
    try:
        yield child
    finally:
        child.kill()


def python_pid(child: stop.Child) -> int:
    """The host's id of the Python process (``unshare``'s child, PID 1 inside)."""
    children = Path(f"/proc/{child.proc.pid}/task/{child.proc.pid}/children").read_text()
    (pid,) = children.split()
    return int(pid)


def sigterm(pid: int, child: stop.Child) -> None:
    child.signalled_at = time.monotonic()
    os.kill(pid, signal.SIGTERM)  # from outside the namespace, as docker stop does


@LINUX
def test_sigterm_to_pid1_delivers_and_what_the_app_logs_next_arrives_too(
    as_pid1: stop.Child, server: TrackingServer
) -> None:
    child = as_pid1
    assert child.wait_line("pid=") == "pid=1", child.describe()
    child.wait_line("logged before")
    pid = python_pid(child)
    sigterm(pid, child)
    child.wait_line("SIGTERM does not end this process", stream="err")
    # Delivered at the SIGTERM, with the flush interval (30 s) far away:
    assert server.wait_for(EVENTS, timeout=10), child.describe()
    assert stop.arrived(server, "Before") == list(range(EVENTS))
    assert child.proc.poll() is None  # PID 1 goes on
    child.send_line()  # the app logs more: the senders are still open
    child.wait_line(f"logged after {EVENTS}")
    sigterm(pid, child)  # docker stop's second signal, or a later one: delivers again
    assert server.wait_for(2 * EVENTS, timeout=10), child.describe()
    assert stop.arrived(server, "After") == list(range(EVENTS))
    child.send_line()
    child.wait_line(f"logged after {2 * EVENTS}")
    assert child.proc.stdin is not None
    child.proc.stdin.close()  # the app returns: its exit delivers the rest
    assert child.wait() == 0, child.describe()
    assert stop.arrived(server, "After") == list(range(2 * EVENTS)), child.describe()
    # Said once, with the fix; nothing dropped, no traceback, never the key.
    assert child.stderr.count("SIGTERM does not end this process") == 1, child.describe()
    assert "--init" in child.stderr and "tini" in child.stderr
    assert "dropped" not in child.stderr and "closed" not in child.stderr, child.describe()
    stop.assert_clean(child)


def test_the_handler_as_pid1_delivers_keeps_the_senders_open_and_tells_once(
    server: TrackingServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The same, in-process (no namespace needed): the handler sees PID 1 and returns.
    monkeypatch.setattr(_shutdown.os, "getpid", lambda: 1)

    def reraised(signum: int) -> None:
        raise AssertionError("SIGTERM re-raised: it cannot end PID 1")

    monkeypatch.setattr(signal, "raise_signal", reraised)  # (a regression fails, not kills)
    saved = signal.getsignal(signal.SIGTERM)
    sender = BulkSender(
        KEY, base_url=f"http://localhost:{server.port}", flush_interval=30, handle_sigterm=False
    )
    try:
        sender.enqueue(Item.event("Before", user_id="u1", attributes={"n": 0}))
        with caplog.at_level("WARNING", logger="bucket_logging"):
            _shutdown._on_sigterm(signal.SIGTERM, None)  # returns: PID 1 goes on
            assert server.call_count == 1
            assert not sender.closed
            sender.enqueue(Item.event("After", user_id="u1", attributes={"n": 0}))
            _shutdown._on_sigterm(signal.SIGTERM, None)
            assert server.call_count == 2
        told = [m for m in caplog.messages if "does not end this process" in m]
        assert len(told) == 1 and "--init" in told[0], caplog.text
    finally:
        sender.close()
        signal.signal(signal.SIGTERM, saved)
