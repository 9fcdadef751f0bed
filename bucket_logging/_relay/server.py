"""The relay on uvicorn: its h11 protocol, its server and its listening socket.

:func:`uvicorn_server` serves a :class:`~bucket_logging._relay.app.RelayApp` with
the relay's bounds: uvicorn's h11 protocol with a connection cap and a request
deadline (:func:`protocol_class`), heads of at most
:data:`~bucket_logging._relay.app.MAX_HEAD` bytes, and a server whose SIGTERM and
SIGINT drain it without being raised again (:class:`RelayServer`).

Slow clients cannot hold the cap: a request head must be whole within
``head_timeout`` seconds (of the connection, or of its first byte on a keep-alive
connection), apart from the request's own deadline; and a connection over the cap
closes the one that has waited longest for a head (idle or half-open:
:func:`make_room`) rather than being refused; only when every connection is busy with
a request is it answered 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import threading
import time
from collections.abc import Iterable
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from .app import MAX_HEAD, RelayApp, plain_answer

__all__ = [
    "RelayServer",
    "listen",
    "listen_each",
    "make_room",
    "protocol_class",
    "uvicorn_server",
]


def protocol_class(app: RelayApp) -> type[H11Protocol]:
    """uvicorn's h11 protocol with the relay's connection cap and request deadline."""
    limits = app.limits
    refusal = plain_answer(503, "too many connections", app.retry_headers)

    class RelayProtocol(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None
        _head: asyncio.TimerHandle | None = None
        _refused = False
        #: since when it waits for a request head (idle, or a head still coming)
        waiting_since = 0.0

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            if len(self.server_state.connections) >= limits.max_connections and not (
                make_room(self.server_state.connections)
            ):
                self._refused = True
                app.count(503)
                app.ops.refused_early(503)
                assert isinstance(transport, asyncio.Transport)
                transport.write(refusal)
                transport.close()
                return
            super().connection_made(transport)  # type: ignore[arg-type]
            self.waiting_since = time.monotonic()
            self._arm()
            self._arm_head()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._refused:
                return
            for timer in (self._deadline, self._head):
                if timer is not None:
                    timer.cancel()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return
            if self._head is None and self.waiting():
                self._arm_head()  # the first bytes of a keep-alive connection's next head
            super().data_received(data)
            if self._head is not None and not self.waiting():
                self._head.cancel()  # the head is in: the request's deadline goes on
                self._head = None

        def waiting(self) -> bool:
            """Whether it waits for a request head: idle, or a head still coming."""
            conn = getattr(self, "conn", None)
            return (
                conn is not None
                and conn.their_state is h11.IDLE
                and not (self.cycle is not None and not self.cycle.response_complete)
            )

        def _arm_head(self) -> None:
            if self._head is not None:
                self._head.cancel()
            self._head = self.loop.call_later(limits.head_timeout, self._expire_head)

        def _expire_head(self) -> None:
            self._head = None
            if self.waiting():
                self.transport.close()  # no whole head within head_timeout

        def _arm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            self._deadline = self.loop.call_later(limits.request_timeout, self._expire)

        def _expire(self) -> None:
            cycle = self.cycle
            if cycle is not None and not cycle.response_complete and not cycle.more_body:
                return  # the body is in: tracking and answering are not cut off
            self.transport.close()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self.waiting_since = time.monotonic()
            self._arm()

        def send_400_response(self, msg: str) -> None:
            app.count(400)
            app.ops.refused_early(400)
            app.say("relay: 400 invalid HTTP request (head, Content-Length or framing)")
            super().send_400_response(msg)

    return RelayProtocol


def make_room(connections: Iterable[object]) -> bool:
    """Close the connection that has waited longest for a request head (idle, or a head
    still coming: a slow or half-open client), to make room for a new one; False when
    every connection is busy with a request."""
    waiting = [
        c
        for c in connections
        if callable(getattr(c, "waiting", None)) and c.waiting()  # type: ignore[attr-defined]
    ]
    if not waiting:
        return False
    oldest: Any = min(waiting, key=lambda c: c.waiting_since)  # type: ignore[attr-defined]
    oldest.transport.close()
    return True


class RelayServer(uvicorn.Server):
    """uvicorn's server; SIGTERM and SIGINT drain it and are not raised again after,
    so that the relay delivers what it holds and exits with its own status.

    With a ``drain_delay`` the first signal only marks it draining (``/readyz`` and
    ``POST`` answer 503) for that many seconds while it still serves, so that load
    balancers stop sending first; then it drains. A second signal drains at once.
    """

    drain_delay = 0.0
    draining = False

    def handle_exit(self, sig: int, frame: Any) -> None:
        """Drain (after ``drain_delay`` seconds of answering 503 to new work)."""
        if self.drain_delay > 0 and not self.draining and not self.should_exit:
            self.draining = True
            timer = threading.Timer(self.drain_delay, super().handle_exit, (sig, frame))
            timer.daemon = True
            timer.start()
            return
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        """Drain on SIGTERM/SIGINT while serving (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {
            sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def listen(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A listening TCP socket on ``host:port`` (IPv6 when the host has a colon);
    ``reuse_port``: one of several on the port (``SO_REUSEPORT``: the kernel spreads
    the connections among them)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def listen_each(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` listening sockets on one port, one per worker, where the platform has
    ``SO_REUSEPORT`` (each worker accepts from its own queue: the kernel spreads the
    connections evenly, and a worker busy or full does not take another's); else one
    socket that every worker shares."""
    if count == 1 or not hasattr(socket, "SO_REUSEPORT"):
        return [listen(host, port)]
    sockets = [listen(host, port, reuse_port=True)]
    try:
        port = int(sockets[0].getsockname()[1])
        sockets += [listen(host, port, reuse_port=True) for _ in range(count - 1)]
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def uvicorn_server(app: RelayApp) -> RelayServer:
    """The uvicorn server of ``app``, with the relay's bounds."""
    limits = app.limits
    config = uvicorn.Config(
        app,
        http=protocol_class(app),
        lifespan="off",
        log_config=None,
        access_log=False,
        server_header=False,
        h11_max_incomplete_event_size=MAX_HEAD,
        timeout_keep_alive=max(1, int(limits.request_timeout)),
        timeout_graceful_shutdown=None,
    )
    server = RelayServer(config)
    app.stopping = lambda: server.should_exit or server.draining
    return server
