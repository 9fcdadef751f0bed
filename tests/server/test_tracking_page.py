"""The tracking server's page over HTTP: ``GET /``, ``GET /_page/records``, ``DELETE /_calls``.

What a browser does with the page is in ``test_tracking_page_browser.py``; here are the
endpoints themselves: what they answer, that they are not recorded as API requests,
that a poll is bounded and picks up where the last one stopped, that clearing starts a
new epoch, and that a browser that reaches the server by a web site's name (DNS
rebinding) gets nothing.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bucket_logging import TrackingServer
from bucket_logging._server import page as _server_page
from bucket_logging._server.page import _named_locally

ROOT = Path(__file__).resolve().parents[2]
KEY = "trPAGEkey-3b1d"


@pytest.fixture
def server() -> Iterator[TrackingServer]:
    with TrackingServer() as srv:
        yield srv


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as c:
        yield c


def records(client: httpx.Client, srv: TrackingServer, **cursor: Any) -> dict[str, Any]:
    r = client.get(f"{srv.url}/_page/records", params=cursor)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    data: dict[str, Any] = r.json()
    return data


def bulk(client: httpx.Client, srv: TrackingServer, *calls: dict[str, Any]) -> int:
    return client.post(f"{srv.url}/{KEY}/bulk", json=list(calls)).status_code


def event(name: str, user: str = "u1") -> dict[str, Any]:
    return {"type": "event", "event": name, "userId": user}


@pytest.mark.parametrize(
    ("path", "content_type", "marker"),
    [
        ("/", "text/html; charset=utf-8", b"<title>Tracking calls"),
        ("/_page/page.js", "text/javascript; charset=utf-8", b"textContent"),
        ("/_page/page.css", "text/css; charset=utf-8", b"--refused"),
    ],
)
def test_the_page_and_its_files_are_served_and_not_recorded(
    server: TrackingServer, client: httpx.Client, path: str, content_type: str, marker: bytes
) -> None:
    r = client.get(server.url + path)
    assert r.status_code == 200
    assert r.headers["content-type"] == content_type
    assert marker in r.content
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp  # no inline script
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["cache-control"] == "no-store"
    assert server.requests == []  # not an API request
    assert server.received == 0


def test_the_page_fetches_nothing_from_elsewhere(
    client: httpx.Client, server: TrackingServer
) -> None:
    for path in ("/", "/_page/page.js", "/_page/page.css"):
        text = client.get(server.url + path).text
        assert not re.search(r"(https?:)?//[a-z]", re.sub(r"//[^\n]*|/\*.*?\*/", "", text)), path
    script = re.sub(r"//[^\n]*", "", client.get(f"{server.url}/_page/page.js").text)
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script


def test_records_are_the_requests_with_their_calls_and_a_poll_goes_on_from_its_cursor(
    server: TrackingServer, client: httpx.Client
) -> None:
    assert records(client, server) == {
        "epoch": records(client, server)["epoch"],
        "requests": [],
        "calls": [],
        "more": False,
        "from": {"requests": 0, "calls": 0},
        "dropped": 0,
    }
    assert bulk(client, server, event("A"), event("B")) == 200
    assert (
        bulk(client, server, {"type": "feedback", "featureId": "f", "userId": "u1", "score": 9})
        == 400
    )
    first = records(client, server)
    assert [c["event"] for c in first["calls"]] == ["A", "B"]
    ok, refused = first["requests"]
    assert ok["method"] == "POST" and ok["path"] == "/<key>/bulk" and ok["api"] == "tracking"
    assert (ok["status"], ok["items"], ok["code"], ok["errors"]) == (200, 2, None, [])
    assert ok["bytes"] == server.requests[0].body_bytes > 0
    assert (refused["status"], refused["items"], refused["code"]) == (
        400,
        1,
        "BODY_VALIDATION_FAILED",
    )
    assert refused["errors"] == ["items[0]: score must be a number from 1 to 5, got 9"]
    assert abs(ok["at"] / 1000 - server.requests[0].at) < 0.01
    assert KEY not in str(first)

    cursor = {"epoch": first["epoch"], "requests": 2, "calls": 2}
    assert records(client, server, **cursor)["requests"] == []
    assert bulk(client, server, event("C")) == 200
    after = records(client, server, **cursor)
    assert [r["items"] for r in after["requests"]] == [1]
    assert after["calls"] == [event("C")]


def test_a_poll_is_bounded_and_says_there_is_more(
    server: TrackingServer, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_server_page, "LIMIT", 2)
    for i in range(5):
        assert bulk(client, server, *[event(f"E{i}.{j}") for j in range(i + 1)]) == 200
    cursor: dict[str, Any] = {"epoch": "", "requests": 0, "calls": 0}
    seen: list[str] = []
    polls = 0
    while True:
        data = records(client, server, **cursor)
        polls += 1
        assert len(data["requests"]) <= 2
        seen.extend(c["event"] for c in data["calls"])
        cursor = {
            "epoch": data["epoch"],
            "requests": cursor["requests"] + len(data["requests"]),
            "calls": cursor["calls"] + len(data["calls"]),
        }
        if not data["more"]:
            break
    assert polls == 3
    assert seen == [c["event"] for c in server.calls]
    assert len(seen) == 15


def test_a_poll_holds_requests_of_bounded_size_and_at_least_one(
    server: TrackingServer, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_server_page, "BYTES", 100)
    big = {"type": "event", "event": "x" * 200, "userId": "u1"}
    assert bulk(client, server, big) == 200
    assert bulk(client, server, event("A"), event("B")) == 200
    assert bulk(client, server, event("C")) == 200
    sizes = [r.body_bytes for r in server.requests]
    assert sizes[0] > 100 and sizes[1] + sizes[2] > 100 and sizes[1] < 100
    first = records(client, server)
    assert (len(first["requests"]), first["calls"], first["more"]) == (1, [big], True)
    cursor = {"epoch": first["epoch"], "requests": 1, "calls": 1}
    second = records(client, server, **cursor)
    assert (second["calls"], second["more"]) == ([event("A"), event("B")], True)
    cursor = {"epoch": first["epoch"], "requests": 2, "calls": 3}
    assert records(client, server, **cursor)["calls"] == [event("C")]


def test_delete_calls_clears_the_server_and_starts_a_new_epoch(
    server: TrackingServer, client: httpx.Client
) -> None:
    assert bulk(client, server, event("A"), event("B")) == 200
    old = records(client, server)
    r = client.delete(f"{server.url}/_calls")
    assert r.status_code == 200
    assert r.json() == {"success": True}
    assert server.calls == [] and server.requests == [] and server.received == 0
    assert client.get(f"{server.url}/_calls").json() == []
    assert bulk(client, server, event("C")) == 200
    # a page still at the old epoch's cursor gets everything of the new one
    new = records(client, server, epoch=old["epoch"], requests=1, calls=2)
    assert new["epoch"] != old["epoch"]
    assert new["calls"] == [event("C")]
    # clear() in Python is the same
    server.clear()
    assert records(client, server, epoch=new["epoch"], requests=1, calls=1)["epoch"] != new["epoch"]


def test_bad_cursors_are_answered_400(server: TrackingServer, client: httpx.Client) -> None:
    r = client.get(f"{server.url}/_page/records", params={"requests": "x"})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "BAD_REQUEST"
    # negative or past the end: nothing is lost or made up
    assert bulk(client, server, event("A")) == 200
    epoch = records(client, server)["epoch"]
    assert records(client, server, epoch=epoch, requests=-5, calls=-1)["calls"] == [event("A")]
    assert records(client, server, epoch=epoch, requests=10**30, calls=9)["requests"] == []


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8080", "127.0.0.1.evil.example"])
def test_a_web_site_rebound_to_loopback_gets_nothing(
    server: TrackingServer, client: httpx.Client, host: str
) -> None:
    assert bulk(client, server, event("A")) == 200
    for method, path in (("GET", "/"), ("GET", "/_page/records"), ("DELETE", "/_calls")):
        r = client.request(method, server.url + path, headers={"Host": host})
        assert r.status_code == 403, (method, path)
        assert r.json()["error"]["code"] == "FORBIDDEN"
    assert server.call_count == 1  # not cleared


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.0.0.1:8787", "localhost:8787", "app.localhost", "[::1]:8787"]
)
def test_the_page_answers_an_address_or_localhost(
    server: TrackingServer, client: httpx.Client, host: str
) -> None:
    assert client.get(f"{server.url}/", headers={"Host": host}).status_code == 200


def test_a_server_shared_beyond_loopback_answers_any_name() -> None:
    assert _named_locally("tracking:8787", "0.0.0.0")  # e.g. a compose service's name
    assert _named_locally("evil.example", "192.0.2.1")
    assert not _named_locally("evil.example", "127.0.0.1")
    assert not _named_locally("evil.example", "::1")
    assert not _named_locally("[bad", "127.0.0.1")
    assert _named_locally(None, "127.0.0.1")  # HTTP/1.0 without Host: not a browser


def test_a_page_request_with_a_body_closes_its_connection(server: TrackingServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"DELETE /_calls HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\n"
            b"POST /x/bulk HTTP/1.1\r\n"  # not a request of its own: the unread body
        )
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert b"Connection: close" in answer
    assert answer.count(b"HTTP/1.1") == 1
    assert server.requests == []


def test_the_demo_says_where_the_page_is_and_keeps_it_up_with_keep() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BUCKET_", "REFLAG_"))}
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "demo.py"), "--keep"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        url = None
        for line in proc.stdout:
            found = re.search(
                r"page shows every call of both runs: (http://127\.0\.0\.1:\d+/)", line
            )
            url = found.group(1) if found else url
            if line.startswith("Keeping the server up"):
                break
        assert url is not None
        with httpx.Client(timeout=10) as client:
            assert client.get(url).status_code == 200
            data = client.get(f"{url}_page/records").json()
        assert len(data["calls"]) == 16  # both runs, 8 calls each
        assert sorted(r["path"] for r in data["requests"]) == ["/<key>/bulk", "/bulk", "/feedback"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
