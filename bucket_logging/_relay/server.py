"""The relay on uvicorn: its h11 protocol, its server and its listening socket.

:func:`uvicorn_server` serves a :class:`~bucket_logging._relay.app.RelayApp` with
the relay's bounds: uvicorn's h11 protocol with a connection cap (the excess answered
503 before anything is read) and a request deadline (:func:`protocol_class`), heads of
at most :data:`~bucket_logging._relay.app.MAX_HEAD` bytes, and a server whose
SIGTERM and SIGINT drain it without being raised again (:class:`RelayServer`).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import threading
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from .app import MAX_HEAD, RelayApp, plain_answer

__all__ = ["RelayServer", "listen", "protocol_class", "uvicorn_server"]


def protocol_class(app: RelayApp) -> type[H11Protocol]:
    """uvicorn's h11 protocol with the relay's connection cap and request deadline."""
    limits = app.limits
    refusal = plain_answer(503, "too many connections", app.retry_headers)

    class RelayProtocol(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None
        _refused = False

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            if len(self.server_state.connections) >= limits.max_connections:
                self._refused = True
                app.count(503)
                assert isinstance(transport, asyncio.Transport)
                transport.write(refusal)
                transport.close()
                return
            super().connection_made(transport)  # type: ignore[arg-type]
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._refused:
                return
            if self._deadline is not None:
                self._deadline.cancel()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if not self._refused:
                super().data_received(data)

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
            self._arm()

        def send_400_response(self, msg: str) -> None:
            app.count(400)
            app.say("relay: 400 invalid HTTP request (head, Content-Length or framing)")
            super().send_400_response(msg)

    return RelayProtocol


class RelayServer(uvicorn.Server):
    """uvicorn's server; SIGTERM and SIGINT drain it and are not raised again after,
    so that the relay delivers what it holds and exits with its own status."""

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


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (IPv6 when the host has a colon)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


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
    app.stopping = lambda: server.should_exit
    return server
