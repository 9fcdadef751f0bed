"""The exit paths' building blocks: the sender's own resolver thread and the SIGTERM hook.

End-to-end stop paths with real servers (uvicorn, gunicorn, Celery...) are in
``test_stop_paths.py``; these tests pin each mechanism on its own, in a fresh
interpreter where they touch process-wide state (signal dispositions).
"""

from __future__ import annotations

import asyncio
import concurrent.futures.thread
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support import KEY

from bucket_logging import BulkSender, DeliveryError, Item, TrackingServer
from bucket_logging._runtime import shutdown as _shutdown
from bucket_logging._sender.loop import ResolvingLoop

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


@pytest.fixture
def server() -> Iterator[TrackingServer]:
    with TrackingServer(tracking_keys={KEY}) as srv:
        yield srv


def localhost_url(server: TrackingServer) -> str:
    return f"http://localhost:{server.port}"


def run(
    tmp_path: Path, source: str, *, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.Popen[str]:
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(source))
    full_env = dict(os.environ, PYTHONUNBUFFERED="1", NO_PROXY="127.0.0.1,localhost")
    full_env.pop(_shutdown.ENV_HANDLE_SIGTERM, None)
    full_env.update(env or {})
    return subprocess.Popen(
        [sys.executable, str(script)],
        env=full_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_line(proc: subprocess.Popen[str], expected: str) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line == expected, (line, proc.stderr.read() if proc.stderr else "")


# ---------------------------------------------------------------------- the resolver


async def _resolve() -> list[object]:
    return await asyncio.get_running_loop().getaddrinfo("localhost", 80)


def test_default_loop_fails_and_sender_loop_resolves_at_shutdown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(concurrent.futures.thread, "_shutdown", True)
    default = asyncio.new_event_loop()
    try:
        with pytest.raises(RuntimeError, match="shutdown"):
            default.run_until_complete(_resolve())
    finally:
        default.close()
    loop = ResolvingLoop()
    try:
        infos = loop.run_until_complete(_resolve())
    finally:
        loop.close()
    assert infos, "localhost resolves"


def test_sender_loop_runs_blocking_calls_off_the_loop_and_keeps_explicit_executors() -> None:
    loop = ResolvingLoop()
    try:
        caller = threading.get_ident()
        ran_on = loop.run_until_complete(loop.run_in_executor(None, threading.get_ident))
        assert ran_on != caller
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            assert loop.run_until_complete(loop.run_in_executor(pool, lambda: 7)) == 7

        def boom() -> None:
            raise OSError("no such host")

        with pytest.raises(OSError, match="no such host"):
            loop.run_until_complete(loop.run_in_executor(None, boom))
    finally:
        loop.close()
    loop.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        loop.run_in_executor(None, time.time)


def test_a_cancelled_lookup_is_skipped_by_the_worker() -> None:
    loop = ResolvingLoop()
    gate = threading.Event()
    try:
        first = loop.run_in_executor(None, gate.wait, 5)
        second = loop.run_in_executor(None, time.time)
        second.cancel()  # cancelled while the worker is busy with the first
        gate.set()
        assert loop.run_until_complete(first) is True
        assert loop.run_until_complete(loop.run_in_executor(None, lambda: "next")) == "next"
    finally:
        loop.close()


def test_a_sender_delivers_to_a_host_name_after_its_connection_idled_out(
    server: TrackingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A new connection resolves "localhost" again while the interpreter is shutting
    # down (asyncio's default executor refuses work then).
    sender = BulkSender(KEY, base_url=localhost_url(server), handle_sigterm=False)
    try:
        sender.enqueue(Item.event("first", 1))
        assert sender.flush(5)
        monkeypatch.setattr(concurrent.futures.thread, "_shutdown", True)
        server.reset_next(1)  # the connection goes: the retry connects (and resolves) anew
        sender.enqueue(Item.event("last", 2))
        assert sender.flush(5)
    finally:
        sender.close(5)
    assert [c["event"] for c in server.calls] == ["first", "last"]
    assert sender.stats.retried == 1
    assert sender.stats.dropped == {}


def test_an_unexpected_delivery_error_is_not_called_retries_exhausted(
    server: TrackingServer,
) -> None:
    errors: list[DeliveryError] = []

    def broken(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("a bug")  # not an httpx.TransportError: nothing to retry

    sender = BulkSender(
        KEY,
        base_url=server.url,
        transport=httpx.MockTransport(broken),
        on_error=errors.append,
        handle_sigterm=False,
    )
    try:
        sender.enqueue(Item.event("e", 1))
        assert sender.flush(5)
    finally:
        sender.close(1)
    assert sender.stats.retried == 0
    assert sender.stats.dropped == {"internal_error": 1}
    assert [e.reason for e in errors] == ["internal_error"]
    assert "a bug" in errors[0].detail


# ---------------------------------------------------------------------- the SIGTERM hook


@pytest.mark.parametrize(
    ("option", "env", "expected"),
    [
        (True, None, True),
        (False, None, False),
        ("false", None, False),
        ("0", None, False),
        ("yes", None, True),
        (True, "0", False),
        (True, " Off ", False),
        (True, "no", False),
        (True, "false", False),
        (True, "1", True),
        (True, "", True),
    ],
)
def test_sigterm_switch(
    monkeypatch: pytest.MonkeyPatch, option: object, env: str | None, expected: bool
) -> None:
    if env is None:
        monkeypatch.delenv(_shutdown.ENV_HANDLE_SIGTERM, raising=False)
    else:
        monkeypatch.setenv(_shutdown.ENV_HANDLE_SIGTERM, env)
    assert _shutdown.sigterm_enabled(option) is expected


WORKER = """
    import logging, os, signal, sys, time
    from bucket_logging import BucketHandler

    log = logging.getLogger("worker")
    log.setLevel(logging.INFO)
    log.addHandler(BucketHandler(**{"flush_interval": 60, "shutdown_timeout": 10, **OPTIONS}))
    handler = signal.getsignal(signal.SIGTERM)
    print("default" if handler is signal.SIG_DFL else handler.__module__, flush=True)
    for i in range(50):
        log.info("work", extra={"bucket_event": "Worked", "user_id": i})
    print("ready", flush=True)
    time.sleep(30)
"""


def worker(options: str = "{}") -> str:
    return WORKER.replace("**OPTIONS", f"**{options}", 1)


def test_sigterm_delivers_then_ends_the_process_by_sigterm(
    tmp_path: Path, server: TrackingServer, host: str
) -> None:
    proc = run(
        tmp_path,
        worker(),
        env={"BUCKET_TRACKING_KEY": KEY, "BUCKET_TRACKING_URL": f"http://{host}:{server.port}"},
    )
    wait_line(proc, "bucket_logging._runtime.shutdown")
    wait_line(proc, "ready")
    proc.send_signal(signal.SIGTERM)
    # (shutdown_timeout 10: a deadline that a slow machine cannot reach by accident;
    # the delivery takes milliseconds, and the deadline tests are in test_stop_paths)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGTERM
    assert server.call_count == 50  # delivered before the process ended
    assert "Traceback" not in err
    assert KEY not in err


def test_a_second_sigterm_ends_the_delivery_at_once(tmp_path: Path, server: TrackingServer) -> None:
    server.delay(30)  # the endpoint hangs: the first SIGTERM waits for the deadline
    proc = run(
        tmp_path,
        worker("{'shutdown_timeout': 20}"),
        env={"BUCKET_TRACKING_KEY": KEY, "BUCKET_TRACKING_URL": localhost_url(server)},
    )
    wait_line(proc, "bucket_logging._runtime.shutdown")
    wait_line(proc, "ready")
    proc.send_signal(signal.SIGTERM)
    assert server.wait_for_received(1, 10)  # the delivery has begun
    began = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=10)
    assert time.monotonic() - began < 5
    assert proc.returncode == -signal.SIGTERM


@pytest.mark.parametrize(
    ("options", "env"),
    [("{'handle_sigterm': False}", {}), ("{}", {_shutdown.ENV_HANDLE_SIGTERM: "0"})],
)
def test_sigterm_handling_can_be_switched_off(
    tmp_path: Path, server: TrackingServer, options: str, env: dict[str, str]
) -> None:
    proc = run(
        tmp_path,
        worker(options),
        env={"BUCKET_TRACKING_KEY": KEY, "BUCKET_TRACKING_URL": server.url, **env},
    )
    wait_line(proc, "default")
    wait_line(proc, "ready")
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGTERM


def test_an_existing_handler_is_kept_and_its_exit_stands(
    tmp_path: Path, server: TrackingServer
) -> None:
    source = """
        import logging, signal, sys, time
        from bucket_logging import BucketHandler

        log = logging.getLogger("app")
        log.setLevel(logging.INFO)

        def on_term(signum, frame):
            log.info("stopping", extra={"bucket_event": "Stopped", "user_id": 1})
            sys.exit(3)

        signal.signal(signal.SIGTERM, on_term)
        log.addHandler(BucketHandler(flush_interval=60))
        print(signal.getsignal(signal.SIGTERM) is on_term, flush=True)
        log.info("work", extra={"bucket_event": "Worked", "user_id": 1})
        print("ready", flush=True)
        time.sleep(30)
    """
    proc = run(
        tmp_path, source, env={"BUCKET_TRACKING_KEY": KEY, "BUCKET_TRACKING_URL": server.url}
    )
    wait_line(proc, "True")
    wait_line(proc, "ready")
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=10)
    assert proc.returncode == 3  # the application's decision
    assert sorted(c["event"] for c in server.calls) == ["Stopped", "Worked"]


def test_a_sender_built_on_another_thread_has_the_main_thread_install_the_handler(
    tmp_path: Path,
) -> None:
    # Only the main thread may install a signal handler: it is asked to (a pending call,
    # run between two of its bytecodes), once, and only while SIGTERM is the default.
    source = """
        import signal, threading
        from bucket_logging import BulkSender

        t = threading.Thread(target=BulkSender, kwargs={"offline": True})
        t.start(); t.join()
        for _ in range(100): pass  # the main thread runs Python code again
        print(signal.getsignal(signal.SIGTERM).__qualname__)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the app's choice stands
        t = threading.Thread(target=BulkSender, kwargs={"offline": True})
        t.start(); t.join()
        for _ in range(100): pass
        print(signal.getsignal(signal.SIGTERM) is signal.SIG_IGN)
    """
    proc = run(tmp_path, source)
    out, err = proc.communicate(timeout=20)
    assert out.split() == ["_on_sigterm", "True"], err
    assert err == ""


def test_a_forked_pool_child_delivers_at_its_exit(tmp_path: Path, server: TrackingServer) -> None:
    # multiprocessing's fork children leave with os._exit after their finalizers.
    source = """
        import logging, multiprocessing, os, sys
        from bucket_logging import BucketHandler

        log = logging.getLogger("app")
        log.setLevel(logging.INFO)
        log.addHandler(BucketHandler(flush_interval=60, handle_sigterm=False))

        def child(n):
            for i in range(n):
                log.info("c", extra={"bucket_event": "Child", "user_id": i})

        if __name__ == "__main__":
            ctx = multiprocessing.get_context("fork")
            p = ctx.Process(target=child, args=(20,))
            p.start(); p.join()
            print(p.exitcode, flush=True)
            os._exit(0)  # the parent sends nothing itself
    """
    proc = run(
        tmp_path, source, env={"BUCKET_TRACKING_KEY": KEY, "BUCKET_TRACKING_URL": server.url}
    )
    out, err = proc.communicate(timeout=30)
    assert out.split() == ["0"], err
    assert server.call_count == 20
