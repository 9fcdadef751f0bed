"""Helpers shared by the tests of every directory: ports, a scriptable endpoint, fakes.

Importable as ``support`` from any test file (``pythonpath = ["tests"]`` in
pyproject.toml). The fixtures built on these helpers are in ``tests/conftest.py``.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import random
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from bucket_logging import Item
from bucket_logging._sender.ledger import Ledger
from bucket_logging._sender.queue import BatchQueue
from bucket_logging._spool.store import SpoolStore

#: A distinctive tracking key: tests assert it never shows up in any output.
KEY = "trSECRETkey-5f3a9c1e7b2d4068"

#: Keyword arguments that make a sender quick in tests that do not measure delays.
FAST: dict[str, Any] = {"backoff_base": 0.01, "backoff_max": 0.05, "retry_budget": 30.0}


def closed_port() -> int:
    """A port of 127.0.0.1 where nothing listens, and nothing can start to listen.

    The port stays bound (never listening) by this process until it exits, so every
    connection to it is refused. A port merely picked and released could be taken by
    any process (another test's server, a client's ephemeral port) before it is used.
    """
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    atexit.register(sock.close)
    port: int = sock.getsockname()[1]
    return port


def closed_port_url() -> str:
    """A URL of 127.0.0.1 where nothing listens (:func:`closed_port`): every request is
    refused, as in an outage."""
    return f"http://127.0.0.1:{closed_port()}"


def _ephemeral_low() -> int:
    """The lowest port the kernel hands out by itself (to a bind to port 0, or as the
    local port of an outgoing connection)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 49152  # IANA's dynamic range: macOS, BSD, Windows


def _worker_share(start: int, stop: int) -> tuple[int, int]:
    """This pytest-xdist worker's slice of ``range(start, stop)`` (all of it outside xdist)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker.startswith("gw") or count <= 1:
        return start, stop
    size = (stop - start) // count
    begin = start + int(worker[2:]) * size
    return begin, begin + size


def free_port() -> int:
    """A port of 127.0.0.1 free now, for a server bound later or again (a restart).

    Taken below the ephemeral range, so that the kernel never hands it to anyone else
    meanwhile (a port 0 bind, an outgoing connection's local port), and a connection to
    it while nothing listens is refused, never connected to itself (TCP's simultaneous
    open, possible on a free ephemeral port). Only an explicit bind of that very port by
    another program could take it; each parallel test worker (pytest-xdist) picks in a
    range of its own, so that another worker's server never binds it.
    """
    low = _ephemeral_low()
    start, stop = _worker_share(max(1024, low - 8000), low)
    for _ in range(200):
        port = random.randrange(start, stop)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port below {low}")  # pragma: no cover


@dataclass
class Seen:
    """One request as a MockTransport handler saw it."""

    url: str
    headers: dict[str, str]
    body: bytes
    at: float
    thread: int

    @property
    def items(self) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = orjson.loads(self.body)
        return data


Answer = Callable[[httpx.Request, int], "httpx.Response | None"]


@dataclass
class Endpoint:
    """A scriptable bulk endpoint for ``httpx.MockTransport``.

    ``answer(request, n)`` (n counts requests from 0) returns the response, raises a
    transport error, or returns None for 200 ``{"success": true}``. Every request is
    recorded; the items of 2xx answers are collected in :attr:`delivered`.
    """

    answer: Answer | None = None
    requests: list[Seen] = field(default_factory=list)
    delivered: list[dict[str, Any]] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        with self.cond:
            n = len(self.requests)
            self.requests.append(
                Seen(
                    str(request.url),
                    dict(request.headers),
                    body,
                    time.monotonic(),
                    threading.get_ident(),
                )
            )
            self.cond.notify_all()
        response = self.answer(request, n) if self.answer is not None else None
        if response is None:
            response = httpx.Response(200, json={"success": True})
        if 200 <= response.status_code < 300:
            with self.cond:
                self.delivered.extend(orjson.loads(body))
                self.cond.notify_all()
        return response

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    def wait_requests(self, n: int, timeout: float = 10.0) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: len(self.requests) >= n, timeout)

    def wait_delivered(self, n: int, timeout: float = 10.0) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: len(self.delivered) >= n, timeout)


def error_body(code: str, message: str, *details: str) -> dict[str, Any]:
    """An error answer of the API."""
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["validationErrors"] = [{"message": d} for d in details]
    return {"success": False, "error": error}


#: The variables that choose a sender's key, API, URL and offline mode.
TRACKING_ENV = (
    "BUCKET_TRACKING_KEY",
    "BUCKET_TRACKING_URL",
    "BUCKET_OFFLINE",
    "BUCKET_REQUIRE_KEY",
    "REFLAG_SECRET_KEY",
    "REFLAG_API_BASE_URL",
    "REFLAG_OFFLINE",
)


class Lines(logging.Handler):
    """Every line the ``bucket_logging`` logger emits, formatted ``name: message``."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


class FakeSender:
    """A sender that is not a BulkSender: it keeps the Items it is given, sends nothing."""

    def __init__(self) -> None:
        self.items: list[Item] = []
        self.flushes: list[float | None] = []

    def enqueue(self, item: Item) -> bool:
        self.items.append(item)
        return True

    def flush(self, timeout: float | None = None) -> bool:
        self.flushes.append(timeout)
        return True

    @property
    def calls(self) -> list[dict[str, Any]]:
        """The items as the JSON objects they send, without their timestamps."""
        out = []
        for item in self.items:
            call = item.to_dict()
            call.pop("timestamp", None)
            out.append(call)
        return out

    @property
    def events(self) -> list[str]:
        """Each item's event name (its type for the other kinds)."""
        return [c.get("event", c["type"]) for c in self.calls]


def make_queue(**options: Any) -> tuple[BatchQueue, list[int]]:
    """A running BatchQueue of its own (no sender, no thread): the queue and its wake-ups."""
    wakes: list[int] = []
    settings: dict[str, Any] = {
        "max_batch_items": 15_000,
        "max_queue_items": 200_000,
        "max_queue_bytes": 64 * 1024 * 1024,
        "dedupe_window": 60.0,
        **options,
    }
    queue = BatchQueue(
        Ledger(),
        wake=lambda: wakes.append(1),
        defer=options.pop("defer", lambda body: False),
        not_running=lambda body: False,
        **{k: v for k, v in settings.items() if k != "defer"},
    )
    queue.running = True
    return queue, wakes


def app_env(**extra: str) -> dict[str, str]:
    """The environment of a program a test runs, as a user's shell would give it.

    This process's environment without any ``BUCKET_*`` or ``REFLAG_*`` variable (the
    program gets only those of ``extra``), output unbuffered, loopback never through a
    proxy.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BUCKET_", "REFLAG_"))}
    env.update(PYTHONUNBUFFERED="1", NO_PROXY="127.0.0.1,localhost")
    env.update(extra)
    return env


class Scripts:
    """Python programs written to a test's directory and run in their own interpreter.

    :meth:`run` waits for the program's exit (a test fails, not hangs, past
    ``timeout``); :meth:`start` returns it running. :meth:`close` (the ``scripts``
    fixture calls it) kills whatever is still running.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[subprocess.Popen[str]] = []

    def write(self, source: str, name: str = "script.py") -> Path:
        path = self.directory / name
        path.write_text(textwrap.dedent(source))
        return path

    def run(
        self, source: str, *, env: dict[str, str] | None = None, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        script = self.write(source)
        try:
            return subprocess.run(
                [sys.executable, str(script)],
                env=app_env(**(env or {})),
                cwd=self.directory,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            pytest.fail(f"the script did not exit within {timeout} s: {exc.stderr!r}")

    def start(self, source: str, *, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        script = self.write(source)
        proc = subprocess.Popen(
            [sys.executable, str(script)],
            env=app_env(**(env or {})),
            cwd=self.directory,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.started.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=10)


class RelayProcess:
    """``bucket-logging relay`` in a process of its own, sending to ``url`` with ``key``.

    Waits for its banner and reads its port from it; :attr:`url` names it by ``host``
    (it listens on 127.0.0.1: ``localhost`` is what a pipeline's config says).
    :meth:`stop` ends it with SIGTERM and returns (exit status, everything it wrote to
    stderr), having checked that neither the key nor the ``--token`` was printed.
    """

    def __init__(self, url: str, key: str, *args: str, host: str = "127.0.0.1", **env: str) -> None:
        base = {k: v for k, v in os.environ.items() if not k.startswith("BUCKET_")}
        self.secrets = [key]
        if "--token" in args:
            self.secrets.append(args[args.index("--token") + 1])
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bucket_logging", "relay", "--port", "0", *args],
            env={**base, "BUCKET_TRACKING_KEY": key, "BUCKET_TRACKING_URL": url, **env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.banner = ""
        assert self.proc.stderr is not None
        while "relay on http://" not in self.banner:
            line = self.proc.stderr.readline()
            if not line:
                self.proc.kill()
                pytest.fail(f"the relay did not start: {self.banner}")
            self.banner += line
        address = self.banner.split("relay on http://", 1)[1].split()[0].rstrip('",')
        self.port = int(address.rsplit(":", 1)[1])
        self.url = f"http://{host}:{self.port}"

    @property
    def root(self) -> str:
        """Its URL with the path ``/`` (where pipelines post)."""
        return self.url + "/"

    def get(self, path: str, **headers: str) -> httpx.Response:
        return httpx.get(self.url + path, headers=headers, timeout=10)

    def post(self, body: bytes, token: str | None = None) -> httpx.Response:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.post(self.url + "/", content=body, headers=headers, timeout=10)

    def peak_rss_mb(self) -> float:
        """The relay's peak resident memory so far, in MiB (its largest process; Linux)."""
        pids = [self.proc.pid]
        with contextlib.suppress(OSError):
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as fh:
                pids += [int(p) for p in fh.read().split()]
        peaks = []
        for pid in pids:
            with open(f"/proc/{pid}/status") as fh:
                peaks += [int(ln.split()[1]) / 1024 for ln in fh if ln.startswith("VmHWM:")]
        return max(peaks)

    def signal_stop(self) -> None:
        self.proc.send_signal(15)

    def stop(self, timeout: float = 60.0) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(15)
        _, err = self.proc.communicate(timeout=timeout)
        err = self.banner + err
        for secret in self.secrets:
            assert secret not in err
        return self.proc.returncode, err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=10)


def poll(check: Callable[[], bool], timeout: float = 15.0, step: float = 0.05) -> bool:
    """Whether ``check()`` turned true within ``timeout`` seconds (asked every ``step``)."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)


class Inserts:
    """Counts ``SpoolStore.insert`` calls (run on the spool's worker), for waiting on them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.cond = threading.Condition()
        self.done = 0
        real = SpoolStore.insert

        def spy(store: SpoolStore, *args: Any, **kwargs: Any) -> Any:
            try:
                return real(store, *args, **kwargs)
            finally:
                with self.cond:
                    self.done += 1
                    self.cond.notify_all()

        monkeypatch.setattr(SpoolStore, "insert", spy)

    def wait(self, n: int) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.done >= n, 10)
