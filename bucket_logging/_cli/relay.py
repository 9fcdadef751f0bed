"""``bucket-logging relay``: an HTTP intake for log pipelines (Vector, Fluent Bit, Logstash).

    $ BUCKET_RELAY_TOKEN=s3cret bucket-logging relay --port 8788

A pipeline's HTTP output posts batches of log events; each event is a JSON object
read by :class:`~bucket_logging._frontends.jsonlines.JsonLines` (the same tags, ids, rules and
timestamps as ``bucket-logging ship``). Bodies may be a JSON array, newline-delimited
JSON or one JSON object, optionally ``Content-Encoding: gzip``.

Answers:

* **200** once every item of the batch was accepted by the sender (queued; with a
  spool the sender writes it to disk within a flush interval);
* **503** with ``Retry-After`` when the sender holds more than ``--max-pending`` items
  (checked before anything of the batch is queued), when the sender refused an item
  anyway, when ``--max-concurrent`` requests are already being served, when the
  requests in progress hold ``--max-objects`` JSON values, and while the relay is
  stopping: the pipeline keeps the batch in its own buffer and retries;
* **400** for a body that is not JSON (or a malformed request: h11 refuses a bad or
  conflicting ``Content-Length``), **401** without the right token, **405** for
  other methods (``GET`` answers ``/health`` only), **411** without a
  ``Content-Length`` or a chunked body, **413** for a body over ``--max-body`` bytes
  as sent or over ``--max-decoded`` bytes once decompressed, or a batch that can
  never fit (more values than ``--max-objects``, more events than
  ``--max-pending``), **415** for an encoding other than gzip.

``POST /v1/logs`` takes OTLP/HTTP logs exports (see :mod:`bucket_logging._cli.relay_app`).

Where items go (key, URL, spool) comes only from the relay's own options and
environment, never from a request. Besides the optional spool the relay keeps no
state, so several can run behind a load balancer (or ``--workers N`` processes share
one port, each with its own sender).

The server is uvicorn (the ``relay`` extra: ``pip install 'bucket-logging[relay]'``)
with the relay's ASGI app and bounds (:mod:`bucket_logging._cli.relay_app`); this module
holds what the CLI needs without uvicorn (the limits, the sender wrapper) and
:class:`Relay`, the relay served in process on a thread.

``SIGTERM`` (or ``SIGINT``) drains: the listening socket is closed, idle connections
are closed, requests in progress are answered, then the sender delivers what it
holds within its ``shutdown_timeout`` (or leaves it in the spool) before the relay
exits.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import TYPE_CHECKING, Any, TextIO

from .._frontends.jsonlines import JsonLines
from .._runtime import shutdown as _shutdown
from .._runtime.diagnostics import is_loopback

if TYPE_CHECKING:
    from .relay_app import RelayApp
    from .relay_server import RelayServer

__all__ = ["Limits", "Relay", "RelaySender", "is_loopback"]


class Limits:
    """The relay's bounds (see the module documentation)."""

    def __init__(
        self,
        *,
        max_body: int = 10 * 1024 * 1024,
        max_decoded: int = 32 * 1024 * 1024,
        max_concurrent: int = 8,
        max_connections: int = 64,
        max_pending: int = 100_000,
        max_objects: int = 2_000_000,
        request_timeout: float = 30.0,
        retry_after: int = 5,
    ) -> None:
        self.max_body = max_body
        self.max_decoded = max_decoded
        self.max_concurrent = max_concurrent
        self.max_connections = max_connections
        self.max_pending = max_pending
        self.max_objects = max_objects
        self.request_timeout = request_timeout
        self.retry_after = retry_after


class RelaySender:
    """The relay's sender: a BulkSender whose refusals are counted per request thread.

    The Tracker hands it each item (``enqueue``); the request that tracked the item
    learns whether the sender accepted all of them.
    """

    def __init__(self, sender: Any) -> None:
        self._sender = sender
        self.real = sender
        self._local = threading.local()
        self.shutdown_timeout = getattr(sender, "shutdown_timeout", 5.0)

    def enqueue(self, item: Any) -> bool:
        """Queue ``item`` on the real sender; a refusal is noted for this thread."""
        ok = bool(self._sender.enqueue(item))
        if not ok:
            self._local.refused = getattr(self._local, "refused", 0) + 1
        return ok

    def flush(self, timeout: float | None = None) -> bool:
        """The real sender's flush."""
        return bool(self._sender.flush(timeout))

    def take_refused(self) -> int:
        """How many items this thread had refused since the last call."""
        refused = getattr(self._local, "refused", 0)
        self._local.refused = 0
        return refused

    def pending(self) -> int:
        """Items the real sender holds, not yet delivered or dropped."""
        pending = getattr(self._sender, "pending", 0)  # a property of BulkSender
        return int(pending() if callable(pending) else pending)


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
        from .relay_app import RelayApp  # noqa: PLC0415 - the extra
        from .relay_server import listen, uvicorn_server  # noqa: PLC0415

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
