"""A local Bucket tracking server: the API on 127.0.0.1, for tests, demos and development.

:class:`TrackingServer` speaks the Bucket Tracking HTTP API
(``POST /{tracking_key}/{user|company|event|feedback|bulk}``), validates every body
with :func:`bucket_logging._items.validate_wire` (the very rules the client applies),
records the accepted calls and can be told to misbehave: fail, throttle, reset
connections, hang, or reject chosen items.

    with TrackingServer() as srv:
        client.post(f"{srv.url}/any-key/bulk", json=[...])
        srv.wait_for(1, timeout=5)
        srv.calls  # [{"type": "event", ...}]

It is a stdlib ``ThreadingHTTPServer`` speaking HTTP/1.1 with keep-alive, served from
a daemon thread (or the calling thread, see :meth:`TrackingServer.serve_forever`).
The tracking key is never printed or recorded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import selectors
import signal
import socket
import socketserver
import struct
import sys
import threading
from collections.abc import Callable, Collection
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final, cast

import orjson

from ._diagnostics import report
from ._items import KINDS, MAX_BODY_BYTES, validate_wire

__all__ = ["RequestRecord", "TrackingServer"]

#: The methods of the API: the four kinds and ``bulk``.
METHODS: Final = frozenset((*KINDS, "bulk"))

#: Bodies up to this size are read (and discarded) before answering 413, so that the
#: connection stays usable; larger ones are answered at once and the connection closed.
_DRAIN_LIMIT: Final = 64 * 1024 * 1024

#: At most this many validation errors are listed in a 400 response.
_MAX_VALIDATION_ERRORS: Final = 100

_CHUNK: Final = 256 * 1024

_SUCCESS_BODY: Final = b'{"success":true}'


@dataclasses.dataclass(frozen=True)
class RequestRecord:
    """One request the server answered (or dropped), as :attr:`TrackingServer.requests`.

    Attributes:
        http_method: ``"POST"``, ``"GET"``, ...
        kind: the API method of the path (``"bulk"``, ``"event"``, ...), or None when
            the path is not one of the API's.
        status: the HTTP status answered; ``0`` when the connection was reset or
            dropped without a response.
        items: how many items the body held (0 when it could not be parsed).
        body_bytes: the size of the body.
        code: the error code of a failed request (``"BODY_VALIDATION_FAILED"``, ...).
        message: the error message of a failed request.
        errors: the validation error messages of a 400 response.
    """

    http_method: str
    kind: str | None
    status: int
    items: int = 0
    body_bytes: int = 0
    code: str | None = None
    message: str = ""
    errors: tuple[str, ...] = ()

    @property
    def accepted(self) -> bool:
        """Whether the request was answered with 200 and its items recorded."""
        return self.status == 200


class _Reject(Exception):
    """Internal: answer the request with an error response."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        errors: list[str] | None = None,
        items: int = 0,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors or []
        self.items = items
        self.headers = headers or {}


class _Drop(Exception):
    """Internal: close the connection without answering."""


class _HTTPServer(ThreadingHTTPServer):
    """The stdlib server, bound without reverse DNS, tracking its open connections."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, owner: TrackingServer, address: tuple[str, int]) -> None:
        self.owner = owner
        self.stopping = threading.Event()
        self.conn_lock = threading.Lock()
        self.connections: dict[socket.socket, threading.Thread] = {}
        self._wake_r, self._wake_w = socket.socketpair()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        try:
            super().__init__(address, _Handler)
        except BaseException:
            self._wake_r.close()
            self._wake_w.close()
            raise

    def run(self, poll: float | None) -> None:
        """Accept connections until :meth:`wake` is called after ``stopping`` was set.

        Unlike ``serve_forever`` this does not poll: :meth:`wake` interrupts the wait
        at once. ``poll`` bounds each wait (only needed for Ctrl-C on Windows).
        """
        # On the main thread, a signal (Ctrl-C, SIGTERM) also writes to the wake-up
        # socket: one landing just before the wait began would otherwise be noticed
        # only at the next connection.
        previous = None
        if threading.current_thread() is threading.main_thread():
            self._wake_w.setblocking(False)
            with contextlib.suppress(ValueError, OSError):
                previous = signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(self.socket, selectors.EVENT_READ)
                selector.register(self._wake_r, selectors.EVENT_READ)
                while not self.stopping.is_set():
                    ready = selector.select(poll)
                    if self.stopping.is_set():
                        break
                    for key, _ in ready:
                        if key.fileobj is self._wake_r:
                            with contextlib.suppress(OSError):
                                self._wake_r.recv(4096)  # a signal's byte: drain it
                        else:
                            self._accept_one()
        finally:
            if previous is not None:
                with contextlib.suppress(ValueError, OSError):
                    signal.set_wakeup_fd(previous)

    def _accept_one(self) -> None:
        try:
            request, client_address = self.get_request()
        except OSError:
            return
        try:
            self.process_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
            self.shutdown_request(request)

    def wake(self) -> None:
        """Interrupt :meth:`run`'s wait."""
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def server_close(self) -> None:
        super().server_close()
        self._wake_r.close()
        self._wake_w.close()

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS look-up that can
        # take seconds on a machine without DNS: bind like a plain TCP server instead.
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def register(self, conn: socket.socket) -> bool:
        """Remember an open connection; False when the server is already stopping."""
        with self.conn_lock:
            if self.stopping.is_set():
                return False
            self.connections[conn] = threading.current_thread()
            return True

    def unregister(self, conn: socket.socket) -> None:
        """Forget a connection whose handler is done."""
        with self.conn_lock:
            self.connections.pop(conn, None)

    def close_connections(self) -> list[threading.Thread]:
        """Mark the server as stopping and shut every open connection down."""
        with self.conn_lock:
            self.stopping.set()
            conns = list(self.connections.items())
        for conn, _ in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        return [thread for _, thread in conns]

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError) or self.stopping.is_set():
            return  # the client went away, or we are stopping: nothing to say
        report("server.error", "tracking server: error while handling a request: %r", exc)


class _Handler(BaseHTTPRequestHandler):
    """Answers one connection's requests (keep-alive)."""

    protocol_version = "HTTP/1.1"
    server_version = "bucket-logging-tracking-server"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = 300  # seconds an idle keep-alive connection is kept open

    def _srv(self) -> _HTTPServer:
        return cast(_HTTPServer, self.server)

    # -- connection life cycle ------------------------------------------------------

    def handle(self) -> None:
        srv = self._srv()
        if not srv.register(self.connection):
            return
        try:
            super().handle()
        finally:
            srv.unregister(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        """Print nothing: the request line holds the tracking key."""

    # -- methods --------------------------------------------------------------------

    def do_POST(self) -> None:
        """Handle an API call."""
        self._serve("POST")

    def do_GET(self) -> None:
        """The API has no GET: 404 or 405."""
        self._serve("GET")

    def do_PUT(self) -> None:
        """The API has no PUT: 404 or 405."""
        self._serve("PUT")

    def do_PATCH(self) -> None:
        """The API has no PATCH: 404 or 405."""
        self._serve("PATCH")

    def do_DELETE(self) -> None:
        """The API has no DELETE: 404 or 405."""
        self._serve("DELETE")

    # -- the work -------------------------------------------------------------------

    def _serve(self, http_method: str) -> None:
        srv = self._srv()
        owner = srv.owner
        kind, key = _route(self.path)
        body_bytes = 0
        try:
            body, body_bytes = self._read_body()
            owner._received_one()
            owner._before_answer(srv.stopping)
            if kind is None:
                raise _Reject(404, "NOT_FOUND", "no such API method")
            if http_method != "POST":
                raise _Reject(
                    405, "METHOD_NOT_ALLOWED", "only POST is allowed", headers={"Allow": "POST"}
                )
            owner._check_key(key)
            if body_bytes > MAX_BODY_BYTES:
                raise _Reject(
                    413,
                    "PAYLOAD_TOO_LARGE",
                    f"the body is {body_bytes:,} bytes, over the {MAX_BODY_BYTES:,}-byte limit",
                )
            accepted = owner._accept(kind, self.headers.get("Content-Type"), self._encoding(), body)
        except _Drop:
            # Recorded before the connection goes, so that a client that saw the
            # outcome also finds the record.
            owner._record(RequestRecord(http_method, kind, 0, body_bytes=body_bytes), None)
            self._drop()
            return
        except _Reject as rej:
            payload: dict[str, Any] = {"code": rej.code, "message": rej.message}
            if rej.errors:
                payload["validationErrors"] = [{"message": m} for m in rej.errors]
            record = RequestRecord(
                http_method,
                kind,
                rej.status,
                rej.items,
                body_bytes,
                rej.code,
                rej.message,
                tuple(rej.errors),
            )
            owner._record(record, None)
            self._respond(
                rej.status, orjson.dumps({"success": False, "error": payload}), rej.headers
            )
            return
        owner._record(RequestRecord(http_method, kind, 200, len(accepted), body_bytes), accepted)
        self._respond(200, _SUCCESS_BODY)

    def _encoding(self) -> str | None:
        value = self.headers.get("Content-Encoding")
        if value is None or value.strip().lower() in ("", "identity"):
            return None
        return value.strip()

    def _read_body(self) -> tuple[bytes, int]:
        """Read the whole body; past MAX_BODY_BYTES it is counted but not kept."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked()
        raw = self.headers.get("Content-Length")
        if raw is None:
            return b"", 0
        try:
            length = int(raw)
            if length < 0:
                raise ValueError(raw)
        except ValueError:
            self.close_connection = True
            raise _Reject(400, "BAD_REQUEST", "invalid Content-Length") from None
        if length <= MAX_BODY_BYTES:
            body = self.rfile.read(length)
            if len(body) < length:
                raise _Drop  # the client went away mid-body
            return body, length
        if length > _DRAIN_LIMIT:
            self.close_connection = True  # not worth reading: answer and hang up
            return b"", length
        self._discard(length)
        return b"", length

    def _discard(self, length: int) -> None:
        while length > 0:
            chunk = self.rfile.read(min(length, _CHUNK))
            if not chunk:
                raise _Drop
            length -= len(chunk)

    def _read_chunked(self) -> tuple[bytes, int]:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            if not line:
                raise _Drop
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self.close_connection = True
                raise _Reject(400, "BAD_REQUEST", "invalid chunked encoding") from None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                break
            total += size
            if total > _DRAIN_LIMIT:
                self.close_connection = True
                return b"", total
            if total <= MAX_BODY_BYTES:
                chunk = self.rfile.read(size)
                if len(chunk) < size:
                    raise _Drop
                parts.append(chunk)
            else:
                parts.clear()
                self._discard(size)
            self.rfile.readline(16)  # the CRLF after the chunk
        return (b"".join(parts) if total <= MAX_BODY_BYTES else b""), total

    def _respond(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        """Write the status line, headers and body in one send."""
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        lines = [
            f"HTTP/1.1 {status} {phrase}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
        ]
        if headers:
            lines.extend(f"{name}: {value}" for name, value in headers.items())
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head + body)

    def _drop(self) -> None:
        """Close the connection abruptly (RST), without a response."""
        self.close_connection = True
        conn = self.connection
        with contextlib.suppress(OSError):
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        try:
            self.rfile.close()  # the file holds a reference that would defer the close
            conn.close()
        except OSError:
            pass


def _route(path: str) -> tuple[str | None, str]:
    """Split ``/{key}/{method}`` into (method, key); method None when not an API path."""
    path = path.split("?", 1)[0].split("#", 1)[0]
    parts = path.split("/")
    if len(parts) == 4 and parts[3] == "":
        parts.pop()  # a trailing slash
    if len(parts) != 3 or parts[0] != "" or not parts[1] or parts[2] not in METHODS:
        return None, ""
    return parts[2], parts[1]


def _validation_failed(errors: list[str], items: int = 0) -> _Reject:
    shown = errors[:_MAX_VALIDATION_ERRORS]
    if len(errors) > len(shown):
        shown.append(f"... and {len(errors) - len(shown)} more problem(s)")
    first = errors[0] if errors else "invalid body"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return _Reject(
        400,
        "BODY_VALIDATION_FAILED",
        f"Invalid request body: {first}{more}",
        errors=shown,
        items=items,
    )


class TrackingServer:
    """A local HTTP server speaking the Bucket Tracking API, recording what it accepts.

    Args:
        host: the interface to listen on.
        port: the port; 0 picks a free one (see :attr:`port` once started).
        tracking_keys: when given, only these keys are accepted; others get 400
            ``INVALID_API_KEY``. By default any key is accepted.
        on_call: called with each accepted call (a dict, ``type`` included), on the
            server's thread, before it is recorded. Exceptions are reported and ignored.
        on_request: called with the :class:`RequestRecord` of every request answered.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`. A stopped
    server can be started again; it listens on the same port and keeps its records.

    Every request is recorded before it is answered: a client that got its response
    finds it in :attr:`calls` and :attr:`requests`. :meth:`wait_for` is for clients
    that send in the background.

    The fault switches act after the body is read, on every request (even ones that
    would be rejected), at most one a request, in this order: :meth:`delay`, then
    :meth:`reset_next`, :meth:`fail_next`, :meth:`throttle_next`; then validation
    and :meth:`reject_items`.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        tracking_keys: Collection[str] | None = None,
        on_call: Callable[[dict[str, Any]], None] | None = None,
        on_request: Callable[[RequestRecord], None] | None = None,
    ) -> None:
        self._host = host
        self._port = port
        self._keys = frozenset(tracking_keys) if tracking_keys is not None else None
        self._on_call = on_call
        self._on_request = on_request
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._calls: list[dict[str, Any]] = []
        self._requests: list[RequestRecord] = []
        self._received = 0
        # fault switches, guarded by _lock
        self._fail: tuple[int, int] = (0, 500)
        self._throttle: tuple[int, float] = (0, 1.0)
        self._reset = 0
        self._delay = 0.0
        self._reject: Callable[[dict[str, Any]], bool] | None = None
        # life cycle
        self._life = threading.Lock()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle -----------------------------------------------------------------

    def _bind(self) -> _HTTPServer:
        with self._life:
            if self._httpd is not None:
                raise RuntimeError("the tracking server is already running")
            httpd = _HTTPServer(self, (self._host, self._port))
            self._port = int(httpd.server_address[1])
            self._httpd = httpd
            return httpd

    def start(self) -> TrackingServer:
        """Bind and serve from a daemon thread; return self."""
        httpd = self._bind()
        thread = threading.Thread(
            target=httpd.run,
            args=(None,),
            name=f"bucket-tracking-server:{self._port}",
            daemon=True,
        )
        self._thread = thread
        thread.start()
        return self

    def serve_forever(self, on_ready: Callable[[TrackingServer], None] | None = None) -> None:
        """Bind and serve on the calling thread until :meth:`stop` or Ctrl-C.

        ``on_ready(self)`` is called once the server listens (its :attr:`url` is known).
        """
        httpd = self._bind()
        try:
            if on_ready is not None:
                on_ready(self)
            httpd.run(0.5 if sys.platform == "win32" else None)
        finally:
            self.stop()
            httpd.server_close()  # here, once the loop is out: stop() leaves it to us

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving: close every connection and interrupt delayed requests.

        Waits up to ``timeout`` seconds for the handler threads; idempotent.
        """
        with self._life:
            httpd, self._httpd = self._httpd, None
            thread, self._thread = self._thread, None
        if httpd is None:
            return
        handlers = httpd.close_connections()  # also sets httpd.stopping
        httpd.wake()
        if thread is not None:
            if thread is not threading.current_thread():
                thread.join(timeout)
            httpd.server_close()
        # else serve_forever() runs the loop: it closes the sockets once the loop is
        # out (closing them under a loop about to wait would leave it waiting forever)
        for handler in handlers:
            if handler is not threading.current_thread():
                handler.join(timeout)

    @property
    def running(self) -> bool:
        """Whether the server is listening."""
        return self._httpd is not None

    def __enter__(self) -> TrackingServer:
        if self._httpd is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<TrackingServer {self._host}:{self._port} {state}>"

    @property
    def host(self) -> str:
        """The interface the server listens on."""
        return self._host

    @property
    def port(self) -> int:
        """The port (the one picked, once started with port 0)."""
        return self._port

    @property
    def url(self) -> str:
        """The base URL a client uses, e.g. ``http://127.0.0.1:8787``.

        Clients post to ``{url}/{tracking_key}/bulk``.
        """
        if self._port == 0:
            raise RuntimeError("the port is picked on start(): start the server first")
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    # -- records --------------------------------------------------------------------

    @property
    def calls(self) -> list[dict[str, Any]]:
        """A copy of the accepted calls, in order, each with its ``type``."""
        with self._lock:
            return list(self._calls)

    @property
    def call_count(self) -> int:
        """How many calls were accepted (cheaper than ``len(calls)``)."""
        with self._lock:
            return len(self._calls)

    @property
    def requests(self) -> list[RequestRecord]:
        """A copy of the records of every request answered, in order."""
        with self._lock:
            return list(self._requests)

    def calls_of(self, kind: str) -> list[dict[str, Any]]:
        """The accepted calls of one kind (``"event"``, ``"user"``, ...)."""
        with self._lock:
            return [c for c in self._calls if c.get("type") == kind]

    def wait_for(self, count: int, timeout: float | None = 5.0) -> bool:
        """Block until at least ``count`` calls were accepted; False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self._calls) >= count, timeout)

    def wait_for_requests(self, count: int, timeout: float | None = 5.0) -> bool:
        """Block until at least ``count`` requests were answered; False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self._requests) >= count, timeout)

    @property
    def received(self) -> int:
        """How many requests arrived in full (counted before any delay or fault)."""
        with self._lock:
            return self._received

    def wait_for_received(self, count: int, timeout: float | None = 5.0) -> bool:
        """Block until at least ``count`` requests arrived in full; False on timeout.

        Unlike :meth:`wait_for_requests` this counts a request as soon as its body is
        read, so a test can tell that a request is now held by :meth:`delay`.
        """
        with self._changed:
            return self._changed.wait_for(lambda: self._received >= count, timeout)

    def clear(self) -> None:
        """Forget the recorded calls and requests and the received count.

        The fault switches stay.
        """
        with self._lock:
            self._calls.clear()
            self._requests.clear()
            self._received = 0

    # -- fault switches -------------------------------------------------------------

    def fail_next(self, n: int, status: int = 500) -> None:
        """Answer the next ``n`` requests with ``status`` (500 by default), recording nothing."""
        with self._lock:
            self._fail = (n, status)

    def throttle_next(self, n: int, retry_after: float = 1) -> None:
        """Answer the next ``n`` requests with 429 and ``Retry-After: retry_after``.

        Whole seconds are sent as an integer (``Retry-After: 2``); fractions as a
        decimal (``Retry-After: 0.2``), for fast tests.
        """
        with self._lock:
            self._throttle = (n, float(retry_after))

    def reset_next(self, n: int) -> None:
        """Reset the connection of the next ``n`` requests without answering (after the body
        is read), so that the client sees a connection reset."""
        with self._lock:
            self._reset = n

    def delay(self, seconds: float) -> None:
        """Wait ``seconds`` before answering every request; ``delay(0)`` restores.

        :meth:`stop` interrupts the wait; the request is then dropped unanswered.
        """
        with self._lock:
            self._delay = max(0.0, float(seconds))

    def reject_items(self, predicate: Callable[[dict[str, Any]], bool] | None) -> None:
        """Fail requests holding an entry for which ``predicate(entry)`` is true.

        Such a request is answered 400 ``BODY_VALIDATION_FAILED`` naming the entries
        (``items[3]: rejected by the server``) and nothing of it is recorded; even
        entries the client considers valid. ``reject_items(None)`` turns it off.
        """
        with self._lock:
            self._reject = predicate

    def reset_faults(self) -> None:
        """Turn every fault switch off."""
        with self._lock:
            self._fail = (0, 500)
            self._throttle = (0, 1.0)
            self._reset = 0
            self._delay = 0.0
            self._reject = None

    # -- called by the handler ------------------------------------------------------

    def _received_one(self) -> None:
        with self._changed:
            self._received += 1
            self._changed.notify_all()

    def _before_answer(self, stopping: threading.Event) -> None:
        """Apply the delay and the counted faults to one request."""
        with self._lock:
            delay = self._delay
        if delay > 0 and stopping.wait(delay):
            raise _Drop
        if stopping.is_set():
            raise _Drop
        with self._lock:
            if self._reset > 0:
                self._reset -= 1
                raise _Drop
            n, status = self._fail
            if n > 0:
                self._fail = (n - 1, status)
                raise _Reject(status, "INTERNAL_ERROR", "failure injected by the test server")
            n, retry_after = self._throttle
            if n > 0:
                self._throttle = (n - 1, retry_after)
                value = f"{retry_after:.3f}".rstrip("0").rstrip(".") or "0"
                raise _Reject(
                    429,
                    "TOO_MANY_REQUESTS",
                    "throttling injected by the test server",
                    headers={"Retry-After": value},
                )

    def _check_key(self, key: str) -> None:
        if self._keys is not None and key not in self._keys:
            raise _Reject(400, "INVALID_API_KEY", "invalid tracking key")

    def _accept(
        self, kind: str, content_type: str | None, encoding: str | None, body: bytes
    ) -> list[dict[str, Any]]:
        """Validate a body; return the calls to record, or raise _Reject."""
        media = (content_type or "").split(";", 1)[0].strip().lower()
        if media != "application/json":
            raise _validation_failed(
                [f"Content-Type must be application/json, got {content_type or 'none'!r:.60}"]
            )
        if encoding is not None:
            raise _validation_failed([f"Content-Encoding {encoding!r:.40} is not supported"])
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise _validation_failed([f"the body is not valid JSON: {exc}"]) from None
        errors: list[str] = []
        with self._lock:
            reject = self._reject
        if kind == "bulk":
            if not isinstance(data, list):
                raise _validation_failed(
                    [f"the bulk body must be a JSON array, not {_json_type(data)}"]
                )
            for i, entry in enumerate(data):
                for problem in validate_wire(entry):
                    errors.append(f"items[{i}]: {problem}")
            calls = data
        else:
            errors.extend(validate_wire(data, kind))
            calls = [data if "type" in data else {"type": kind, **data}] if not errors else []
        if errors:
            raise _validation_failed(errors, len(data) if kind == "bulk" else 1)
        if reject is not None:
            for i, call in enumerate(calls):
                if _safe_predicate(reject, call):
                    prefix = f"items[{i}]: " if kind == "bulk" else ""
                    errors.append(f"{prefix}rejected by the server")
            if errors:
                raise _validation_failed(errors, len(calls))
        return cast("list[dict[str, Any]]", calls)

    def _record(self, record: RequestRecord, calls: list[dict[str, Any]] | None) -> None:
        if calls and self._on_call is not None:
            for call in calls:
                try:
                    self._on_call(call)
                except Exception as exc:
                    report("server.on_call", "tracking server: on_call raised %r", exc)
        if self._on_request is not None:
            try:
                self._on_request(record)
            except Exception as exc:
                report("server.on_request", "tracking server: on_request raised %r", exc)
        with self._changed:
            if calls:
                self._calls.extend(calls)
            self._requests.append(record)
            self._changed.notify_all()


def _safe_predicate(predicate: Callable[[dict[str, Any]], bool], call: dict[str, Any]) -> bool:
    try:
        return bool(predicate(call))
    except Exception as exc:
        report("server.reject_items", "tracking server: reject_items predicate raised %r", exc)
        return False


def _json_type(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if value is None:
        return "null"
    return type(value).__name__
