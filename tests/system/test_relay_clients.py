"""Real clients through ``bucket-logging relay`` to a local tracking server.

* the OpenTelemetry Python SDK (stdlib logging through its ``LoggingHandler``,
  ``BatchLogRecordProcessor``, ``OTLPLogExporter`` of ``opentelemetry-exporter-otlp-
  proto-http``): protobuf, with and without gzip;
* the OpenTelemetry Node SDK (``@opentelemetry/sdk-logs``,
  ``@opentelemetry/exporter-logs-otlp-http`` from npm, installed by
  ``.ci/install-otel-node.sh``): JSON, sent chunked (checked on the wire);
* syslog-ng (Debian ``syslog-ng-core`` and ``syslog-ng-mod-http``, installed by
  ``.ci/install-syslog-ng.sh``), whose ``http()`` destination tails a JSON-lines log
  and posts batches as a JSON array and as NDJSON.

Each record must arrive exactly once with its ids, attributes and time. A client
that is missing skips the test here, and fails it under CI (``CI`` set).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from bucket_logging import TrackingServer

KEY = "trCLIENTSkey-6f2a8c4e1b9d3057"
TOKEN = "clients-token-1e8c5a2f9b7d46"
TIMEOUT = 60.0
CLIENTS = Path(__file__).parent / "relay_clients"


def need(available: bool, what: str) -> None:
    """Skip without ``what`` here; under CI a missing client is a failure."""
    if available:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing under CI (.ci/run installs it)")
    pytest.skip(f"{what} is not installed (see .ci/)")


@dataclass
class Running:
    proc: subprocess.Popen[str]
    port: int
    banner: str
    host: str  # the name the clients reach it by: 127.0.0.1 or localhost

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=TIMEOUT)
        err = self.banner + err
        assert self.proc.returncode == 0, err
        assert KEY not in err
        assert TOKEN not in err
        return err


@pytest.fixture
def server() -> Iterator[TrackingServer]:
    with TrackingServer(tracking_keys=[KEY]) as srv:
        yield srv


@pytest.fixture
def relay(server: TrackingServer, host: str) -> Iterator[Running]:
    """The relay, reached by the clients at ``host`` (each loopback name in turn)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("BUCKET_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bucket_logging", "relay", "--port", "0", "--token", TOKEN],
        env={**base, "BUCKET_TRACKING_KEY": KEY, "BUCKET_TRACKING_URL": server.url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    banner = ""
    assert proc.stderr is not None
    while "relay on http://" not in banner:
        line = proc.stderr.readline()
        assert line, f"the relay did not start: {banner}"
        banner += line
    port = int(banner.split("relay on http://", 1)[1].split()[0].rsplit(":", 1)[1])
    running = Running(proc, port, banner, host)
    yield running
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


def arrived(server: TrackingServer, count: int) -> list[dict[str, Any]]:
    """The calls once ``count`` arrived (and no more shortly after)."""
    assert server.wait_for(count, TIMEOUT), f"{len(server.calls)} of {count} arrived"
    return sorted(server.calls, key=lambda c: c["userId"])


def seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def check_events(calls: list[dict[str, Any]], times: dict[int, float], seats: bool) -> None:
    """Every record once, with its ids, attributes and time (to the millisecond)."""
    assert [c["userId"] for c in calls] == [str(n) for n in sorted(times)] or [
        c["userId"] for c in calls
    ] == sorted(times)
    for call in calls:
        n = int(call["userId"])
        assert call["type"] == "event"
        assert call["event"] == "Sent message"
        assert call["companyId"] == "acme"
        assert call["attributes"] == ({"plan": "pro", "seats": n} if seats else {"plan": "pro"})
        assert abs(seconds(call["timestamp"]) - times[n]) < 0.0011, (call, times[n])


# ------------------------------------------------------------------ Python SDK


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_the_python_sdk_exports_through_the_relay(
    server: TrackingServer, relay: Running, compression: str
) -> None:
    try:
        import opentelemetry.exporter.otlp.proto.http
        import opentelemetry.sdk._logs  # noqa: F401

        installed = True
    except ImportError:
        installed = False
    need(installed, "opentelemetry-sdk and opentelemetry-exporter-otlp-proto-http")
    done = subprocess.run(
        [
            sys.executable,
            str(CLIENTS / "python_client.py"),
            relay.url + "v1/logs",
            TOKEN,
            compression,
            "120",
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Failed to export" not in done.stderr, done.stderr
    times = {r["n"]: r["created"] for r in map(json.loads, done.stdout.splitlines())}
    check_events(arrived(server, 120), times, seats=True)
    err = relay.stop()
    assert "0 item(s) lost" in err


# ------------------------------------------------------------------ Node SDK


@dataclass
class Tap:
    """A TCP proxy in front of the relay that keeps what clients sent."""

    upstream: int
    sent: bytearray = field(default_factory=bytearray)
    sock: socket.socket = field(default_factory=socket.socket)

    def start(self) -> int:
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()
        return int(self.sock.getsockname()[1])

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream))
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, keep: bool) -> None:
        try:
            while chunk := src.recv(65536):
                if keep:
                    self.sent.extend(chunk)
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for end in (src, dst):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)


def test_the_node_sdk_exports_json_chunked_through_the_relay(
    server: TrackingServer, relay: Running
) -> None:
    node = shutil.which("node")
    installed = (CLIENTS / "node_modules" / "@opentelemetry" / "exporter-logs-otlp-http").is_dir()
    need(node is not None and installed, "node and the OpenTelemetry Node SDK (npm)")
    assert node is not None
    tap = Tap(relay.port)
    port = tap.start()
    try:
        done = subprocess.run(
            [
                node,
                str(CLIENTS / "node_client.js"),
                f"http://{relay.host}:{port}/v1/logs",
                TOKEN,
                "80",
            ],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    finally:
        tap.sock.close()
    assert done.returncode == 0, done.stderr
    times = {r["n"]: r["time_ms"] / 1000 for r in map(json.loads, done.stdout.splitlines())}
    check_events(arrived(server, 80), times, seats=True)
    heads = bytes(tap.sent).lower()
    assert b"post /v1/logs http/1.1" in heads
    assert b"content-type: application/json" in heads
    assert b"transfer-encoding: chunked" in heads  # the old relay answered this 411
    assert b"content-length:" not in heads
    err = relay.stop()
    assert "0 item(s) lost" in err


# ------------------------------------------------------------------ syslog-ng


def _syslog_ng_config(tmp: Path, host: str, port: int) -> str:
    def destination(name: str, framing: str) -> str:
        return f"""
destination d_{name} {{
    http(
        url("http://{host}:{port}/")
        persist-name("relay_{name}")
        method("POST")
        headers("Authorization: Bearer {TOKEN}", "Content-Type: application/json")
        body("$MSG")
        batch-lines(10)
        batch-timeout(200)
        {framing}
    );
}};
source s_{name} {{
    file("{tmp / (name + ".log")}" flags(no-parse) follow-freq(0.1));
}};
log {{ source(s_{name}); destination(d_{name}); }};
"""

    return (
        "@version: 3.38\n"
        + destination("array", 'body-prefix("[") delimiter(",") body-suffix("]")')
        + destination("ndjson", 'delimiter("\\n")')
    )


def test_syslog_ng_posts_array_and_ndjson_batches_through_the_relay(
    server: TrackingServer, relay: Running, tmp_path: Path
) -> None:
    binary = shutil.which("syslog-ng") or "/usr/sbin/syslog-ng"
    modules = list(Path("/usr/lib/syslog-ng").glob("*/libhttp.so"))
    need(Path(binary).exists() and bool(modules), "syslog-ng with syslog-ng-mod-http")
    config = tmp_path / "syslog-ng.conf"
    config.write_text(_syslog_ng_config(tmp_path, relay.host, relay.port))
    times: dict[int, float] = {}
    for name, numbers in (("array", range(35)), ("ndjson", range(35, 70))):
        with open(tmp_path / f"{name}.log", "w") as fh:
            for n in numbers:
                times[n] = 1_767_225_600 + n + 0.123
                line = {
                    "timestamp": datetime.fromtimestamp(times[n], timezone.utc).isoformat(),
                    "logger": "app.syslog",
                    "event": "message sent",
                    "bucket_event": "Sent message",
                    "user_id": n,
                    "company_id": "acme",
                    "bucket_attributes": {"plan": "pro", "seats": n},
                }
                fh.write(json.dumps(line) + "\n")
    proc = subprocess.Popen(
        [
            binary,
            "-F",
            "-e",
            "--no-caps",
            "-f",
            str(config),
            "-R",
            str(tmp_path / "syslog-ng.persist"),
            "-p",
            str(tmp_path / "syslog-ng.pid"),
            "-c",
            str(tmp_path / "syslog-ng.ctl"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        delivered = server.wait_for(70, TIMEOUT)
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=TIMEOUT)
    assert delivered, f"{len(server.calls)} of 70 arrived; syslog-ng said:\n{output}"
    check_events(arrived(server, 70), times, seats=True)
    err = relay.stop()
    assert "0 item(s) lost" in err, output
    assert "400" not in err.split("relay stopped:", 1)[1], err


# ------------------------------------------------------------------ OTLP/HTTP answers


def _otlp_json(records: list[dict[str, Any]]) -> bytes:
    return json.dumps(
        {
            "resourceLogs": [
                {
                    "resource": {"attributes": []},
                    "scopeLogs": [{"scope": {"name": "app.raw"}, "logRecords": records}],
                }
            ]
        }
    ).encode()


def _record(n: int, event: Any = "Sent message") -> dict[str, Any]:
    return {
        "timeUnixNano": str(1_767_225_600_123_000_000 + n * 1_000_000_000),
        "body": {"stringValue": "message sent"},
        "attributes": [
            {"key": "bucket_event", "value": {"stringValue": event}},
            {"key": "user_id", "value": {"intValue": str(n)}},
            {"key": "company_id", "value": {"stringValue": "acme"}},
            {"key": "bucket_attributes.plan", "value": {"stringValue": "pro"}},
        ],
        "traceId": "5b8efff798038103d269b633813fc60c",
        "someFutureField": 1,
    }


def test_otlp_answers_partial_success_400_and_overload(
    server: TrackingServer, relay: Running
) -> None:
    url = relay.url + "v1/logs"
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    body = _otlp_json([_record(1), _record(2, event=""), _record(3)])
    answer = httpx.post(
        url, content=gzip.compress(body), headers={**auth, "Content-Encoding": "gzip"}
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    partial = answer.json()["partialSuccess"]
    assert int(partial["rejectedLogRecords"]) == 1
    assert "bucket_event" in partial["errorMessage"]
    calls = arrived(server, 2)
    assert [c["userId"] for c in calls] == ["1", "3"] or [c["userId"] for c in calls] == [1, 3]
    assert calls[0]["timestamp"] == "2026-01-01T00:00:01.123Z"
    assert calls[0]["attributes"] == {"plan": "pro"}
    full = httpx.post(url, content=_otlp_json([_record(4)]), headers=auth)
    assert full.status_code == 200
    assert "partialSuccess" not in full.json() or not full.json()["partialSuccess"]
    for bad in (b'{"resourceLogs": 3}', b"not json", b"[1, 2]"):
        refused = httpx.post(url, content=bad, headers=auth)
        assert refused.status_code == 400, refused.text
        assert refused.json()["code"] == 3  # google.rpc.Status, INVALID_ARGUMENT
        assert refused.json()["message"]
    protobuf = httpx.post(
        url, content=b"\xff\xff\xff", headers={**auth, "Content-Type": "application/x-protobuf"}
    )
    assert protobuf.status_code == 400
    assert protobuf.headers["content-type"] == "application/x-protobuf"
    unauthorized = httpx.post(url, content=body, headers={"Content-Type": "application/json"})
    assert unauthorized.status_code == 401
    assert server.wait_for(3, TIMEOUT)
    relay.stop()


def test_otlp_overload_is_503_with_retry_after(server: TrackingServer) -> None:
    server.fail_next(10_000)  # nothing is delivered: items stay pending
    base = {k: v for k, v in os.environ.items() if not k.startswith("BUCKET_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bucket_logging", "relay", "--port", "0", "--max-pending", "3"],
        env={**base, "BUCKET_TRACKING_KEY": KEY, "BUCKET_TRACKING_URL": server.url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        banner = proc.stderr.readline()
        port = int(banner.split("relay on http://", 1)[1].split()[0].rsplit(":", 1)[1])
        url = f"http://127.0.0.1:{port}/v1/logs"
        headers = {"Content-Type": "application/json"}
        assert httpx.post(
            url, content=_otlp_json([_record(1), _record(2)]), headers=headers
        ).is_success
        busy = httpx.post(url, content=_otlp_json([_record(3), _record(4)]), headers=headers)
        assert busy.status_code == 503
        assert busy.headers["Retry-After"] == "5"
        assert busy.json()["code"] == 14  # UNAVAILABLE
        never = httpx.post(url, content=_otlp_json([_record(n) for n in range(4)]), headers=headers)
        assert never.status_code == 413  # can never fit: not retried forever
    finally:
        proc.kill()
        proc.communicate()
