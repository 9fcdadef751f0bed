"""The relay as a service: one process on uvicorn, or ``--workers N`` forked processes.

One process: the relay's app (:mod:`bucket_logging._relay.app`) served by uvicorn on
the main thread; SIGTERM or SIGINT drains it, then the sender delivers what it holds
(or leaves it in the spool) and the relay prints its summary, with exit status 1 if
items it had answered 200 were lost.

``--workers N``: the parent binds the port (one ``SO_REUSEPORT`` socket per worker,
where the platform has it: the kernel spreads connections evenly, where one shared
accept queue let one worker take them all) and forks N workers before any thread
exists; each worker serves its socket with its own front end and sender (a
shared ``--spool-dir`` is safe: its batches are claimed per process). SIGTERM or
SIGINT to the parent is passed on to every worker; the parent exits once they all
did, with status 1 if any worker lost items.

It knows nothing of argument parsing: the command line (:mod:`bucket_logging._cli.relay`)
hands it a front-end factory, the address, the token and the :class:`Limits`.

May import: the relay's app and server (so the ``relay`` extra), the front ends, the
sender, the process layer.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any, cast

from .._frontends.jsonlines import JsonLines
from .._runtime.diagnostics import is_loopback
from .._sender.sender import BulkSender
from . import logs as _logs
from . import metrics as _metrics
from .app import RelayApp
from .limits import Limits
from .origin import BrowserRules
from .sender import RelaySender
from .server import listen_each, uvicorn_server

__all__ = ["run"]

#: A worker told to stop before its server started (it then starts, and stops at once).
_stop_early = False

#: Builds the front end a relay process tracks through (its sender a
#: :class:`RelaySender`), or None when it cannot (the reason already printed).
FrontEndFactory = Callable[[], "JsonLines | None"]


def run(
    front_end: FrontEndFactory,
    *,
    host: str,
    port: int,
    token: str | None,
    limits: Limits,
    workers: int = 1,
    unready_after: float = 60.0,
    log_format: str = "text",
    drain_delay: float = 0.0,
    metrics: bool = True,
    browser: BrowserRules | None = None,
    warnings: tuple[str, ...] = (),
) -> int:
    """Serve the relay on ``host:port`` until SIGTERM or SIGINT; the exit status.

    Args:
        front_end: called once in each serving process (after the fork).
        host: the interface to listen on.
        port: the port (0 picks a free one).
        token: the shared secret of ``Authorization: Bearer``; None for none.
        limits: the bounds.
        workers: how many processes serve the one listening socket.
        unready_after: seconds the API may fail before ``/readyz`` says 503 (with
            nowhere to keep items).
        log_format: ``text``, or ``json`` (one object a line: :mod:`.logs`).
        drain_delay: seconds of answering 503 to probes and posts after SIGTERM,
            before the drain.
        metrics: False: no counters and no ``/metrics`` (``--no-metrics``).
        browser: what a web page may do (by default: nothing).
        warnings: lines to say at start, before the banner (in the log format).
    """
    if log_format == "json":
        _logs.use_json()
    stderr = sys.stderr
    if not is_loopback(host) and token is None:
        print(
            f"WARNING: bucket-logging relay listens on {host} WITHOUT a token: anyone "
            "who can reach this port can send tracking calls in your app's name. Set "
            "--token (or BUCKET_RELAY_TOKEN) and send it as 'Authorization: Bearer ...'.",
            file=stderr,
            flush=True,
        )
    for warning in warnings:
        print(warning, file=stderr, flush=True)
    workers = max(1, workers)
    try:
        sockets = listen_each(host, port, workers)
    except OSError as exc:
        print(f"bucket-logging relay: cannot listen on {host}:{port}: {exc}", file=stderr)
        return 1
    sock = sockets[0]
    bound_host, bound_port = sock.getsockname()[:2]
    rules = (browser or BrowserRules()).bound_to(host)
    where = f"[{bound_host}]" if ":" in bound_host else bound_host
    banner = (
        f"bucket-logging relay on http://{where}:{bound_port} "
        f"({'bearer token required' if token else 'no token'}"
        f"{f', {workers} workers' if workers > 1 else ''}); SIGTERM drains"
    )
    if workers == 1:
        return _serve(
            front_end, sock, token=token, limits=limits, banner=banner, name="",
            unready_after=unready_after, drain_delay=drain_delay, metrics=metrics,
            browser=rules,
        )  # fmt: skip
    made = metrics and not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    # before a worker imports prometheus_client
    directory = _metrics.multiprocess_dir() if metrics else None
    try:
        return _supervise(
            front_end, sockets, token=token, limits=limits, banner=banner, workers=workers,
            unready_after=unready_after, drain_delay=drain_delay, metrics=metrics,
            browser=rules,
        )  # fmt: skip
    finally:
        _metrics.remove_dir(directory, made)


def _serve(
    front_end: FrontEndFactory,
    sock: socket.socket,
    *,
    token: str | None,
    limits: Limits,
    banner: str | None,
    name: str,
    unready_after: float = 60.0,
    drain_delay: float = 0.0,
    metrics: bool = True,
    browser: BrowserRules,
) -> int:
    """Serve ``sock`` in this process until SIGTERM/SIGINT; the exit status."""
    stderr = sys.stderr
    front = front_end()
    if front is None:
        sock.close()
        return 2
    sender = cast(RelaySender, front.sender)
    app = RelayApp(front, sender, token=token, limits=limits, log=stderr)
    app.ops.probes.failing_for = unready_after
    if not metrics:
        app.ops.metrics.disable()
    app.browser = browser
    server = uvicorn_server(app)
    server.drain_delay = drain_delay
    real = sender.real
    dropped0 = real.stats.dropped_total if isinstance(real, BulkSender) else 0
    if banner is not None:
        print(banner, file=stderr, flush=True)
    server.should_exit = _stop_early
    server.run([sock])
    app.say(f"relay{name}: stopping (draining)")
    app.close()
    front.flush(0.0)
    if isinstance(real, BulkSender):
        real.close()  # delivers within the sender's deadline, or spools
        dropped = real.stats.dropped_total - dropped0
    else:
        dropped = 0
    answered = ", ".join(f"{n} x {status}" for status, n in sorted(app.counts.items()))
    retried = app.retries.retried
    print(
        f"relay{name} stopped: {answered or 'no requests'}; {dropped} item(s) lost; "
        f"{retried} retried body(ies) answered 200, not tracked again",
        file=stderr,
    )
    return 1 if dropped else 0


def _stop_before_serving(signum: int, frame: Any) -> None:
    global _stop_early
    _stop_early = True


def _supervise(
    front_end: FrontEndFactory,
    sockets: list[socket.socket],
    *,
    token: str | None,
    limits: Limits,
    banner: str,
    workers: int,
    unready_after: float = 60.0,
    drain_delay: float = 0.0,
    metrics: bool = True,
    browser: BrowserRules,
) -> int:
    """Fork ``workers`` processes, each serving its own socket of ``sockets`` (or all the
    one); pass SIGTERM/SIGINT on; their status."""
    children: list[int] = []
    stopping = False

    def forward(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    sys.stderr.flush()
    for index in range(workers):
        pid = os.fork()
        if pid == 0:  # a worker: its own front end and sender, threads started here
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent passes Ctrl-C on
            signal.signal(signal.SIGTERM, _stop_before_serving)
            status = 1
            own = sockets[index % len(sockets)]
            for other in sockets:
                if other is not own:
                    other.close()
            try:
                status = _serve(
                    front_end,
                    own,
                    token=token,
                    limits=limits,
                    banner=None,
                    name=f" worker {index + 1}",
                    unready_after=unready_after,
                    drain_delay=drain_delay,
                    metrics=metrics,
                    browser=browser,
                )
            finally:
                sys.stderr.flush()
                os._exit(status)
        children.append(pid)
    for sock in sockets:
        sock.close()
    print(banner, file=sys.stderr, flush=True)
    status = 0
    waiting = set(children)
    while waiting:
        try:
            pid, code = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        except InterruptedError:  # pragma: no cover - PEP 475 retries
            continue
        if pid in waiting:
            waiting.discard(pid)
            _metrics.mark_dead(pid)  # its live gauges leave the sums
            exit_code = os.waitstatus_to_exitcode(code)
            if exit_code != 0:
                status = 1
            if not stopping:  # a worker ended on its own: stop the others too
                forward(signal.SIGTERM, None)
    print(f"relay stopped: {workers} workers, exit status {status}", file=sys.stderr, flush=True)
    return status
