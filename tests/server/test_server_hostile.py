"""The local server against hostile clients (issue 15 items 11 and 12).

Connections are capped: a flood of half-open connections (1,500 made 1,504 threads)
closes the one that has waited longest for its request instead of growing a thread
each, and the server keeps serving. What a client sent is escaped before it reaches
the terminal: field names of a refused request, text of an accepted call, in the
readable lines and in ``--json``. (A chunked body is answered 411 unread: see
``test_server_malformed_http.py``.)
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import httpx
import orjson
import pytest

from bucket_logging._cli.main import _Printer, format_call, format_rejection
from bucket_logging._server import http as _server_http
from bucket_logging._server.server import RequestRecord, TrackingServer

KEY = "trHostileKey-1a2b3c4d5e6f"
HALF_OPEN = b"POST /" + KEY.encode() + b"/bulk HTTP/1.1\r\nHost: x\r\nContent-Le"


def half_open(srv: TrackingServer, n: int) -> list[socket.socket]:
    """``n`` connections that send part of a request's head, and then nothing."""
    socks = []
    for _ in range(n):
        sock = socket.create_connection((srv.host, srv.port), timeout=10)
        sock.sendall(HALF_OPEN)
        socks.append(sock)
    return socks


def wait_until(condition: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


# --------------------------------------------------------------------------- connections


def test_half_open_connections_are_capped_and_the_server_keeps_serving(
    server: TrackingServer,
) -> None:
    cap = _server_http.HTTPServer.max_connections
    before = threading.active_count()
    socks = half_open(server, 3 * cap)
    try:
        with httpx.Client(timeout=10) as client:
            for host in ("127.0.0.1", "localhost"):
                url = f"http://{host}:{server.port}/{KEY}/user"
                assert client.post(url, json={"userId": 1}).status_code == 200
        assert server.call_count == 2
        # each connection over the cap closed the one that had waited longest
        assert wait_until(lambda: threading.active_count() <= before + cap + 3)
        closed = [s for s in socks[: 2 * cap] if s.recv(1) == b""]
        assert len(closed) == 2 * cap
    finally:
        for sock in socks:
            sock.close()


def test_when_every_connection_is_answering_a_new_one_is_told_503(
    server: TrackingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_server_http.HTTPServer, "max_connections", 2)
    server.delay(30)  # both connections stay busy answering
    url = f"{server.url}/{KEY}/user"

    def held() -> None:
        with pytest.raises(httpx.TransportError):  # dropped unanswered by the stop
            httpx.post(url, json={"userId": 1}, timeout=30)

    busy = [threading.Thread(target=held) for _ in range(2)]
    for thread in busy:
        thread.start()
    assert wait_until(lambda: server.received >= 2)
    r = httpx.post(url, json={"userId": 2}, timeout=10)
    assert r.status_code == 503
    assert r.headers["retry-after"] == "1"
    assert r.json()["error"]["code"] == "UNAVAILABLE"
    server.stop()  # drops the two held requests
    for thread in busy:
        thread.join(10)


# --------------------------------------------------------------------------- printing

HOSTILE = "\x1b[2J\x1b]0;owned\x07\u202etxt.exe\x9b31m\x7f"
ESCAPED = "\\x1b[2J\\x1b]0;owned\\x07\\u202etxt.exe\\x9b31m\\x7f"


def has_controls(text: str) -> bool:
    return any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 or c == "\u202e" for c in text)


def test_text_of_accepted_calls_is_printed_escaped() -> None:
    call = {
        "type": "event",
        "event": HOSTILE,
        "userId": HOSTILE,
        "attributes": {HOSTILE: HOSTILE, "plain": "ok"},
    }
    line = format_call(call)
    assert not has_controls(line)
    assert "plain=ok" in line
    assert "\\u202etxt.exe" in line and "\\x9b31m" in line


def test_field_names_of_refused_requests_are_printed_escaped() -> None:
    record = RequestRecord(
        "POST",
        "user",
        400,
        code="BODY_VALIDATION_FAILED",
        errors=(f"unknown field(s) for a user: {HOSTILE}",),
    )
    line = format_rejection(record)
    assert line == f"400 BODY_VALIDATION_FAILED unknown field(s) for a user: {ESCAPED}"


def test_the_printer_escapes_what_it_prints_and_json_lines_stay_json(
    server: TrackingServer,
) -> None:
    class Lines:
        def __init__(self) -> None:
            self.text = ""

        def write(self, text: str) -> int:
            self.text += text
            return len(text)

        def flush(self) -> None:
            pass

    readable, as_json, other = Lines(), Lines(), Lines()
    for stream, json_mode in ((readable, False), (as_json, True)):
        printer = _Printer(stream, other, json_mode)  # type: ignore[arg-type]
        with TrackingServer(on_call=printer.on_call, on_request=printer.on_request) as srv:
            body = [
                {"type": "user", "userId": 1, "attributes": {HOSTILE: HOSTILE}},
                {"type": "user", "userId": 1, HOSTILE: 1},  # refused: an unknown field
            ]
            httpx.post(f"{srv.url}/{KEY}/bulk", json=body[:1], timeout=10)
            httpx.post(f"{srv.url}/{KEY}/bulk", json=body[1:], timeout=10)
    for stream in (readable, as_json, other):
        assert stream.text and not has_controls(stream.text.replace("\n", ""))
    [line] = as_json.text.splitlines()
    assert orjson.loads(line)["attributes"] == {HOSTILE: HOSTILE}  # still the same JSON
    assert other.text.count(ESCAPED) == 2, other.text
