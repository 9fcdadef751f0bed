"""``bucket-logging relay`` run as a real subprocess in front of a local tracking server.

The bodies are shaped exactly as each pipeline sends them (see README, "Log
pipelines"): Vector's ``http`` sink with ``encoding.codec = "json"`` posts a JSON
array of its log events (``message``, ``timestamp`` with nanoseconds, ``host``,
``source_type`` and the fields parsed from the line), with ``framing.method =
"newline_delimited"`` one event per line; Fluent Bit's ``http`` output with
``format json_lines`` (or ``json``: an array) adds its date key to each record;
Logstash's ``http`` output with ``format => "json_batch"`` posts an array of events
with ``@timestamp`` and ``@version``. Each may be gzip-compressed and carry a bearer
token.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import RelayProcess, closed_port

from bucket_logging import TrackingServer
from bucket_logging._relay.bodies import Refused, gunzip, parse_body
from bucket_logging._runtime.diagnostics import is_loopback

KEY = "trRELAYkey-8e2b4d6f1a3c5079"
TOKEN = "relay-token-5b9d2e7c41f0a6"
TIMEOUT = 30.0


def start(
    relays: list[RelayProcess], server: TrackingServer, *args: str, **env: str
) -> RelayProcess:
    """A relay named by ``localhost``, as pipelines' configs name it."""
    relay = RelayProcess(server.url, KEY, *args, host="localhost", **env)
    relays.append(relay)
    return relay


def post(
    url: str, body: bytes, *, token: str | None = TOKEN, gzipped: bool = False, **headers: str
) -> httpx.Response:
    sent = {name.replace("_", "-"): value for name, value in headers.items()}
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    if gzipped:
        body = gzip.compress(body)
        sent["Content-Encoding"] = "gzip"
    sent.setdefault("Content-Type", "application/json")
    return httpx.post(url, content=body, headers=sent, timeout=TIMEOUT)


def app_line(n: int) -> dict[str, Any]:
    """What the application logged (structlog JSON), as the pipeline parsed it."""
    return {"event": "sent", "bucket_event": "Sent message", "user_id": n, "level": "info"}


def vector_event(n: int) -> dict[str, Any]:
    return {
        **app_line(n),
        "message": json.dumps(app_line(n)),
        "timestamp": f"2026-01-02T03:04:{n:02d}.123456789Z",
        "host": "web-1",
        "source_type": "file",
        "file": "/var/log/app.log",
    }


def fluent_bit_record(n: int) -> dict[str, Any]:
    # json_date_key timestamp, json_date_format iso8601
    return {"timestamp": f"2026-01-02T03:04:{n:02d}.123456Z", **app_line(n)}


def logstash_event(n: int) -> dict[str, Any]:
    return {
        "@timestamp": f"2026-01-02T03:04:{n:02d}.123Z",
        "@version": "1",
        "message": json.dumps(app_line(n)),
        "host": {"name": "web-1"},
        "log": {"file": {"path": "/var/log/app.log"}},
        **app_line(n),
    }


def delivered(server: TrackingServer, count: int) -> list[dict[str, Any]]:
    assert server.wait_for(count, TIMEOUT)
    return sorted(server.calls, key=lambda c: c["userId"])


def test_each_pipeline_body_shape_is_tracked(
    server: TrackingServer, relays: list[RelayProcess]
) -> None:
    relay = start(relays, server, "--token", TOKEN)
    bodies = [
        # Vector http sink, codec json (an array), gzip
        (json.dumps([vector_event(n) for n in (1, 2)]).encode(), True),
        # Vector with framing newline_delimited
        ("\n".join(json.dumps(vector_event(n)) for n in (3, 4)).encode() + b"\n", False),
        # Fluent Bit http output, format json_lines, compress gzip
        ("\n".join(json.dumps(fluent_bit_record(n)) for n in (5, 6)).encode() + b"\n", True),
        # Fluent Bit, format json (an array)
        (json.dumps([fluent_bit_record(n) for n in (7, 8)]).encode(), False),
        # Logstash http output, format => json_batch, http_compression => true
        (json.dumps([logstash_event(n) for n in (9, 10)]).encode(), True),
        # one object per request
        (json.dumps(vector_event(11)).encode(), False),
        # untagged events and a non-object are passed over
        (b'[{"message": "GET /health 200"}, "text", {"event": "x", "user_id": 3}]', False),
    ]
    for body, gzipped in bodies:
        answer = post(relay.url, body, gzipped=gzipped)
        assert answer.status_code == 200, answer.text
    # a request cannot choose where items go: the path and headers are ignored
    answer = post(
        relay.root + "trSomeOtherKey-12345678/bulk",
        json.dumps([vector_event(12)]).encode(),
        X_Bucket_Tracking_Key="trSomeOtherKey-12345678",
    )
    assert answer.status_code == 200
    calls = delivered(server, 12)
    assert [c["userId"] for c in calls] == list(range(1, 13))
    assert calls[0] == {
        "type": "event",
        "event": "Sent message",
        "userId": 1,
        "timestamp": "2026-01-02T03:04:01.123Z",  # the event's own time
    }
    assert {c["timestamp"][-7:] for c in calls} == {f"{n:02d}.123Z" for n in range(1, 13)}
    assert all(r.accepted for r in server.requests)  # only the relay's own key was used
    status, err = relay.stop()
    assert status == 0, err
    assert "8 x 200" in err


def test_refusals_and_the_relay_keeps_serving(
    server: TrackingServer, relays: list[RelayProcess]
) -> None:
    relay = start(
        relays, server, "--max-body", "100000", "--max-decoded", "1000000", "--token", TOKEN
    )
    good = json.dumps([vector_event(1)]).encode()
    assert post(relay.url, b"this is not json").status_code == 400
    assert post(relay.url, b"[1, 2").status_code == 400
    assert post(relay.url, b"\x1f\x8bnot gzip", Content_Encoding="gzip").status_code == 400
    missing = post(relay.url, good, token=None)
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    assert post(relay.url, good, token="wrong-token").status_code == 401
    assert post(relay.url, good, Content_Encoding="br").status_code == 415
    oversized = b"[" + b" " * 200_000 + b"]"
    assert post(relay.url, oversized).status_code == 413
    huge = b"[" + b" " * 5_000_000 + b"]"  # not read at all: the connection is closed
    with contextlib.suppress(httpx.TransportError):
        assert post(relay.url, huge).status_code == 413
    bomb = gzip.compress(b"[" + b" " * 50_000_000 + b"]")  # about 50 KB: 50 MB decoded
    assert len(bomb) < 100_000
    assert post(relay.url, bomb, Content_Encoding="gzip").status_code == 413
    assert httpx.get(relay.root + "health", timeout=TIMEOUT).status_code == 200
    assert httpx.delete(relay.url, timeout=TIMEOUT).status_code == 405
    assert post(relay.url, good).status_code == 200  # still serving
    assert delivered(server, 1)[0]["userId"] == 1
    status, err = relay.stop()
    assert status == 0, err
    for line in ("400 the body is not JSON", "401 a valid bearer token", "413 the body is over"):
        assert line in err


def test_a_full_queue_is_answered_503_with_retry_after(
    server: TrackingServer, relays: list[RelayProcess]
) -> None:
    server.fail_next(10_000)  # nothing is delivered: items stay pending
    relay = start(relays, server, "--max-pending", "10")
    assert (
        post(relay.url, json.dumps([vector_event(n) for n in range(8)]).encode()).status_code == 200
    )
    full = post(relay.url, json.dumps([vector_event(n) for n in range(8, 13)]).encode())
    assert full.status_code == 503
    assert full.headers["Retry-After"] == "5"
    server.fail_next(0)
    assert delivered(server, 8)
    deadline = time.monotonic() + TIMEOUT
    while True:  # the queue empties: accepted again
        answer = post(relay.url, json.dumps([vector_event(n) for n in range(8, 13)]).encode())
        if answer.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert answer.status_code == 200
    assert [c["userId"] for c in delivered(server, 13)] == list(range(13))


def test_sigterm_delivers_what_was_answered_200(
    server: TrackingServer, relays: list[RelayProcess]
) -> None:
    server.delay(0.5)  # still in flight when SIGTERM arrives
    relay = start(relays, server)
    for batch in range(5):
        body = json.dumps([vector_event(batch * 10 + n) for n in range(10)]).encode()
        assert post(relay.url, body).status_code == 200
    status, err = relay.stop()
    assert status == 0, err
    assert "0 item(s) lost" in err
    assert [c["userId"] for c in sorted(server.calls, key=lambda c: c["userId"])] == list(range(50))


def test_slow_clients_time_out_and_connections_are_capped(
    server: TrackingServer, relays: list[RelayProcess]
) -> None:
    relay = start(relays, server, "--request-timeout", "1", "--max-connections", "2")
    port = int(relay.url.rstrip("/").rsplit(":", 1)[1])
    # started before the connection: the relay's second can only begin after it, however
    # long this thread then waits for the third connection's answer on a loaded machine
    started = time.monotonic()
    stalled = (
        b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Expect: 100-continue\r\nContent-Length: 100\r\n\r\n"
    )

    def busy(sock: socket.socket) -> None:
        """A request whose head is in (the relay asked for the body), then stalls."""
        sock.sendall(stalled)
        assert sock.recv(1024).startswith(b"HTTP/1.1 100")
        sock.sendall(b"{")

    slow = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    busy(slow)
    idle = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    third = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    # over --max-connections: the connection waiting longest for a head makes room
    assert idle.recv(1024) == b""
    busy(third)
    fourth = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    assert fourth.recv(1024).startswith(b"HTTP/1.1 503")  # every connection busy: refused
    assert slow.recv(1024) == b""  # the stalled request is cut off ...
    assert 0.5 < time.monotonic() - started < 10  # ... after about a second
    assert third.recv(1024) == b""  # (so is the other one)
    for sock in (slow, idle, third, fourth):
        sock.close()
    assert post(relay.url, json.dumps([vector_event(1)]).encode(), token=None).status_code == 200
    status, err = relay.stop()
    assert status == 0, err


def test_concurrent_requests_are_capped(server: TrackingServer, relays: list[RelayProcess]) -> None:
    relay = start(relays, server, "--max-concurrent", "1")
    port = int(relay.url.rstrip("/").rsplit(":", 1)[1])
    slow = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    try:  # a request whose body is still coming holds the only slot
        slow.sendall(
            b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n["
        )
        deadline = time.monotonic() + TIMEOUT
        while (answer := post(relay.url, b"[]")).status_code == 200:
            assert time.monotonic() < deadline, "the slot was never taken"
        assert answer.status_code == 503
        assert answer.headers["Retry-After"] == "5"
        assert "too many requests" in answer.text
    finally:
        slow.close()
    deadline = time.monotonic() + TIMEOUT
    while (answer := post(relay.url, json.dumps([vector_event(1)]).encode())).status_code != 200:
        assert time.monotonic() < deadline, "the slot was never given back"
    assert delivered(server, 1)[0]["userId"] == 1
    assert relay.stop()[0] == 0


#: (a start that risks something and what it says; the same made safe and what it says)
RISKY_STARTS = {
    "beyond loopback without a token": (
        ["--host", "0.0.0.0"], "WITHOUT a token",
        (["--host", "0.0.0.0"], {"BUCKET_RELAY_TOKEN": TOKEN}), "bearer token required",
    ),
    "workers without a spool": (
        ["--workers", "2"], "each worker remembers only the bodies it took",
        (["--workers", "2", "--dedupe-window", "0"], {}), "2 workers",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(RISKY_STARTS))
def test_a_start_that_risks_something_is_loud(
    server: TrackingServer, relays: list[RelayProcess], case: str
) -> None:
    loud, said, (safe, env), safe_said = RISKY_STARTS[case]
    relay = start(relays, server, *loud)
    assert "WARNING" in relay.banner
    assert said in relay.banner
    calm = start(relays, server, *safe, **env)
    assert "WARNING" not in calm.banner
    assert safe_said in calm.banner
    for run in (relay, calm):
        assert run.stop()[0] == 0


# --------------------------------------------------------------------------- units


def test_parse_body_shapes() -> None:
    assert parse_body(b'[{"a": 1}, 2, {"b": 2}]') == ([{"a": 1}, {"b": 2}], 1)
    assert parse_body(b'{"a": 1}') == ([{"a": 1}], 0)
    assert parse_body(b'{"a": 1}\n{"b": 2}\nbroken\n\n3\n') == ([{"a": 1}, {"b": 2}], 2)
    for body in (b"", b"  ", b"nope", b'"text"', b"42", b"{broken\n{also"):
        with pytest.raises(Refused) as refused:
            parse_body(body)
        assert refused.value.status == 400


def test_gunzip_is_bounded_and_reads_several_members() -> None:
    two = gzip.compress(b"[1,") + gzip.compress(b"2]")
    assert gunzip(two, 100) == b"[1,2]"
    with pytest.raises(Refused) as refused:
        gunzip(gzip.compress(b"x" * 1000), 999)
    assert refused.value.status == 413
    assert gunzip(gzip.compress(b"x" * 1000), 1000) == b"x" * 1000
    with pytest.raises(Refused) as refused:
        gunzip(gzip.compress(b"x" * 1000)[:-10], 10_000)
    assert refused.value.status == 400


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("127.0.0.2", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.1", False),
        ("example.com", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_in_process_relay_serves_and_drains(server: TrackingServer) -> None:
    import io

    from bucket_logging import BulkSender
    from bucket_logging._frontends.jsonlines import JsonLines
    from bucket_logging._relay.inprocess import Relay
    from bucket_logging._relay.limits import Limits
    from bucket_logging._relay.sender import RelaySender

    sender = RelaySender(BulkSender(KEY, base_url=f"http://localhost:{server.port}"))
    log = io.StringIO()
    relay = Relay(
        JsonLines(sender=sender),
        sender,
        port=0,
        token=TOKEN,
        limits=Limits(max_body=10_000, max_decoded=20_000),
        log=log,
    ).start()
    host, port = relay.address
    url = f"http://{host}:{port}/"
    try:
        ndjson = "\n".join(json.dumps(fluent_bit_record(n)) for n in range(3)).encode()
        assert post(url, ndjson, gzipped=True).status_code == 200
        assert post(url, ndjson, token=None).status_code == 401
        assert post(url, b"[" + b" " * 30_000 + b"]", gzipped=True).status_code == 413
        assert post(url, b"x" * 20_000).status_code == 413
        assert httpx.put(url, timeout=TIMEOUT).status_code == 405
        assert httpx.get(url, timeout=TIMEOUT).status_code == 405
        with socket.create_connection((host, port), timeout=TIMEOUT) as raw:
            head = (
                "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"Authorization: Bearer {TOKEN}\r\n\r\n"
            )
            raw.sendall(head.encode())
            assert raw.recv(100).startswith(b"HTTP/1.1 411")
    finally:
        assert relay.stop()
        sender.real.close()
    assert [c["userId"] for c in delivered(server, 3)] == [0, 1, 2]
    assert relay.counts[200] == 1
    assert relay.counts[413] == 2
    assert TOKEN not in log.getvalue()
    assert "401 a valid bearer token is required" in log.getvalue()


def test_items_lost_after_a_200_make_the_exit_status_1(relays: list[RelayProcess]) -> None:
    with TrackingServer(tracking_keys=["trSomeOtherKey-000000000"]) as refusing:
        relay = start(relays, refusing)
        assert post(relay.url, json.dumps([vector_event(n) for n in range(3)]).encode()).is_success
        status, err = relay.stop()
    assert status == 1
    assert "3 item(s) lost" in err


def test_with_a_spool_what_was_answered_200_survives_an_outage(
    server: TrackingServer, relays: list[RelayProcess], tmp_path: Path
) -> None:
    from bucket_logging import BulkSender

    down = f"http://127.0.0.1:{closed_port()}"  # nothing listens: the endpoint is down
    spool = tmp_path / "spool"
    relay = start(relays, server, "--url", down, "--spool-dir", str(spool))
    body = json.dumps([vector_event(n) for n in range(5)]).encode()
    assert post(relay.url, body).status_code == 200
    status, err = relay.stop()
    assert status == 0, err  # spooled, not lost
    assert "0 item(s) lost" in err
    later = BulkSender(KEY, base_url=server.url, spool_dir=spool)  # the next process
    try:
        assert [c["userId"] for c in delivered(server, 5)] == list(range(5))
    finally:
        later.close()
