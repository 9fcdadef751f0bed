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
  anyway, when ``--max-concurrent`` requests are already being served, and while the
  relay is stopping: the pipeline keeps the batch in its own buffer and retries;
* **400** for a body that is not JSON, **401** without the right token, **405** for
  other methods (``GET`` answers ``/health`` only), **411** without a
  ``Content-Length``, **413** for a body over ``--max-body`` bytes as sent or over
  ``--max-decoded`` bytes once decompressed (a body up to four times ``--max-body``
  is read and discarded first, so that the client sees the answer rather than a
  reset), **415** for an encoding other than gzip.

Where items go (key, URL, spool) comes only from the relay's own options and
environment, never from a request. Besides the optional spool the relay keeps no
state, so several can run behind a load balancer.

Bounds (why the stdlib ``ThreadingHTTPServer`` is enough here): a thread per
connection, at most ``--max-connections`` of them (more are answered 503 and closed
at once); at most ``--max-concurrent`` requests read and tracked at a time; every
connection must finish its request (headers and body) within ``--request-timeout``
seconds of its start, or of its previous answer, else a reaper thread shuts it down
(slow and stalled clients, idle keep-alive connections); a body is read only when its
``Content-Length`` is within the limit, and gzip is decompressed as a stream that
stops at the decoded limit (a gzip bomb costs at most that much memory). Memory is
thus bounded by about ``max_concurrent * (max_body + 3 * max_decoded)``.

``SIGTERM`` (or ``SIGINT``) drains: the listening socket is closed, idle connections
are closed, requests in progress are answered, then the sender delivers what it
holds within its ``shutdown_timeout`` (or leaves it in the spool) before the relay
exits.
"""

from __future__ import annotations

import contextlib
import hmac
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final, TextIO, cast

import orjson

from .._frontends.jsonlines import JsonLines
from .._runtime import shutdown as _shutdown
from .._runtime.diagnostics import is_loopback, register_secret
from .bodies import Refused, gunzip, parse_body

__all__ = ["Limits", "Relay", "RelaySender", "is_loopback"]

_SUCCESS_HEADERS: Final = {"Content-Type": "application/json"}

#: A body over the limit but within this many times it is read and discarded before
#: the 413 (a client still sending would otherwise see a reset, not the answer).
_DRAIN_FACTOR: Final = 4

#: The deadline of a connection whose request is being tracked or answered.
_HELD: Final = float("inf")


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
        request_timeout: float = 30.0,
        retry_after: int = 5,
    ) -> None:
        self.max_body = max_body
        self.max_decoded = max_decoded
        self.max_concurrent = max_concurrent
        self.max_connections = max_connections
        self.max_pending = max_pending
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


class _Server(ThreadingHTTPServer):
    """The stdlib threading server with the relay's bounds."""

    daemon_threads = False  # server_close() joins the request threads: SIGTERM drains
    block_on_close = True
    request_queue_size = 128

    def __init__(self, relay: Relay, address: tuple[str, int]) -> None:
        self.relay = relay
        self.stopping = threading.Event()
        self.conn_lock = threading.Lock()
        self.deadlines: dict[socket.socket, float] = {}
        self.requests = threading.BoundedSemaphore(relay.limits.max_concurrent)
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # no reverse DNS look-up of our own address (HTTPServer.server_bind does one)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(self.server_address)
        self.server_address = self.socket.getsockname()[:2]
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.conn_lock:
            full = len(self.deadlines) >= self.relay.limits.max_connections
            if not full:
                self.deadlines[request] = time.monotonic() + self.relay.limits.request_timeout
        if full or self.stopping.is_set():
            self.relay.count(503)
            with contextlib.suppress(OSError):
                request.settimeout(1.0)
                request.sendall(_plain(503, "too many connections", self.relay.retry_headers))
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.conn_lock:
            self.deadlines.pop(request, None)
        super().shutdown_request(request)

    def hold(self, conn: socket.socket, held: bool) -> None:
        """While held (tracking, answering) the reaper leaves the connection alone."""
        with self.conn_lock:
            if conn in self.deadlines:
                self.deadlines[conn] = (
                    _HELD if held else time.monotonic() + self.relay.limits.request_timeout
                )

    def reap(self) -> None:
        """Shut down the connections past their deadline (all idle ones when stopping)."""
        now = time.monotonic()
        stopping = self.stopping.is_set()
        with self.conn_lock:
            late = [c for c, d in self.deadlines.items() if d < now or (stopping and d != _HELD)]
        for conn in late:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away: nothing to say (and never its headers)


def _plain(status: int, message: str, headers: dict[str, str] | None = None) -> bytes:
    body = orjson.dumps({"success": status == 200, "message": message})
    lines = [f"HTTP/1.1 {status} {_PHRASES.get(status, '')}", "Content-Type: application/json"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    lines += [f"Content-Length: {len(body)}", "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


_PHRASES: Final = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    503: "Service Unavailable",
}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "bucket-logging-relay"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self._srv().relay.limits.request_timeout)  # each recv

    def _srv(self) -> _Server:
        return cast(_Server, self.server)

    def log_message(self, format: str, *args: Any) -> None:
        """Nothing: the relay reports refusals itself, never a request's headers."""

    def do_GET(self) -> None:
        """``/health`` for load balancers; nothing else."""
        if self.path.split("?", 1)[0] == "/health":
            stopping = self._srv().stopping.is_set()
            self._answer(503 if stopping else 200, "stopping" if stopping else "ok")
        else:
            self._answer(405, "only POST", {"Allow": "POST"})

    def do_PUT(self) -> None:
        """Not supported: 405."""
        self._answer(405, "only POST", {"Allow": "POST"})

    def do_POST(self) -> None:
        """Take one batch of log events."""
        srv = self._srv()
        relay = srv.relay
        slot = False
        try:
            relay.check_token(self.headers.get("Authorization"))
            if srv.stopping.is_set():
                raise Refused(503, "the relay is stopping", relay.retry_headers)
            slot = srv.requests.acquire(blocking=False)
            if not slot:
                raise Refused(503, "too many requests at once", relay.retry_headers)
            body = self._read_body(relay.limits)
            srv.hold(self.connection, True)
            status, message = relay.take(body, self.headers.get("Content-Encoding"))
        except Refused as refused:
            self._answer(refused.status, refused.message, refused.headers)
            return
        finally:
            if slot:
                srv.requests.release()
        self._answer(status, message)
        srv.hold(self.connection, False)

    def _read_body(self, limits: Limits) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            raise Refused(411, "send a Content-Length (chunked bodies are not taken)")
        raw = self.headers.get("Content-Length")
        if raw is None:
            raise Refused(411, "send a Content-Length")
        try:
            length = int(raw)
        except ValueError:
            raise Refused(400, "invalid Content-Length") from None
        if length < 0:
            raise Refused(400, "invalid Content-Length")
        if length > limits.max_body:
            if length <= _DRAIN_FACTOR * limits.max_body:
                self._discard(length)  # so that the client reads the 413, not a reset
            raise Refused(413, f"the body is over {limits.max_body:,} bytes")
        body = self.rfile.read(length)
        if len(body) < length:
            raise Refused(400, "the body ended early")
        return body

    def _discard(self, length: int) -> None:
        """Read and forget ``length`` bytes (the request's deadline still applies)."""
        while length > 0:
            chunk = self.rfile.read(min(length, 65536))
            if not chunk:
                return
            length -= len(chunk)

    def _answer(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        relay = self._srv().relay
        relay.count(status)
        if status != 200:
            relay.say(f"relay: {status} {message}")
            self.close_connection = True  # the body may be unread: do not reuse
        if self._srv().stopping.is_set():
            self.close_connection = True
        body = orjson.dumps({"success": status == 200, "message": message})
        with contextlib.suppress(OSError):
            self.send_response_only(status, _PHRASES.get(status))
            for name, value in {**_SUCCESS_HEADERS, **(headers or {})}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)


class Relay:
    """The relay: a bounded HTTP server feeding a :class:`JsonLines` front end.

    Args:
        front: the front end (its sender should be a :class:`RelaySender`).
        sender: that RelaySender.
        host: the interface to listen on.
        port: the port (0 picks a free one).
        token: the shared secret of ``Authorization: Bearer``; None for none.
        limits: the bounds.
        log: where refusals and the banner are written (never a token or key).
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
        self.limits = limits or Limits()
        self._token = token.encode() if token else None
        if token:
            register_secret(token)
        self._log = log
        self._log_lock = threading.Lock()
        self.counts: Counter[int] = Counter()
        self.retry_headers = {"Retry-After": str(self.limits.retry_after)}
        self._server = _Server(self, (host, port))
        self._thread: threading.Thread | None = None
        self._reaper: threading.Thread | None = None
        self._stopped = threading.Event()

    @property
    def address(self) -> tuple[str, int]:
        """The host and port it listens on."""
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def say(self, line: str) -> None:
        """Write one line to the log stream."""
        if self._log is None:
            return
        with self._log_lock, contextlib.suppress(OSError, ValueError):
            self._log.write(line + "\n")
            self._log.flush()

    def count(self, status: int) -> None:
        """Count an answer."""
        with self._log_lock:
            self.counts[status] += 1

    def check_token(self, header: str | None) -> None:
        """Raise 401 unless ``header`` is ``Bearer <token>`` (compared in constant time)."""
        if self._token is None:
            return
        scheme, _, credentials = (header or "").partition(" ")
        given = credentials.strip().encode("utf-8", "replace")
        if not (scheme.lower() == "bearer" and hmac.compare_digest(given, self._token)):
            raise Refused(401, "a valid bearer token is required", {"WWW-Authenticate": "Bearer"})

    def take(self, body: bytes, encoding: str | None) -> tuple[int, str]:
        """Track one batch; (status, message)."""
        encoding = (encoding or "").strip().lower()
        if encoding in ("gzip", "x-gzip"):
            body = gunzip(body, self.limits.max_decoded)
        elif encoding not in ("", "identity"):
            raise Refused(415, "only gzip (or no) Content-Encoding is taken")
        elif len(body) > self.limits.max_decoded:
            raise Refused(413, f"the body is over {self.limits.max_decoded:,} bytes")
        objects, bad = parse_body(body)
        if self.sender.pending() + len(objects) > self.limits.max_pending:
            raise Refused(503, "the sender's queue is full", self.retry_headers)
        track = self.front.track
        self.sender.take_refused()
        tracked = sum(1 for obj in objects if track(obj))
        refused = self.sender.take_refused()
        if refused:
            raise Refused(
                503, f"the sender refused {refused} item(s): queue full", self.retry_headers
            )
        return 200, f"{len(objects)} event(s), {tracked} tracked, {bad} not objects"

    # -- life cycle ------------------------------------------------------------------

    def start(self) -> Relay:
        """Serve on background threads."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.2,), name="bucket-logging relay"
        )
        _shutdown.start_thread(self._thread)  # SIGTERM is the main thread's: it drains
        self._reaper = threading.Thread(
            target=self._reap, name="bucket-logging relay reaper", daemon=True
        )
        _shutdown.start_thread(self._reaper)
        return self

    def _reap(self) -> None:
        while not self._stopped.wait(0.25):
            self._server.reap()

    def stop(self, timeout: float | None = None) -> bool:
        """Drain: stop accepting, answer what is in progress, then wait up to ``timeout``
        (default: the sender's ``shutdown_timeout``; 0: not at all) for the sender to
        deliver what was accepted. True when it did."""
        server = self._server
        server.stopping.set()
        server.shutdown()  # the accept loop ends
        server.reap()  # idle connections go; requests in progress are answered
        server.server_close()  # joins the request threads
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()
        return self.front.flush(timeout)
