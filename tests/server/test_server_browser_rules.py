"""What a web page open in the developer's browser can do to ``bucket-logging serve``:
nothing (issue 30, item 4). Every path is under the page's Host rule (a site rebound to
127.0.0.1 reads and writes nothing), a cross-site request is refused, what any page can
send without asking (a form's text/plain POST, an image's GET) is answered but never
kept, and what the server keeps is bounded (the oldest dropped, counted, on the page)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from support import KEY

from bucket_logging import BulkSender, Item, TrackingServer


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as c:
        yield c


def _event(name: str) -> dict[str, Any]:
    return {"type": "event", "event": name, "userId": "u1"}


def _store(client: httpx.Client, server: TrackingServer, name: str) -> None:
    assert client.post(f"{server.url}/{KEY}/bulk", json=[_event(name)]).status_code == 200


REBOUND = ["evil.example", "evil.example:8787", "127.0.0.1.evil.example"]


@pytest.mark.parametrize("host", REBOUND)
def test_a_rebound_name_reaches_no_path(
    server: TrackingServer, client: httpx.Client, host: str
) -> None:
    _store(client, server, "kept")
    headers = {"Host": host}
    r = client.get(f"{server.url}/_calls", headers=headers)
    assert r.status_code == 403 and "kept" not in r.text
    for path in (f"/{KEY}/bulk", "/bulk", f"/{KEY}/event"):
        r = client.post(
            server.url + path,
            json=[_event("injected")] if path.endswith("bulk") else _event("injected"),
            headers={**headers, "Authorization": "Bearer sec_x"},
        )
        assert r.status_code == 403, path
    assert [c["event"] for c in server.calls] == ["kept"]
    assert len(server.requests) == 1  # the refused ones are not even recorded


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ],
)
def test_a_cross_site_request_is_refused_and_not_kept(
    server: TrackingServer, client: httpx.Client, headers: dict[str, str]
) -> None:
    r = client.post(f"{server.url}/{KEY}/bulk", json=[_event("csrf")], headers=headers)
    assert r.status_code == 403
    assert client.get(f"{server.url}/_calls", headers=headers).status_code == 403
    assert client.delete(f"{server.url}/_calls", headers=headers).status_code == 403
    assert server.calls == [] and server.requests == []


def test_the_server_s_own_page_and_plain_clients_still_work(
    server: TrackingServer, client: httpx.Client
) -> None:
    own = {"Origin": server.url, "Sec-Fetch-Site": "same-origin"}
    _store(client, server, "a")
    assert client.get(f"{server.url}/_page/records", headers=own).status_code == 200
    assert client.get(f"{server.url}/", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 200
    assert client.delete(f"{server.url}/_calls", headers=own).status_code == 200
    assert server.calls == []


@pytest.mark.parametrize(
    "case",
    [
        ("POST", f"/{KEY}/bulk", {"Content-Type": "text/plain"}, b'[{"type":"event"}]'),
        ("POST", "/", {"Content-Type": "text/plain"}, b'{"x": 1}'),
        ("POST", f"/{KEY}/event", {"Content-Type": "application/x-www-form-urlencoded"}, b"a=b"),
        ("POST", f"/{KEY}/event", {"Content-Type": "multipart/form-data; boundary=x"}, b"--x--"),
        ("GET", f"/{KEY}/event?userId=victim", {"Accept": "image/webp,*/*"}, b""),
        ("GET", "/favicon.ico", {"Accept": "image/webp,*/*"}, b""),
    ],
)
def test_what_any_page_can_send_is_answered_but_never_kept(
    server: TrackingServer, client: httpx.Client, case: tuple[str, str, dict[str, str], bytes]
) -> None:
    method, path, headers, body = case
    r = client.request(method, server.url + path, content=body, headers=headers)
    assert r.status_code in (400, 404, 405)
    assert server.requests == [] and server.calls == []


def test_the_library_s_own_sender_still_delivers(server_url: str, server: TrackingServer) -> None:
    sender = BulkSender(KEY, base_url=server_url, flush_interval=60)
    try:
        assert sender.enqueue(Item.event("from the sender", "u1"))
        assert sender.flush(10)
    finally:
        sender.close(5)
    assert [c["event"] for c in server.calls] == ["from the sender"]


def test_what_the_server_keeps_is_bounded_and_the_oldest_dropped_are_counted(
    client: httpx.Client,
) -> None:
    with TrackingServer(max_calls=5) as server:
        for i in range(4):
            r = client.post(f"{server.url}/{KEY}/bulk", json=[_event(f"e{i}a"), _event(f"e{i}b")])
            assert r.status_code == 200
        assert client.post(f"{server.url}/{KEY}/bulk", json={"not": "a list"}).status_code == 400
        kept = [c["event"] for c in server.calls]
        assert len(kept) <= 5 and kept[-2:] == ["e3a", "e3b"]
        assert server.dropped_calls == 8 - len(kept)
        assert len(server.requests) <= 5
        page = client.get(f"{server.url}/_page/records").json()
        assert page["dropped"] == server.dropped_calls
        assert [c["event"] for c in page["calls"]] == kept
        assert page["from"]["requests"] == 5 - len(server.requests)
        # a cursor among the dropped goes on from the oldest kept
        cursor = {"epoch": page["epoch"], "requests": 0, "calls": 0}
        again = client.get(f"{server.url}/_page/records", params=cursor).json()
        assert [c["event"] for c in again["calls"]] == kept
        assert "oldest call(s) dropped" in server.summary()
        # what arrived still counts: a test waiting for 8 calls is not kept waiting
        assert server.call_count == 8
        assert server.wait_for(8, timeout=1)
    with pytest.raises(ValueError, match="max_calls"):
        TrackingServer(max_calls=0)
