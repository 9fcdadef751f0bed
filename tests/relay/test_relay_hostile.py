"""The relay against hostile clients (issue 20, items 3-6), on its uvicorn server.

Each test runs ``bucket-logging relay`` as a subprocess in front of a local tracking
server and talks to it the way an attacker would: raw sockets for malformed heads,
bodies built to blow up in memory or time. Memory is the relay's peak RSS
(``VmHWM`` of /proc/PID/status), read after the attack.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import RelayProcess

from bucket_logging import TrackingServer
from bucket_logging._relay.bodies import Refused, gunzip, value_bound

KEY = "trHOSTILEkey-4c1e9a7b2d5f8036"
TOKEN = "hostile-token-9d3b6e1f02a7c4"
TIMEOUT = 60.0

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def start(relays: list[RelayProcess], server: TrackingServer, *args: str) -> RelayProcess:
    relay = RelayProcess(server.url, KEY, "--token", TOKEN, *args)
    relays.append(relay)
    return relay


def post(url: str, body: bytes, **headers: str) -> httpx.Response:
    sent = {name.replace("_", "-"): value for name, value in headers.items()}
    sent.setdefault("Authorization", f"Bearer {TOKEN}")
    sent.setdefault("Content-Type", "application/json")
    return httpx.post(url, content=body, headers=sent, timeout=TIMEOUT)


def raw_exchange(port: int, data: bytes, *, wait_for: bytes = b"\r\n\r\n") -> bytes:
    """Send ``data`` on a new connection; what comes back until ``wait_for`` or the end."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(data)
        answer = b""
        while wait_for not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


def event(n: int) -> dict[str, Any]:
    return {
        "event": "sent",
        "bucket_event": "Sent message",
        "user_id": n,
        "timestamp": f"2026-01-02T03:04:{n % 60:02d}.123Z",
    }


# ------------------------------------------------------------------ 3. memory


def test_a_body_of_tiny_objects_is_refused_before_it_is_built(
    server: TrackingServer, relays: list[RelayProcess]
) -> None:
    """32 MiB of ``{}`` lines, gzipped to about 32 KB, three at once: the old relay built
    every object (1.54 GB for one request, 4.47 GB for three) and then answered 503."""
    relay = start(relays, server)
    assert post(relay.url, b"[]").status_code == 200
    before = relay.peak_rss_mb()
    bomb = gzip.compress(b"{}\n" * (32 * 1024 * 1024 // 3), 9)
    assert len(bomb) < 200_000
    answers: list[httpx.Response] = []

    def attack() -> None:
        answers.append(post(relay.url, bomb, Content_Encoding="gzip"))

    threads = [threading.Thread(target=attack) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a.status_code for a in answers] == [413, 413, 413]
    assert "--max-objects" in answers[0].json()["message"]
    peak = relay.peak_rss_mb()
    # the documented bound: 3 x (max_body + 3 x 32 MiB decoded) at most, nothing parsed
    assert peak - before < 3 * 3 * 32 + 50, (before, peak)
    print(f"peak RSS {before:.0f} MB -> {peak:.0f} MB for three 32 MiB bombs of {{}}")
    assert post(relay.url, json.dumps([event(1)]).encode()).status_code == 200
    assert server.wait_for(1, TIMEOUT)
    assert relay.stop()[0] == 0


def test_requests_in_progress_share_the_object_budget(
    server: TrackingServer, relays: list[RelayProcess]
) -> None:
    relay = start(relays, server, "--max-objects", "1000")
    batch = json.dumps([event(n) for n in range(50)]).encode()  # about 250 values
    assert value_bound(batch) < 1000
    assert post(relay.url, batch).status_code == 200
    too_big = json.dumps([event(n) for n in range(500)]).encode()
    answer = post(relay.url, too_big)
    assert answer.status_code == 413
    assert "send smaller batches" in answer.json()["message"]
    assert server.wait_for(50, TIMEOUT)
    assert relay.stop()[0] == 0


# ------------------------------------------------------------------ 4. quadratic gzip


def test_many_tiny_gzip_members_are_refused_in_linear_time(
    server: TrackingServer, relays: list[RelayProcess]
) -> None:
    """10 MiB of 20-byte members held the old relay's request thread over a minute."""
    relay = start(relays, server)
    member = gzip.compress(b"{}")
    body = member * (10 * 1024 * 1024 // len(member))
    started = time.monotonic()
    answer = post(relay.url, body, Content_Encoding="gzip")
    assert answer.status_code == 400
    assert "members" in answer.json()["message"]
    assert time.monotonic() - started < 20
    assert relay.stop()[0] == 0


def test_gunzip_walks_members_by_offset() -> None:
    member = gzip.compress(b'{"a": 1}\n')
    body = member * 20_000
    started = time.monotonic()
    assert gunzip(body, 10**7, max_members=20_000) == b'{"a": 1}\n' * 20_000
    assert time.monotonic() - started < 10  # copying the rest per member: minutes
    with pytest.raises(Refused) as refused:
        gunzip(body, 10**7, max_members=100)
    assert refused.value.status == 400
    big = gzip.compress(os.urandom(300_000))  # members longer than one step of input
    assert gunzip(big + member, 10**6) == gzip.decompress(big) + b'{"a": 1}\n'
    with pytest.raises(Refused) as refused:
        gunzip(big + member[:-3], 10**6)
    assert refused.value.status == 400


# ------------------------------------------------------------------ 5. never fits


def test_a_batch_larger_than_max_pending_gets_413_not_503_forever(
    server: TrackingServer, relays: list[RelayProcess]
) -> None:
    relay = start(relays, server, "--max-pending", "100")
    answer = post(relay.url, b"\n".join(json.dumps(event(n)).encode() for n in range(101)))
    assert answer.status_code == 413  # the old relay: 503, retried forever
    assert "--max-pending" in answer.json()["message"]
    assert "Retry-After" not in answer.headers
    assert post(relay.url, json.dumps([event(n) for n in range(100)]).encode()).status_code == 200
    assert server.wait_for(100, TIMEOUT)
    assert relay.stop()[0] == 0


# ------------------------------------------------------------------ 6. HTTP parsing


@pytest.mark.parametrize(
    "length_headers",
    [
        b"Content-Length: 3_2\r\n",
        b"Content-Length: +32\r\n",
        b"Content-Length: 32\r\nContent-Length: 33\r\n",
        b"Content-Length: 32, 33\r\n",
        b"Content-Length: 32\r\nTransfer-Encoding: chunked\r\n",
    ],
)
def test_malformed_or_conflicting_lengths_are_refused(
    server: TrackingServer, relays: list[RelayProcess], length_headers: bytes
) -> None:
    relay = start(relays, server)
    body = b'{"bucket_event":"e","user_id":1}'  # 32 bytes: what a lax parser would take
    assert len(body) == 32
    head = (
        b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
        + TOKEN.encode()
        + b"\r\nContent-Type: application/json\r\n"
        + length_headers
        + b"\r\n"
    )
    answer = raw_exchange(relay.port, head + body)
    assert answer.startswith(b"HTTP/1.1 400"), answer
    assert post(relay.url, json.dumps([event(2)]).encode()).status_code == 200
    assert server.wait_for(1, TIMEOUT)
    assert [c["userId"] for c in server.calls] == [2]  # the smuggled body was not tracked
    assert relay.stop()[0] == 0


def test_expect_100_continue_only_after_the_token(
    server: TrackingServer, relays: list[RelayProcess]
) -> None:
    relay = start(relays, server)
    body = json.dumps([event(7)]).encode()
    head = (
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n"
    )
    wrong = raw_exchange(relay.port, (head + "Authorization: Bearer nope\r\n\r\n").encode())
    assert wrong.startswith(b"HTTP/1.1 401"), wrong  # the old relay: 100 Continue first
    assert b"100 Continue" not in wrong
    with socket.create_connection(("127.0.0.1", relay.port), timeout=TIMEOUT) as sock:
        sock.sendall((head + f"Authorization: Bearer {TOKEN}\r\n\r\n").encode())
        assert sock.recv(1024).startswith(b"HTTP/1.1 100 ")
        sock.sendall(body)
        assert sock.recv(1024).startswith(b"HTTP/1.1 200 ")
    assert server.wait_for(1, TIMEOUT)
    assert relay.stop()[0] == 0


def test_a_flood_of_huge_headers_costs_little_memory(
    server: TrackingServer, relays: list[RelayProcess]
) -> None:
    """64 connections sending 99 headers of 64 KB took the old relay to 444 MB."""
    relay = start(relays, server)
    assert post(relay.url, b"[]").status_code == 200
    before = relay.peak_rss_mb()
    header = b"X-Flood: " + b"a" * 64_000 + b"\r\n"
    all_sent = threading.Barrier(64, timeout=TIMEOUT)

    def flood() -> None:
        with socket.create_connection(("127.0.0.1", relay.port), timeout=TIMEOUT) as sock:
            try:
                sock.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                for _ in range(99):
                    sock.sendall(header)
            except OSError:
                pass  # refused and closed early: the point
            all_sent.wait()  # every connection open at once ...
            with contextlib.suppress(OSError):
                sock.recv(1024)  # ... until the relay answered (400) and closed it

    threads = [threading.Thread(target=flood) for _ in range(64)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    peak = relay.peak_rss_mb()
    assert peak - before < 60, (before, peak)
    print(f"peak RSS {before:.0f} MB -> {peak:.0f} MB for 64 x 99 headers of 64 KB")
    assert post(relay.url, json.dumps([event(3)]).encode()).status_code == 200
    assert server.wait_for(1, TIMEOUT)
    assert relay.stop()[0] == 0


# ------------------------------------------------------------------ chunked bodies


def test_chunked_bodies_are_taken_under_the_same_limits(
    server: TrackingServer, relays: list[RelayProcess]
) -> None:
    relay = start(relays, server, "--max-body", "100000")

    def chunks(data: bytes) -> Iterator[bytes]:
        for at in range(0, len(data), 1000):
            yield data[at : at + 1000]

    body = b"\n".join(json.dumps(event(n)).encode() for n in range(20))
    answer = httpx.post(
        relay.url,
        content=chunks(body),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        timeout=TIMEOUT,
    )
    assert answer.status_code == 200, answer.text  # the old relay: 411
    gzipped = gzip.compress(b"\n".join(json.dumps(event(n)).encode() for n in range(20, 30)))
    answer = httpx.post(
        relay.url,
        content=chunks(gzipped),
        headers={
            "Authorization": f"Bearer {TOKEN}",
            "Content-Encoding": "gzip",
            "Content-Type": "application/json",
        },
        timeout=TIMEOUT,
    )
    assert answer.status_code == 200, answer.text
    assert server.wait_for(30, TIMEOUT)
    assert sorted(c["userId"] for c in server.calls) == list(range(30))
    try:  # past 4 x --max-body: answered and cut off, the rest not read
        cut = httpx.post(
            relay.url,
            content=chunks(b"[" + b" " * 1_000_000 + b"]"),
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
            timeout=TIMEOUT,
        )
    except httpx.TransportError:
        pass
    else:
        assert cut.status_code == 413
    over = httpx.post(
        relay.url,
        content=chunks(b"[" + b" " * 200_000 + b"]"),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        timeout=TIMEOUT,
    )
    assert over.status_code == 413
    assert relay.stop()[0] == 0


# ------------------------------------------------------------------ workers


def test_two_workers_share_the_port_and_a_spool_and_drain_on_sigterm(
    server: TrackingServer, relays: list[RelayProcess], tmp_path: Path
) -> None:
    server.delay(0.2)  # still in flight when SIGTERM arrives
    relay = start(relays, server, "--workers", "2", "--spool-dir", str(tmp_path / "spool"))
    assert "2 workers" in relay.banner
    for batch in range(20):
        body = json.dumps([event(batch * 10 + n) for n in range(10)]).encode()
        with httpx.Client() as client:  # a new connection each: both workers take some
            answer = client.post(
                relay.url,
                content=body,
                headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
                timeout=TIMEOUT,
            )
        assert answer.status_code == 200
    status, err = relay.stop()
    assert status == 0, err
    assert err.count("0 item(s) lost") == 2, err
    assert sorted(c["userId"] for c in server.calls) == list(range(200))  # each once


def test_a_body_too_large_for_100_continue_is_refused_unsent(
    server: TrackingServer, relays: list[RelayProcess]
) -> None:
    relay = start(relays, server, "--max-body", "1000")
    head = (
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: 2000\r\nExpect: 100-continue\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    )
    answer = raw_exchange(relay.port, head.encode())
    assert answer.startswith(b"HTTP/1.1 413"), answer  # at once: the body is never asked for
    assert relay.stop()[0] == 0


def test_a_stalled_chunked_body_is_cut_off_at_the_deadline(
    server: TrackingServer, relays: list[RelayProcess]
) -> None:
    relay = start(relays, server, "--request-timeout", "1", "--max-concurrent", "1")
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", relay.port), timeout=TIMEOUT) as stalled:
        stalled.sendall(
            b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n"
            + f"Authorization: Bearer {TOKEN}\r\n\r\n".encode()
            + b'6\r\n[{"a":\r\n'  # then nothing more
        )
        assert stalled.recv(1024) == b""  # cut off, its slot given back ...
        assert 0.5 < time.monotonic() - started < 15  # ... after about a second
    assert post(relay.url, json.dumps([event(5)]).encode()).status_code == 200
    assert server.wait_for(1, TIMEOUT)
    assert relay.stop()[0] == 0


def test_answers_carry_a_content_length(server: TrackingServer, relays: list[RelayProcess]) -> None:
    relay = start(relays, server)
    for answer in (
        post(relay.url, json.dumps([event(1)]).encode()),
        post(relay.url, b"not json"),
        httpx.get(relay.root + "health", timeout=TIMEOUT),
    ):
        assert answer.headers["content-length"] == str(len(answer.content))
        assert "transfer-encoding" not in answer.headers
    assert relay.stop()[0] == 0
