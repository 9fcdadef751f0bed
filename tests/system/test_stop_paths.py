"""Nothing lost when a process ends the way real processes end (issue 10).

Each test runs a real program from ``tests/system/stop_apps/`` in its own process, configured
by environment (``BUCKET_TRACKING_KEY``, ``BUCKET_TRACKING_URL`` naming the host as
``localhost`` or ``127.0.0.1``) and pointed at a :class:`TrackingServer` in this process;
then ends it the way deployments do (a return, SIGTERM as sent by docker, Kubernetes or
systemd, a server's graceful shutdown, Ctrl-C) and asserts on what the server received
(exact counts), the exit status and stderr (no traceback, never the key).

The apps set ``flush_interval`` to 30 s (``STOP_APP_FLUSH_INTERVAL``): what they log is
still queued when the stop comes, so each test sees what the stop itself delivers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from support import KEY, free_port

from bucket_logging import TrackingServer

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and processes")

APPS = Path(__file__).resolve().parent / "stop_apps"
PY = sys.executable
HOSTS = ["localhost", "127.0.0.1"]

#: The library's default: what a stop may spend delivering.
SHUTDOWN_TIMEOUT = 5.0

#: Requests made to each app server before it is stopped.
REQUESTS = 20


class Child:
    """A program of ``stop_apps/`` in its own process group, its output read as it comes."""

    def __init__(self, argv: list[str], env: dict[str, str], stdin: bool = False) -> None:
        self.argv = argv
        self.proc = subprocess.Popen(
            argv,
            cwd=APPS,
            env=env,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group, as under a terminal or init
        )
        self.signalled_at: float | None = None
        self._lines: dict[str, list[str]] = {"out": [], "err": []}
        self._cond = threading.Condition()
        self._readers = [
            threading.Thread(target=self._read, args=(name, stream), daemon=True)
            for name, stream in (("out", self.proc.stdout), ("err", self.proc.stderr))
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, name: str, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            with self._cond:
                self._lines[name].append(line)
                self._cond.notify_all()
        with self._cond:
            self._lines[name].append("")  # end of stream
            self._cond.notify_all()

    @property
    def stdout(self) -> str:
        with self._cond:
            return "".join(self._lines["out"])

    @property
    def stderr(self) -> str:
        with self._cond:
            return "".join(self._lines["err"])

    def describe(self) -> str:
        return (
            f"{' '.join(self.argv)}: exit {self.proc.returncode}\n"
            f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}"
        )

    def wait_line(self, text: str, count: int = 1, stream: str = "out", timeout: float = 30) -> str:
        """Wait until ``count`` lines of ``stream`` contain ``text``; return the last one."""

        def found() -> list[str]:
            return [line for line in self._lines[stream] if text in line]

        def done() -> bool:
            ended = bool(self._lines[stream]) and self._lines[stream][-1] == ""
            return len(found()) >= count or ended

        with self._cond:
            self._cond.wait_for(done, timeout)
            lines = found()
        assert len(lines) >= count, f"no {count}x {text!r} on std{stream}\n{self.describe()}"
        return lines[count - 1].rstrip("\n")

    def send_line(self, line: str = "") -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def signal(self, signum: int, group: bool = False) -> None:
        """Send ``signum`` to the process (or its whole group, like a terminal's Ctrl-C)."""
        self.signalled_at = time.monotonic()
        if group:
            os.killpg(self.proc.pid, signum)
        else:
            self.proc.send_signal(signum)

    def wait(self, timeout: float = 30) -> int:
        """Wait for the exit; the process's output is read to its end."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"still running after {timeout} s\n{self.describe()}")
        for reader in self._readers:
            reader.join(10)
        return code

    @property
    def took(self) -> float:
        """Seconds from the signal to the exit (call after :meth:`wait`)."""
        assert self.signalled_at is not None
        return time.monotonic() - self.signalled_at

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


Run = Callable[..., Child]


@pytest.fixture
def server() -> Iterator[TrackingServer]:
    # restarted on its port, or stopped for an outage, by some tests: off the ephemeral range
    with TrackingServer(port=free_port(), tracking_keys={KEY}) as srv:
        yield srv


@pytest.fixture
def run(server: TrackingServer) -> Iterator[Run]:
    """Start a program of ``stop_apps/`` against ``server``; kill what is left at the end."""
    started: list[Child] = []

    def start(argv: list[str], host: str = "localhost", stdin: bool = False, **extra: str) -> Child:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BUCKET_")}
        env.update(
            BUCKET_TRACKING_KEY=KEY,
            BUCKET_TRACKING_URL=f"http://{host}:{server.port}",
            NO_PROXY="127.0.0.1,localhost",
            PYTHONPATH=os.pathsep.join(filter(None, [str(APPS), os.environ.get("PYTHONPATH")])),
            PYTHONUNBUFFERED="1",
            STOP_APP_FLUSH_INTERVAL="30",
        )
        env.update(extra)
        child = Child([PY, *argv], env, stdin=stdin)
        started.append(child)
        return child

    yield start
    for child in started:
        child.kill()


def arrived(server: TrackingServer, event: str) -> list[int]:
    """The numbers of the ``event`` calls the server accepted, sorted."""
    return sorted(c["attributes"]["n"] for c in server.calls_of("event") if c["event"] == event)


def assert_clean(child: Child) -> None:
    """No traceback, and never the key, in anything the process printed."""
    assert "Traceback" not in child.stderr, child.describe()
    assert KEY not in child.stdout
    assert KEY not in child.stderr


# ----------------------------------------------------------------- scripts and workers


@pytest.mark.parametrize("host", HOSTS)
def test_a_script_that_returns_delivers_its_events(
    run: Run, server: TrackingServer, host: str
) -> None:
    child = run(["script.py"], host)
    assert child.wait() == 0, child.describe()
    assert arrived(server, "Ran script") == [0, 1, 2], child.describe()
    assert child.stderr == ""
    assert_clean(child)


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("end", ["return", "sigterm"])
def test_the_last_event_after_an_idle_time_arrives(
    run: Run, server: TrackingServer, host: str, end: str
) -> None:
    child = run(["idle.py", *(["--wait-for-sigterm"] if end == "sigterm" else [])], host,
                stdin=True)  # fmt: skip
    child.wait_line("first sent True")
    # The server closes its keep-alive connections (a restart, as an idle timeout or a
    # load balancer would): the last event needs a new connection, during the exit.
    server.stop()
    server.start()
    child.send_line()
    if end == "sigterm":
        child.wait_line("logged last")
        child.signal(signal.SIGTERM)
    assert child.wait() == (0 if end == "return" else -signal.SIGTERM), child.describe()
    assert arrived(server, "Started") == [0]
    assert arrived(server, "Last") == [1], child.describe()
    assert child.stderr == ""
    assert_clean(child)


@pytest.mark.parametrize("host", HOSTS)
def test_sigterm_delivers_what_a_worker_logged_and_still_terminates_it(
    run: Run, server: TrackingServer, host: str
) -> None:
    child = run(["worker.py", "300"], host)
    disposition = child.wait_line("sigterm=")
    child.wait_line("logged 300")
    child.signal(signal.SIGTERM)  # docker stop, Kubernetes, systemd, supervisor
    code = child.wait()
    assert arrived(server, "Did work") == list(range(300)), child.describe()
    assert disposition != "sigterm=SIG_DFL"  # the library's handler was in place
    assert code == -signal.SIGTERM, child.describe()  # still terminated by SIGTERM
    assert child.took < SHUTDOWN_TIMEOUT + 1, child.took
    assert child.stderr == ""
    assert_clean(child)


@pytest.mark.parametrize("fault", ["hanging", "down"])
def test_sigterm_with_a_bad_endpoint_ends_within_the_deadline_and_reports_the_loss(
    run: Run, server: TrackingServer, fault: str
) -> None:
    if fault == "hanging":
        server.delay(60)  # every request is held unanswered
    shutdown_timeout = 1.5
    child = run(["worker.py", "300", "--shutdown-timeout", str(shutdown_timeout)])
    child.wait_line("logged 300")
    if fault == "down":
        server.stop()  # connections refused
    child.signal(signal.SIGTERM)
    code = child.wait()
    assert code == -signal.SIGTERM, child.describe()
    assert child.took < shutdown_timeout + 1, child.took
    if fault == "hanging":  # the stop did try: a request was held by the endpoint (its
        # body, sent before the exit, may be read by the server's thread only now)
        assert server.wait_for_received(1, timeout=10)
    assert server.call_count == 0
    # The loss is reported with its cause: the shutdown deadline, not "retries".
    assert "300 item(s) not delivered: shutdown" in child.stderr, child.describe()
    assert "retries_exhausted" not in child.stderr
    assert_clean(child)


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("installed", ["before", "after"])
def test_an_apps_own_sigterm_handler_runs_decides_the_exit_and_its_last_event_arrives(
    run: Run, server: TrackingServer, installed: str, host: str
) -> None:
    child = run(["worker.py", "50", "--own-handler", installed], host)
    # The app's handler is in place, neither replaced nor wrapped by the library.
    assert child.wait_line("sigterm=") == "sigterm=on_sigterm"
    child.wait_line("logged 50")
    child.signal(signal.SIGTERM)
    code = child.wait()
    assert "app handler ran" in child.stdout, child.describe()
    assert code == 0, child.describe()  # the app's sys.exit(0) stands
    assert arrived(server, "Did work") == list(range(50)), child.describe()
    assert arrived(server, "Stopped worker") == [-1], child.describe()  # logged in the handler
    assert child.stderr == ""
    assert_clean(child)


def test_an_apps_handler_that_chains_to_the_librarys_delivers_its_last_event_too(
    run: Run, server: TrackingServer
) -> None:
    child = run(["worker.py", "50", "--own-handler", "chain"])
    assert child.wait_line("sigterm=") == "sigterm=chained"
    child.wait_line("logged 50")
    child.signal(signal.SIGTERM)
    code = child.wait()
    assert "app handler ran" in child.stdout, child.describe()
    assert arrived(server, "Did work") == list(range(50)), child.describe()
    assert arrived(server, "Stopped worker") == [-1], child.describe()
    assert code == -signal.SIGTERM, child.describe()  # the library's handler ended it
    assert child.stderr == ""
    assert_clean(child)


def test_sigterm_during_a_retry_backoff_still_delivers(run: Run, server: TrackingServer) -> None:
    server.fail_next(3)  # the endpoint has a bad moment: the sender backs off
    child = run(["worker.py", "300"], STOP_APP_FLUSH_INTERVAL="0.05")
    child.wait_line("logged 300")
    assert server.wait_for_received(1, timeout=10)  # a request failed: backing off now
    child.signal(signal.SIGTERM)
    code = child.wait()
    assert arrived(server, "Did work") == list(range(300)), child.describe()
    assert code == -signal.SIGTERM, child.describe()
    assert child.took < SHUTDOWN_TIMEOUT + 1, child.took
    assert_clean(child)


def test_sigterm_in_the_middle_of_log_calls_delivers_every_completed_one(
    run: Run, server: TrackingServer
) -> None:
    child = run(["worker.py", "1000", "--busy"])
    child.wait_line("logged 1000")
    child.signal(signal.SIGTERM)  # lands inside some log call of the busy loop
    code = child.wait()
    numbers = arrived(server, "Did work")
    # Every call that completed arrived, once: numbers 0..k-1 without a gap (the call the
    # signal interrupted may or may not have been queued).
    assert len(numbers) >= 1000, child.describe()
    assert numbers == list(range(len(numbers))), child.describe()
    assert code == -signal.SIGTERM, child.describe()
    assert child.took < SHUTDOWN_TIMEOUT + 1, child.took
    assert child.stderr == ""
    assert_clean(child)


def test_a_second_sigterm_during_the_delivery_ends_the_process_at_once(
    run: Run, server: TrackingServer
) -> None:
    server.delay(60)
    child = run(["worker.py", "10", "--shutdown-timeout", "30"])
    child.wait_line("logged 10")
    child.signal(signal.SIGTERM)
    assert server.wait_for_received(1, timeout=10)  # the delivery is under way, held
    child.signal(signal.SIGTERM)  # impatient: docker stop's second signal, or an operator
    assert child.wait() == -signal.SIGTERM, child.describe()
    assert child.took < 2, child.took
    assert_clean(child)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="Linux /proc")
def test_the_librarys_threads_leave_sigterm_to_the_main_thread(run: Run) -> None:
    child = run(["threads.py"])
    assert child.wait() == 0, child.describe()
    lines = child.stdout.splitlines()
    assert any(line.startswith("bucket_logging-sender ") for line in lines), child.describe()
    assert all(line.endswith("blocks SIGTERM: True") for line in lines), child.describe()


def test_sigterm_delivers_when_the_tracking_was_configured_in_another_thread(
    run: Run, server: TrackingServer
) -> None:
    child = run(["worker.py", "30", "--configure-in-thread"])
    child.wait_line("logged 30")
    child.signal(signal.SIGTERM)
    code = child.wait()
    assert arrived(server, "Did work") == list(range(30)), child.describe()
    assert code == -signal.SIGTERM, child.describe()
    assert_clean(child)


def test_an_ignored_sigterm_stays_ignored(run: Run, server: TrackingServer) -> None:
    child = run(["worker.py", "3", "--own-handler", "ignore"])
    assert child.wait_line("sigterm=") == "sigterm=SIG_IGN", child.describe()
    child.wait_line("logged 3")
    child.signal(signal.SIGTERM)
    with pytest.raises(subprocess.TimeoutExpired):
        child.proc.wait(0.5)  # still running: the app chose to ignore SIGTERM
    child.signal(signal.SIGINT)  # KeyboardInterrupt: a normal exit
    assert child.wait() != 0
    assert arrived(server, "Did work") == [0, 1, 2], child.describe()


@pytest.mark.parametrize(
    "switch",
    ["BUCKET_HANDLE_SIGTERM=0", "BUCKET_HANDLE_SIGTERM=false", "BUCKET_HANDLE_SIGTERM=off",
     "BUCKET_HANDLE_SIGTERM=no", "handle_sigterm=False"],
)  # fmt: skip
def test_sigterm_handling_can_be_switched_off(run: Run, switch: str) -> None:
    name, value = switch.split("=")
    if name == "handle_sigterm":  # the keyword, on a handler and a processor
        child = run(["worker.py", "3", "--processor", "--no-sigterm-kw"])
    else:
        child = run(["worker.py", "3"], **{name: value})
    assert child.wait_line("sigterm=") == "sigterm=SIG_DFL", child.describe()
    child.wait_line("logged 3")
    child.signal(signal.SIGTERM)
    assert child.wait() == -signal.SIGTERM  # the default disposition: ends at once
    assert child.took < 2, child.took
    assert_clean(child)


# ----------------------------------------------------------------------- app servers


def wait_ready(child: Child, port: int, timeout: float = 30) -> None:
    """Poll ``GET /`` until the app server answers (or exits, or ``timeout`` passes)."""
    deadline = time.monotonic() + timeout
    with httpx.Client(trust_env=False, timeout=2) as client:
        while time.monotonic() < deadline:
            assert child.proc.poll() is None, child.describe()
            try:
                if client.get(f"http://localhost:{port}/").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
    pytest.fail(f"not ready after {timeout} s\n{child.describe()}")


def make_requests(port: int, n: int = REQUESTS) -> None:
    with httpx.Client(base_url=f"http://localhost:{port}", trust_env=False, timeout=10) as client:
        for i in range(n):
            assert client.get(f"/hit/{i}").status_code == 200


def uvicorn(*options: str) -> Callable[[int], list[str]]:
    def argv(port: int) -> list[str]:
        return ["-m", "uvicorn", "asgi_app:app", "--host", "localhost", "--port", str(port),
                *options]  # fmt: skip

    return argv


def gunicorn(worker: str, *options: str) -> Callable[[int], list[str]]:
    def argv(port: int) -> list[str]:
        app = "asgi_app:app" if "Uvicorn" in worker else "wsgi_app:app"
        return ["-m", "gunicorn", "-k", worker, *options, "-b", f"localhost:{port}", app]

    return argv


def hypercorn(port: int) -> list[str]:
    return ["-m", "hypercorn", "--bind", f"localhost:{port}", "asgi_app:app"]


#: The line README once asked of an app under ``uvicorn --workers`` (not needed any
#: more, and harmless): its lifespan shutdown awaits ``bucket_logging.aflush(5)``.
LIFESPAN_FLUSH = {"STOP_APP_LIFESPAN_FLUSH": "1"}

#: (the server's arguments for a port, extra environment of the app)
APP_SERVERS = [
    pytest.param(uvicorn(), {}, id="uvicorn"),
    pytest.param(uvicorn("--workers", "2"), {}, id="uvicorn --workers 2"),
    pytest.param(uvicorn("--workers", "2"), LIFESPAN_FLUSH,
                 id="uvicorn --workers 2+lifespan-aflush"),
    pytest.param(uvicorn("--reload"), {}, id="uvicorn --reload"),
    pytest.param(uvicorn("--reload"), LIFESPAN_FLUSH, id="uvicorn --reload+lifespan-aflush"),
    pytest.param(
        uvicorn("--workers", "2", "--log-config", "log_config.json"),
        {"STOP_APP_LOG_CONFIG": "server"},
        id="uvicorn --workers 2 --log-config",
    ),
    pytest.param(gunicorn("uvicorn.workers.UvicornWorker", "-w", "1"), {},
                 id="gunicorn UvicornWorker"),
    pytest.param(gunicorn("uvicorn.workers.UvicornWorker", "-w", "1", "--preload"), {},
                 id="gunicorn --preload UvicornWorker"),
    pytest.param(gunicorn("uvicorn.workers.UvicornWorker", "-w", "1", "--preload"),
                 LIFESPAN_FLUSH, id="gunicorn --preload UvicornWorker+lifespan-aflush"),
    pytest.param(gunicorn("sync", "-w", "2"), {}, id="gunicorn sync"),
    pytest.param(gunicorn("sync", "-w", "1", "--preload"), {}, id="gunicorn --preload sync"),
    pytest.param(gunicorn("gthread", "-w", "1", "--threads", "2"), {}, id="gunicorn gthread"),
    pytest.param(hypercorn, {}, id="hypercorn"),
]  # fmt: skip


def serve_then_stop(
    child: Child, port: int, server: TrackingServer, signum: int, group: bool = False
) -> None:
    """Await readiness, make the requests, stop the server with ``signum``; every
    request's event arrived, the exit is the signal's (or a clean one), promptly."""
    wait_ready(child, port)
    make_requests(port)
    child.signal(signum, group=group)
    code = child.wait()
    assert arrived(server, "Hit") == list(range(REQUESTS)), child.describe()
    # a clean exit, or by the signal as before (Ctrl-C: KeyboardInterrupt's status 1 too)
    assert code in ((0, 1, -signum) if signum == signal.SIGINT else (0, -signum)), child.describe()
    assert child.took < SHUTDOWN_TIMEOUT + 5, child.took
    assert_clean(child)


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize(("server_argv", "app_env"), APP_SERVERS)
def test_an_app_server_stopped_by_sigterm_delivers_every_request_event(
    run: Run,
    server: TrackingServer,
    server_argv: Callable[[int], list[str]],
    app_env: dict[str, str],
    host: str,
) -> None:
    port = free_port()
    child = run(server_argv(port), host, **app_env)
    serve_then_stop(child, port, server, signal.SIGTERM)  # to the master, as docker does


SYSTEMD_STOPPED = [
    pytest.param(uvicorn(), {}, id="uvicorn"),
    pytest.param(uvicorn("--workers", "2"), {}, id="uvicorn --workers 2"),
    pytest.param(uvicorn("--workers", "2"), LIFESPAN_FLUSH,
                 id="uvicorn --workers 2+lifespan-aflush"),
    pytest.param(gunicorn("uvicorn.workers.UvicornWorker", "-w", "2"), {},
                 id="gunicorn UvicornWorker"),
    pytest.param(gunicorn("sync", "-w", "2"), {}, id="gunicorn sync"),
    pytest.param(hypercorn, {}, id="hypercorn"),
]  # fmt: skip


@pytest.mark.parametrize(("server_argv", "app_env"), SYSTEMD_STOPPED)
def test_an_app_server_whose_every_process_gets_sigterm_delivers_every_request_event(
    run: Run,
    server: TrackingServer,
    server_argv: Callable[[int], list[str]],
    app_env: dict[str, str],
) -> None:
    port = free_port()
    child = run(server_argv(port), **app_env)
    # systemd's default KillMode=control-group: SIGTERM to the master and every worker
    serve_then_stop(child, port, server, signal.SIGTERM, group=True)


def test_uvicorn_stopped_with_ctrl_c_delivers_every_request_event(
    run: Run, server: TrackingServer
) -> None:
    port = free_port()
    child = run(uvicorn()(port))
    serve_then_stop(child, port, server, signal.SIGINT, group=True)  # Ctrl-C in its terminal


# ------------------------------------------------------------- Celery, Django, children


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("pool", ["prefork", "solo"])
def test_a_celery_workers_warm_shutdown_delivers_every_task_event(
    run: Run, server: TrackingServer, tmp_path: Path, pool: str, host: str
) -> None:
    pytest.importorskip("celery")
    queue = {"STOP_APP_QUEUE_DIR": str(tmp_path)}
    sent = run(["celery_app.py", str(REQUESTS)], host, **queue)
    assert sent.wait() == 0, sent.describe()
    worker = run(
        ["-m", "celery", "-A", "celery_app", "worker", "--pool", pool, "--concurrency", "2",
         "--loglevel", "INFO", "--without-heartbeat", "--without-gossip", "--without-mingle"],
        host,
        **queue,
    )  # fmt: skip
    worker.wait_line("succeeded in", count=REQUESTS, stream="err")
    # Warm shutdown. (Not to every process, as systemd's KillMode=control-group would:
    # Celery's main process then stalls for 10-30+ s, with or without this library;
    # Celery's docs ask for KillMode=mixed.)
    worker.signal(signal.SIGTERM)
    code = worker.wait()
    assert arrived(server, "Task ran") == list(range(REQUESTS)), worker.describe()
    assert code in (0, -signal.SIGTERM), worker.describe()
    assert worker.took < SHUTDOWN_TIMEOUT + 5, worker.took
    assert_clean(worker)


@pytest.mark.parametrize(
    ("reload", "stop"),
    [(True, signal.SIGINT), (False, signal.SIGINT), (False, signal.SIGTERM)],
    ids=["autoreload-ctrl-c", "noreload-ctrl-c", "noreload-sigterm"],
)
def test_django_runserver_stopped_by_ctrl_c_or_sigterm_delivers_every_request_event(
    run: Run, server: TrackingServer, reload: bool, stop: int
) -> None:
    pytest.importorskip("django")
    port = free_port()
    argv = ["-m", "django", "runserver", f"localhost:{port}", "--settings", "django_site"]
    child = run(argv if reload else [*argv, "--noreload"])
    # Ctrl-C: the terminal signals the whole group; SIGTERM: docker stop, to the process
    serve_then_stop(child, port, server, stop, group=stop == signal.SIGINT)


@pytest.mark.parametrize(
    ("mode", "method", "host"),
    [("return", "fork", "localhost"), ("return", "fork", "127.0.0.1"),
     ("return", "forkserver", "localhost"),
     ("return", "spawn", "localhost"),
     ("pool", "fork", "localhost"),
     ("flush_os_exit", "fork", "localhost"), ("flush_os_exit", "fork", "127.0.0.1"),
     ("os_exit", "fork", "localhost"), ("os_exit", "fork", "127.0.0.1")],
)  # fmt: skip
def test_a_multiprocessing_child(
    run: Run, server: TrackingServer, mode: str, method: str, host: str
) -> None:
    child = run(["mp_child.py", mode, method], host)
    assert child.wait() == 0, child.describe()
    assert "child exit 0" in child.stdout
    assert arrived(server, "Parent before") == [0]
    assert arrived(server, "Parent after") == [1]
    if mode != "os_exit":  # os._exit without a flush: what the child queued is not sent
        assert arrived(server, "Child work") == [0, 1, 2], child.describe()
    assert_clean(child)
