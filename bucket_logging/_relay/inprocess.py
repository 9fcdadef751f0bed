"""The relay served in process, on a thread: :class:`Relay` (tests, embedding).

May import: the relay's app and server (so the ``relay`` extra), the front ends, the
process layer.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import TextIO

from .._frontends.jsonlines import JsonLines
from .._runtime import shutdown as _shutdown
from .app import RelayApp
from .limits import Limits
from .sender import RelaySender
from .server import RelayServer, listen, uvicorn_server

__all__ = ["Relay"]


class Relay:
    """The relay served in process: uvicorn with the relay's app on a thread.

    Args:
        front: the front end (its sender should be a :class:`RelaySender`).
        sender: that RelaySender.
        host: the interface to listen on.
        port: the port (0 picks a free one).
        token: the shared secret of ``Authorization: Bearer``; None for none.
        limits: the bounds.
        log: where refusals are written (never a token or key).

    Needs the ``relay`` extra (uvicorn).
    """

    def __init__(
        self,
        front: JsonLines,
        sender: RelaySender,
        *,
        host: str = "127.0.0.1",
        port: int = 8788,
        token: str | None = None,
        limits: Limits | None = None,
        log: TextIO | None = None,
    ) -> None:
        self.front = front
        self.sender = sender
        self.app: RelayApp = RelayApp(front, sender, token=token, limits=limits, log=log)
        self.limits = self.app.limits
        self._socket = listen(host, port)
        self._server: RelayServer = uvicorn_server(self.app)
        self._thread: threading.Thread | None = None

    @property
    def counts(self) -> Counter[int]:
        """The answers given, by status."""
        return self.app.counts

    @property
    def address(self) -> tuple[str, int]:
        """The host and port it listens on."""
        host, port = self._socket.getsockname()[:2]
        return str(host), int(port)

    def start(self) -> Relay:
        """Serve on a background thread."""
        self._thread = threading.Thread(
            target=self._server.run, args=([self._socket],), name="bucket-logging relay"
        )
        _shutdown.start_thread(self._thread)  # SIGTERM is the main thread's: it drains
        return self

    def stop(self, timeout: float | None = None) -> bool:
        """Drain: stop accepting, answer what is in progress, then wait up to ``timeout``
        (default: the sender's ``shutdown_timeout``; 0: not at all) for the sender to
        deliver what was accepted. True when it did."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join()
        else:
            self._socket.close()
        self.app.close()
        return self.front.flush(timeout)
