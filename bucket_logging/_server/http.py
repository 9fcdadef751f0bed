"""The tracking server's HTTP layer: the standard library's server and handler.

:class:`HTTPServer` is a ``ThreadingHTTPServer`` bound without reverse DNS that
tracks its open connections (so that a stop closes them) and serves at most
:attr:`HTTPServer.max_connections` at once; :class:`Handler` reads a request (its
``Content-Length``: a chunked body is answered 411, as the library's own client never
sends one), asks its :class:`Hooks` (set by :class:`~bucket_logging.TrackingServer`)
what to answer, and writes the answer. Imported only when a server starts: ``import
bucket_logging`` does not import :mod:`http.server`.
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
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final, cast

import orjson

from .._items.item import MAX_BODY_BYTES
from .._runtime.diagnostics import report
from .page import answer as page_answer
from .page import guard
from .records import (
    CHUNK,
    DRAIN_LIMIT,
    SUCCESS_BODY,
    Drop,
    Reject,
    RequestRecord,
    path_not_key,
    refused_calls,
    route,
    runtime_key,
)

__all__ = ["HTTPServer", "Handler", "Hooks"]


_JSON: Final = "application/json"


def _media(content_type: str | None) -> str:
    """A ``Content-Type``'s media type, lower case, without its parameters."""
    return (content_type or "").split(";", 1)[0].strip().lower()


#: ``GET`` here answers the accepted calls as a JSON array (CI checks of an app's tracking).
CALLS_PATH: Final = "/_calls"


@dataclasses.dataclass(frozen=True)
class Hooks:
    """What the HTTP layer asks its server (a TrackingServer's own steps)."""

    received_one: Callable[[], None]
    before_answer: Callable[[threading.Event], None]
    check_key: Callable[[str, str], None]
    accept: Callable[[str, str | None, str | None, bytes], list[dict[str, Any]]]
    record: Callable[[RequestRecord, list[dict[str, Any]] | None], None]
    #: The accepted calls, for ``GET /_calls``.
    calls: Callable[[], list[dict[str, Any]]]
    #: Forget every record, for ``DELETE /_calls``.
    clear: Callable[[], None]
    #: The records after the page's last look (see :mod:`bucket_logging._server.page`).
    records_since: Callable[
        [str, int, int, int],
        tuple[str, int, list[RequestRecord], list[dict[str, Any]], tuple[int, int, int]],
    ]
    #: The tracking plan's view for the page (``serve --plan``): ``violations_of(call)`` (a
    #: list of strings) and ``coverage()`` (a dict); None without a plan.
    plan: Any = None


#: The answer to a connection over :attr:`HTTPServer.max_connections` when none can make room.
_BUSY_BODY: Final = orjson.dumps(
    {"success": False, "error": {"code": "UNAVAILABLE", "message": "too many open connections"}}
)
_BUSY: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\nRetry-After: 1\r\nConnection: close\r\n\r\n%s"
    % (len(_BUSY_BODY), _BUSY_BODY)
)


class HTTPServer(ThreadingHTTPServer):
    """The stdlib server, bound without reverse DNS, tracking its open connections.

    It serves at most :attr:`max_connections` connections (one thread each). A
    connection over the cap makes room by closing the one that has waited longest
    for its next request (idle, or still sending its head or body: a slow or
    half-open client); when every connection is busy answering, it is answered 503.
    """

    daemon_threads = True
    request_queue_size = 128
    #: Connections served at once (each a thread).
    max_connections = 64

    def __init__(self, owner: Hooks, address: tuple[str, int]) -> None:
        self.owner = owner
        self.stopping = threading.Event()
        self.conn_lock = threading.Lock()
        self.connections: dict[socket.socket, threading.Thread] = {}
        #: Connections waiting for (the rest of) a request, with the time they began to.
        self.waiting: dict[socket.socket, float] = {}
        self.open_count = 0  # accepted and not yet done (guarded by conn_lock)
        self._wake_r, self._wake_w = socket.socketpair()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        try:
            super().__init__(address, Handler)
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
        with self.conn_lock:
            room = self.open_count < self.max_connections or self._evict_longest_waiting()
            if room:
                self.open_count += 1
                self.waiting[request] = time.monotonic()  # for its head
        if not room:
            with contextlib.suppress(OSError):
                request.setblocking(False)
                request.send(_BUSY)
            self.shutdown_request(request)
            return
        try:
            self.process_request(request, client_address)
        except Exception:
            with self.conn_lock:
                self.open_count -= 1
                self.waiting.pop(request, None)
            self.handle_error(request, client_address)
            self.shutdown_request(request)

    def _evict_longest_waiting(self) -> bool:
        """Shut down the connection waiting longest for a request (conn_lock held)."""
        if not self.waiting:
            return False
        conn = min(self.waiting, key=self.waiting.__getitem__)
        del self.waiting[conn]
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_RDWR)  # its thread reads the end and leaves
        return True

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.conn_lock:
                self.open_count -= 1

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
            self.waiting.pop(conn, None)

    def set_waiting(self, conn: socket.socket, waiting: bool) -> None:
        """Mark a connection as waiting for a request (may be closed to make room) or not."""
        with self.conn_lock:
            if not waiting:
                self.waiting.pop(conn, None)
            elif conn in self.connections:
                self.waiting[conn] = time.monotonic()

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


class Handler(BaseHTTPRequestHandler):
    """Answers one connection's requests (keep-alive)."""

    protocol_version = "HTTP/1.1"
    server_version = "bucket-logging-tracking-server"
    sys_version = ""
    disable_nagle_algorithm = True
    wbufsize = 64 * 1024  # a response goes out in one send (no write per header)
    timeout = 300  # seconds an idle keep-alive connection is kept open

    def _srv(self) -> HTTPServer:
        return cast(HTTPServer, self.server)

    # -- connection life cycle ------------------------------------------------------

    def handle(self) -> None:
        srv = self._srv()
        if not srv.register(self.connection):
            srv.unregister(self.connection)
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
        """The page and ``GET /_calls``; the API has no GET: 404 or 405."""
        self._serve("GET")

    def do_PUT(self) -> None:
        """The API has no PUT: 404 or 405."""
        self._serve("PUT")

    def do_PATCH(self) -> None:
        """The API has no PATCH: 404 or 405."""
        self._serve("PATCH")

    def do_DELETE(self) -> None:
        """``DELETE /_calls`` forgets every record; the API has no DELETE: 404 or 405."""
        self._serve("DELETE")

    # -- the work -------------------------------------------------------------------

    def _serve(self, http_method: str) -> None:
        srv = self._srv()
        owner = srv.owner
        page = guard(http_method, self.path, self.headers.get, srv.server_name)
        if page is None and http_method == "GET" and self.path.split("?", 1)[0] == CALLS_PATH:
            self._respond(200, orjson.dumps(owner.calls()))  # not an API request
            return
        if page is None:
            page = page_answer(
                http_method, self.path, self.headers.get("Host"), srv.server_name, owner
            )
        if page is not None:  # refused, or the page, its data, DELETE /_calls
            if self.headers.get("Content-Length", "0").strip() != "0" or self.headers.get(
                "Transfer-Encoding"
            ):
                self.close_connection = True  # a body we do not read: no next request
            self._respond(page.status, page.body, page.headers, page.content_type)
            return
        # What a web page can send without asking (an image's GET, a form's text/plain
        # POST) is answered but never kept: only a JSON POST is recorded.
        kept = http_method == "POST" and _media(self.headers.get("Content-Type")) == _JSON
        # the target as sent: http.server turns a leading "//" into "/" in self.path,
        # and "//event" (an empty key) is no Runtime API path
        parts = self.requestline.split(" ")
        target = parts[1] if len(parts) == 3 else self.path
        kind, path_key = route(target)
        misplaced = None  # (a path of the client's base URL taken for a key: 404)
        if path_key is None:  # Reflag's Runtime API: /{method}, the key in a header
            api, shown = "runtime", f"/{kind}"
            key, auth = runtime_key(self.headers.get("Authorization"), target.partition("?")[2])
        else:
            api, shown, key, auth = "tracking", f"/<key>/{kind}" if kind else "", path_key, "path"
            if kind is not None:
                misplaced = path_not_key(path_key, kind, self.headers.get("Authorization"))
        body, body_bytes = b"", 0
        try:
            body, body_bytes = self._read_body()
            srv.set_waiting(self.connection, False)  # read: answering, not to be closed
            owner.received_one()
            owner.before_answer(srv.stopping)
            if kind is None:
                raise Reject(404, "NOT_FOUND", "no such API method")
            if misplaced is not None:
                raise misplaced
            if http_method != "POST":
                raise Reject(
                    405, "METHOD_NOT_ALLOWED", "only POST is allowed", headers={"Allow": "POST"}
                )
            owner.check_key(key, api)
            if body_bytes > MAX_BODY_BYTES:
                raise Reject(
                    413,
                    "PAYLOAD_TOO_LARGE",
                    f"the body is {body_bytes:,} bytes, over the {MAX_BODY_BYTES:,}-byte limit",
                )
            accepted = owner.accept(kind, self.headers.get("Content-Type"), self._encoding(), body)
        except Drop:
            # Recorded before the connection goes, so that a client that saw the
            # outcome also finds the record.
            if kept:
                owner.record(
                    RequestRecord(
                        http_method, kind, 0, body_bytes=body_bytes, api=api, path=shown, auth=auth
                    ),
                    None,
                )
            self._drop()
            return
        except Reject as rej:
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
                api=api,
                path=shown,
                auth=auth,
                calls=refused_calls(body, kind),
            )
            if kept:
                owner.record(record, None)
            self._respond(
                rej.status, orjson.dumps({"success": False, "error": payload}), rej.headers
            )
            return
        owner.record(
            RequestRecord(
                http_method, kind, 200, len(accepted), body_bytes, api=api, path=shown, auth=auth
            ),
            accepted,
        )
        self._respond(200, SUCCESS_BODY)

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        finally:  # answered: waiting for the next request of the connection
            self._srv().set_waiting(self.connection, True)

    def _encoding(self) -> str | None:
        value = self.headers.get("Content-Encoding")
        if value is None or value.strip().lower() in ("", "identity"):
            return None
        return value.strip()

    def _read_body(self) -> tuple[bytes, int]:
        """Read the whole body; past MAX_BODY_BYTES it is counted but not kept.

        A chunked body is answered 411 unread: the library's own client always sends a
        ``Content-Length``, and a chunked body has no bound until its end.
        """
        if self.headers.get("Transfer-Encoding") is not None:
            self.close_connection = True  # the body is not read: the connection is useless
            raise Reject(
                411, "LENGTH_REQUIRED", "send a Content-Length (chunked bodies are not taken)"
            )
        raw = self.headers.get("Content-Length")
        if raw is None:
            return b"", 0
        try:
            length = int(raw)
            if length < 0:
                raise ValueError(raw)
        except ValueError:
            self.close_connection = True
            raise Reject(400, "BAD_REQUEST", "invalid Content-Length") from None
        if length <= MAX_BODY_BYTES:
            body = self.rfile.read(length)
            if len(body) < length:
                raise Drop  # the client went away mid-body
            return body, length
        if length > DRAIN_LIMIT:
            self.close_connection = True  # not worth reading: answer and hang up
            return b"", length
        self._discard(length)
        return b"", length

    def _discard(self, length: int) -> None:
        while length > 0:
            chunk = self.rfile.read(min(length, CHUNK))
            if not chunk:
                raise Drop
            length -= len(chunk)

    def _respond(
        self,
        status: int,
        body: bytes,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        """The status line, headers and body, framed by the standard library and sent
        in one write (``wfile`` is buffered: see :attr:`wbufsize`)."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

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
