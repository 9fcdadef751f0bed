"""Edge cases of the local tracking server (bucket_logging._server.server).

Malformed and unusual HTTP is spoken over raw sockets; the server's own failure
paths (accept errors, a handler that raises, a stop from a callback) are provoked
by replacing one method of the running server.
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest

from bucket_logging._items.item import MAX_BODY_BYTES, validate_wire
from bucket_logging._server.server import RequestRecord, TrackingServer

KEY = "trEdgeSecretKey-9f8e7d6c"
USER = orjson.dumps({"userId": 1})
BULK = orjson.dumps([{"type": "user", "userId": 1}])


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as c:
        yield c


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING, logger="bucket_logging")
    return caplog


# --------------------------------------------------------------------------- raw HTTP


@dataclass
class Reply:
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes

    @property
    def error(self) -> dict[str, Any]:
        data: dict[str, Any] = orjson.loads(self.body)
        assert data["success"] is False
        error: dict[str, Any] = data["error"]
        return error


class Raw:
    """One client connection speaking HTTP/1.1 by hand."""

    def __init__(self, srv: TrackingServer) -> None:
        self.sock = socket.create_connection((srv.host, srv.port), timeout=10)
        self._buffer = b""

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes, *, end: bool = False) -> None:
        self.sock.sendall(data)
        if end:
            self.sock.shutdown(socket.SHUT_WR)  # the client goes away (half-close)

    def request(self, path: str, headers: dict[str, str], body: bytes = b"") -> None:
        lines = [f"POST {path} HTTP/1.1", "Host: localhost"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    def _recv(self) -> bytes:
        try:
            return self.sock.recv(65536)
        except ConnectionResetError:
            return b""

    def reply(self) -> Reply | None:
        """The next response; None when the server closed the connection instead."""
        while b"\r\n\r\n" not in self._buffer:
            data = self._recv()
            if not data:
                return None
            self._buffer += data
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        _, status, reason = status_line.split(" ", 2)
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers["content-length"])
        while len(self._buffer) < length:
            data = self._recv()
            assert data, "the body was cut short"
            self._buffer += data
        body, self._buffer = self._buffer[:length], self._buffer[length:]
        return Reply(int(status), reason, headers, body)

    def closed_by_server(self) -> bool:
        """Whether the server closed the connection (waits for it, bounded by the timeout)."""
        return not self._buffer and self._recv() == b""


@pytest.fixture
def raw(server: TrackingServer) -> Iterator[Raw]:
    conn = Raw(server)
    yield conn
    conn.close()


JSON = {"Content-Type": "application/json"}
CHUNKED = {**JSON, "Transfer-Encoding": "chunked"}
PATH = f"/{KEY}/bulk"


def chunk(data: bytes, extension: str = "") -> bytes:
    return f"{len(data):x}{extension}\r\n".encode() + data + b"\r\n"


# --------------------------------------------------------------------------- methods and encodings


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE", "GET"])
def test_other_methods_on_api_paths_are_405(
    server: TrackingServer, client: httpx.Client, method: str
) -> None:
    r = client.request(method, f"{server.url}/{KEY}/event", content=USER, headers=JSON)
    assert r.status_code == 405
    assert r.headers["allow"] == "POST"
    assert r.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
    assert client.request(method, f"{server.url}/elsewhere").status_code == 404
    # answered, never recorded: any web page can send these (an image's GET)
    assert server.requests == []
    assert server.calls == []


def test_a_compressed_body_is_refused(server: TrackingServer, client: httpx.Client) -> None:
    url = f"{server.url}/{KEY}/user"
    r = client.post(url, content=USER, headers={**JSON, "Content-Encoding": "gzip"})
    assert r.status_code == 400
    assert r.json()["error"]["validationErrors"] == [
        {"message": "Content-Encoding 'gzip' is not supported"}
    ]
    for identity in ("identity", "IDENTITY", ""):
        r = client.post(url, content=USER, headers={**JSON, "Content-Encoding": identity})
        assert r.status_code == 200
    assert server.call_count == 3


def test_a_post_without_a_body(raw: Raw, server: TrackingServer) -> None:
    raw.request(PATH, JSON)  # neither Content-Length nor chunked: an empty body
    reply = raw.reply()
    assert reply is not None and reply.status == 400
    assert "the body is not valid JSON" in reply.error["validationErrors"][0]["message"]
    assert server.requests[-1].body_bytes == 0


@pytest.mark.parametrize("value", ["abc", "-5"])
def test_an_invalid_content_length_is_400_and_closes(
    raw: Raw, server: TrackingServer, value: str
) -> None:
    raw.request(PATH, {**JSON, "Content-Length": value}, BULK)
    reply = raw.reply()
    assert reply is not None
    assert reply.status == 400
    assert reply.error == {"code": "BAD_REQUEST", "message": "invalid Content-Length"}
    assert reply.headers["connection"] == "close"
    assert raw.closed_by_server()  # the body's end is unknown: the connection is useless
    assert server.requests == [
        RequestRecord("POST", "bulk", 400, code="BAD_REQUEST", message="invalid Content-Length")
    ]


def test_status_without_a_standard_phrase(raw: Raw, server: TrackingServer) -> None:
    server.fail_next(1, status=599)
    raw.request(PATH, {**JSON, "Content-Length": str(len(BULK))}, BULK)
    reply = raw.reply()
    assert reply is not None
    assert (reply.status, reply.reason) == (599, "")
    assert reply.error["code"] == "INTERNAL_ERROR"
    raw.request(PATH, {**JSON, "Content-Length": str(len(BULK))}, BULK)  # same connection
    again = raw.reply()
    assert again is not None and (again.status, again.reason) == (200, "OK")


# --------------------------------------------------------------------------- sizes


def test_an_announced_body_over_64_mb_is_refused_unread(raw: Raw, server: TrackingServer) -> None:
    size = 100_000_000
    raw.request(PATH, {**JSON, "Content-Length": str(size)})  # and no body follows
    reply = raw.reply()  # answered at once, without waiting for 100 MB
    assert reply is not None
    assert reply.status == 413
    assert reply.error["code"] == "PAYLOAD_TOO_LARGE"
    assert f"{size:,} bytes" in reply.error["message"]
    assert reply.headers["connection"] == "close"
    assert raw.closed_by_server()
    [record] = server.requests
    assert (record.status, record.body_bytes) == (413, size)


def test_a_client_that_leaves_mid_body_is_recorded_as_dropped(
    raw: Raw, server: TrackingServer
) -> None:
    raw.request(PATH, {**JSON, "Content-Length": "100"}, BULK[:10])
    raw.send(b"", end=True)
    assert raw.reply() is None
    assert server.wait_for_requests(1)
    assert server.requests == [RequestRecord("POST", "bulk", 0)]
    assert server.received == 0 and server.calls == []


def test_a_client_that_leaves_mid_way_through_an_oversized_body(
    raw: Raw, server: TrackingServer
) -> None:
    raw.request(PATH, {**JSON, "Content-Length": str(3 * MAX_BODY_BYTES)}, b"x" * 100_000)
    raw.send(b"", end=True)
    assert raw.reply() is None
    assert server.wait_for_requests(1)
    assert [r.status for r in server.requests] == [0]


# --------------------------------------------------------------------------- chunked bodies


LENGTH_REQUIRED = RequestRecord(
    "POST",
    "bulk",
    411,
    code="LENGTH_REQUIRED",
    message="send a Content-Length (chunked bodies are not taken)",
)


@pytest.mark.parametrize(
    "sent",
    [
        pytest.param(chunk(BULK) + b"0\r\n\r\n", id="whole"),
        pytest.param(b"-1\r\n" + b"x" * 1_000_000, id="negative-size"),  # read to EOF before
        pytest.param(f"{80_000_000:x}\r\n".encode(), id="huge-size"),
        pytest.param(b"zz\r\n", id="invalid-size"),
        pytest.param(b"", id="nothing-yet"),
    ],
)
def test_a_chunked_body_is_answered_411_unread_and_closes(
    raw: Raw, server: TrackingServer, sent: bytes
) -> None:
    raw.request(PATH, CHUNKED, sent)  # and the connection stays open: no EOF to wait for
    reply = raw.reply()
    assert reply is not None
    assert reply.status == 411
    assert reply.error == {"code": "LENGTH_REQUIRED", "message": LENGTH_REQUIRED.message}
    assert reply.headers["connection"] == "close"
    assert raw.closed_by_server()
    assert server.requests == [LENGTH_REQUIRED]
    assert server.calls == []


def test_a_streamed_body_from_httpx_is_answered_411(
    server: TrackingServer, client: httpx.Client
) -> None:
    url = f"{server.url}/{KEY}/bulk"
    r = client.post(url, content=iter([BULK[:5], BULK[5:]]), headers=JSON)  # chunked
    assert r.status_code == 411
    assert r.json()["error"]["code"] == "LENGTH_REQUIRED"
    assert client.post(url, content=BULK, headers=JSON).status_code == 200  # a new connection
    assert [rec.status for rec in server.requests] == [411, 200]


# --------------------------------------------------------------------------- bodies and callbacks


@pytest.mark.parametrize(
    ("body", "what"),
    [
        (b'"x"', "a string"),
        (b"true", "a boolean"),
        (b"1.5", "a number"),
        (b"7", "a number"),
        (b"null", "null"),
        (b"{}", "an object"),
    ],
)
def test_a_bulk_body_that_is_not_an_array(
    server: TrackingServer, client: httpx.Client, body: bytes, what: str
) -> None:
    r = client.post(f"{server.url}/{KEY}/bulk", content=body, headers=JSON)
    assert r.status_code == 400
    assert r.json()["error"]["validationErrors"] == [
        {"message": f"the bulk body must be a JSON array, not {what}"}
    ]


def test_on_call_raising_is_reported_and_the_call_still_recorded(
    client: httpx.Client, logged: pytest.LogCaptureFixture
) -> None:
    def boom(call: dict[str, Any]) -> None:
        raise ValueError("callback bug")

    with TrackingServer(on_call=boom) as srv:
        assert client.post(f"{srv.url}/{KEY}/user", json={"userId": 1}).status_code == 200
        assert srv.calls == [{"type": "user", "userId": 1}]
    messages = [r.getMessage() for r in logged.records]
    assert "tracking server: on_call raised ValueError('callback bug')" in messages


def test_a_reject_items_predicate_that_raises_accepts_the_item(
    server: TrackingServer, client: httpx.Client, logged: pytest.LogCaptureFixture
) -> None:
    def predicate(call: dict[str, Any]) -> bool:
        return bool(call["attributes"]["poison"])  # KeyError on calls without them

    server.reject_items(predicate)
    body = [
        {"type": "user", "userId": 1},
        {"type": "user", "userId": 2, "attributes": {"poison": True}},
    ]
    r = client.post(f"{server.url}/{KEY}/bulk", json=body)
    assert r.status_code == 400  # the second one, by the predicate
    assert r.json()["error"]["validationErrors"] == [
        {"message": "items[1]: rejected by the server"}
    ]
    assert client.post(f"{server.url}/{KEY}/bulk", json=body[:1]).status_code == 200
    assert server.calls == body[:1]
    assert any(
        m.getMessage().startswith("tracking server: reject_items predicate raised KeyError")
        for m in logged.records
    )


# ----------------------------------------------------------------- the server's own failures


@pytest.mark.parametrize("exc", [ValueError("validator bug"), OSError("gone")])
def test_a_handler_that_raises_closes_its_connection(
    server: TrackingServer,
    logged: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    exc: Exception,
) -> None:
    real = validate_wire
    calls = []

    def flaky(*args: Any) -> Any:
        calls.append(args)
        if len(calls) == 1:
            raise exc
        return real(*args)

    monkeypatch.setattr("bucket_logging._server.server.validate_wire", flaky)
    with httpx.Client(timeout=10) as c:
        with pytest.raises(httpx.TransportError):
            c.post(f"{server.url}/{KEY}/user", json={"userId": 1})
        assert c.post(f"{server.url}/{KEY}/user", json={"userId": 2}).status_code == 200
    assert [call["userId"] for call in server.calls] == [2]
    messages = [r.getMessage() for r in logged.records]
    if isinstance(exc, OSError):
        assert messages == []  # a connection problem: nothing to say
    else:
        assert messages == [
            "tracking server: error while handling a request: ValueError('validator bug')"
        ]


def test_an_accept_error_does_not_stop_the_server(
    server: TrackingServer, client: httpx.Client, logged: pytest.LogCaptureFixture
) -> None:
    httpd = server._httpd
    assert httpd is not None
    real = httpd.get_request
    attempts = []

    def get_request() -> Any:
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError(24, "Too many open files")
        return real()

    httpd.get_request = get_request  # type: ignore[method-assign]
    assert client.post(f"{server.url}/{KEY}/user", json={"userId": 1}).status_code == 200
    assert len(attempts) == 2  # the connection waited in the backlog and was taken next
    assert logged.records == []


def test_a_connection_that_cannot_be_handed_to_a_thread_is_closed_and_reported(
    server: TrackingServer, logged: pytest.LogCaptureFixture
) -> None:
    httpd = server._httpd
    assert httpd is not None
    real = httpd.process_request
    attempts = []

    def process_request(request: Any, address: Any) -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("can't start new thread")
        real(request, address)

    httpd.process_request = process_request  # type: ignore[method-assign,assignment]
    with httpx.Client(timeout=10) as c:
        with pytest.raises(httpx.TransportError):
            c.post(f"{server.url}/{KEY}/user", json={"userId": 1})
        assert c.post(f"{server.url}/{KEY}/user", json={"userId": 2}).status_code == 200
    assert [call["userId"] for call in server.calls] == [2]
    assert [r.getMessage() for r in logged.records] == [
        'tracking server: error while handling a request: RuntimeError("can\'t start new thread")'
    ]


def test_a_connection_accepted_while_stopping_is_not_served(
    client: httpx.Client, logged: pytest.LogCaptureFixture
) -> None:
    srv = TrackingServer().start()
    try:
        httpd = srv._httpd
        assert httpd is not None
        real = httpd.process_request

        def stop_meanwhile(request: Any, address: Any) -> None:
            httpd.stopping.set()  # stop() began between the accept and the handler
            real(request, address)

        httpd.process_request = stop_meanwhile  # type: ignore[method-assign,assignment]
        with pytest.raises(httpx.TransportError):
            client.post(f"{srv.url}/{KEY}/user", json={"userId": 1})
    finally:
        srv.stop()
    assert srv.requests == [] and srv.received == 0
    assert not srv.running
    assert logged.records == []


def test_stop_from_a_callback_does_not_deadlock(logged: pytest.LogCaptureFixture) -> None:
    stopped = threading.Event()

    def on_request(record: RequestRecord) -> None:
        srv.stop(timeout=5)  # on the handler's own thread
        stopped.set()

    srv = TrackingServer(on_request=on_request).start()
    with httpx.Client(timeout=10) as c, pytest.raises(httpx.TransportError):
        c.post(f"{srv.url}/{KEY}/user", json={"userId": 1})
    assert stopped.wait(10)
    assert not srv.running
    assert [r.status for r in srv.requests] == [200]  # recorded before the answer
    assert logged.records == []  # the unanswerable connection is no error


# --------------------------------------------------------------------------- life cycle


def test_a_failed_bind_leaves_nothing_open(monkeypatch: pytest.MonkeyPatch) -> None:
    pairs: list[tuple[socket.socket, socket.socket]] = []
    real = socket.socketpair

    def spy(*args: Any) -> tuple[socket.socket, socket.socket]:
        pair = real(*args)
        pairs.append(pair)
        return pair

    monkeypatch.setattr(socket, "socketpair", spy)  # the module _server uses
    with TrackingServer() as busy:
        srv = TrackingServer(port=busy.port)
        with pytest.raises(OSError):
            srv.start()
        assert not srv.running
        assert repr(srv) == f"<TrackingServer 127.0.0.1:{busy.port} stopped>"
    assert len(pairs) == 2
    assert all(s.fileno() == -1 for s in pairs[1])  # the failed one's wake-up pair is closed


def test_stop_from_another_thread_ends_serve_forever(monkeypatch: pytest.MonkeyPatch) -> None:
    entered, proceed = threading.Event(), threading.Event()

    class LateSelector(selectors.DefaultSelector):
        """Its first wait begins only once ``proceed`` is set: the serving thread
        checked ``stopping``, then lost the CPU before it began to wait."""

        def select(self, timeout: float | None = None) -> Any:
            if threading.current_thread().name == "serve-forever" and not proceed.is_set():
                entered.set()
                proceed.wait(10)
            return super().select(timeout)

    monkeypatch.setattr(selectors, "DefaultSelector", LateSelector)  # _server's too
    srv = TrackingServer()
    thread = threading.Thread(target=srv.serve_forever, name="serve-forever", daemon=True)
    thread.start()  # without on_ready
    assert entered.wait(10)
    srv.stop()  # from another thread, as its docstring allows
    proceed.set()
    thread.join(2)
    assert not thread.is_alive()  # (if it is, it stays blocked: a daemon thread)


def test_entering_a_started_server_keeps_it(client: httpx.Client) -> None:
    srv = TrackingServer(host="127.0.0.1").start()
    port = srv.port
    with srv as same:
        assert same is srv and srv.port == port and srv.host == "127.0.0.1"
        assert "running" in repr(srv)
        assert client.post(f"{srv.url}/{KEY}/user", json={"userId": 1}).status_code == 200
    assert not srv.running


def _has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6(), reason="no IPv6 loopback")
def test_ipv6(client: httpx.Client) -> None:
    with TrackingServer("::1") as srv:
        assert srv.url == f"http://[::1]:{srv.port}"
        assert client.post(f"{srv.url}/{KEY}/user", json={"userId": 1}).status_code == 200
        assert srv.call_count == 1
