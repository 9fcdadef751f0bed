"""``bucket-logging ship`` run as users run it: a subprocess, a local tracking server.

Files with tagged, untagged and broken lines; stdin; lost items (exit 1); ``--state``
across restarts (nothing lost, nothing repeated); ``--follow`` across a rename
rotation, a ``copytruncate`` and a restart after a rotation.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bucket_logging import TrackingServer

KEY = "trSHIPkey-4c1d9e0b7a2f3658"
TIMEOUT = 30.0


def env(url: str, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("BUCKET_")}
    return {**base, "BUCKET_TRACKING_KEY": KEY, "BUCKET_TRACKING_URL": url, **extra}


def ship(
    url: str, *args: str, stdin: bytes | None = None, **extra: str
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "bucket_logging", "ship", *args],
        env=env(url, **extra),
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert KEY not in done.stdout + done.stderr
    return done


def start(url: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bucket_logging", "ship", *args],
        env=env(url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=TIMEOUT)
    assert KEY not in err
    return proc.returncode, err


def line(n: int, **fields: Any) -> str:
    obj = {
        "timestamp": f"2026-01-02T03:04:{n % 60:02d}.{n % 1000:03d}Z",
        "level": "info",
        "event": "sent",
        "bucket_event": "Sent message",
        "user_id": n,
        **fields,
    }
    return json.dumps(obj) + "\n"


def write(path: Path, lines: list[str], mode: str = "a") -> None:
    with open(path, mode) as fh:
        fh.writelines(lines)


def user_ids(server: TrackingServer) -> list[int]:
    return sorted(c["userId"] for c in server.calls)


def wait_until(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> bool:
    """Poll a condition another process makes true (the server's count is awaited)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


MIXED = [
    line(1),
    '{"timestamp": 1767323045.5, "message": "who", "bucket_user": {"name": "Ada"}, "user_id": 2}\n',
    "not json at all\n",
    '["an", "array"]\n',
    "\n",
    '{"event": "untagged", "user_id": 3}\n',
    '{"msg": "bad tag", "bucket_event": 5, "user_id": 4}\n',
    '{"message": "Report viewed", "user_id": 5, "report": "sales", "@timestamp": 1767323045123}\n',
    '{"event": "last line without newline", "bucket_event": "Last", "user_id": 6}',
]


def test_the_summary_counts_the_lines_the_application_tracked_already(
    server: TrackingServer, tmp_path: Path
) -> None:
    log = tmp_path / "app.log"
    write(log, [line(1), '{"bucket_event": "Sent", "user_id": 7, "bucket_tracked": true}\n'])
    done = ship(f"http://localhost:{server.port}", str(log))
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[-1] == (
        "ship: 2 line(s) read, 1 item(s) sent, 0 skipped (not JSON objects), 0 rejected, "
        "1 tracked by the application already (bucket_tracked)"
    )
    assert [c["userId"] for c in server.calls] == [1]


def test_a_file_of_tagged_untagged_and_broken_lines(server: TrackingServer, tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    write(log, MIXED)
    rules = tmp_path / "rules.json"
    rule = {"match": "Report *", "event": "Viewed report", "attributes": "*"}
    rules.write_text(json.dumps([rule]))
    url = f"http://localhost:{server.port}"
    done = ship(url, str(log), "--rules", str(rules))
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[-1] == (
        "ship: 9 line(s) read, 4 item(s) sent, 2 skipped (not JSON objects), 1 rejected"
    )
    assert "bucket_event must be the event name" in done.stderr
    calls = {c["userId"]: c for c in server.calls}
    assert calls[1] == {
        "type": "event",
        "event": "Sent message",
        "userId": 1,
        "timestamp": "2026-01-02T03:04:01.001Z",
    }
    assert calls[2] == {
        "type": "user",
        "userId": 2,
        "attributes": {"name": "Ada"},
        "timestamp": "2026-01-02T03:04:05.500Z",
    }
    assert calls[5] == {
        "type": "event",
        "event": "Viewed report",
        "userId": 5,
        "attributes": {"report": "sales"},
        "timestamp": "2026-01-02T03:04:05.123Z",
    }
    assert calls[6]["event"] == "Last"
    assert sorted(calls) == [1, 2, 5, 6]


def test_stdin_and_options_on_the_command_line(server: TrackingServer) -> None:
    body = "".join(line(n) for n in range(100)).encode()
    done = ship(
        "http://unused.invalid", "--key", KEY, "--url", server.url, "--state", "x", stdin=body
    )
    assert done.returncode == 0, done.stderr
    assert "--state applies to files; ignored for stdin" in done.stderr
    assert user_ids(server) == list(range(100))
    assert "100 item(s) sent" in done.stderr


def test_items_lost_means_exit_status_1_and_no_state(
    server: TrackingServer, tmp_path: Path
) -> None:
    log = tmp_path / "app.log"
    write(log, [line(n) for n in range(10)])
    state = tmp_path / "state.json"
    with TrackingServer(tracking_keys=["trSomeOtherKey-000000000"]) as refusing:
        done = ship(refusing.url, str(log), "--state", str(state))
    assert done.returncode == 1, done.stderr
    assert "10 LOST" in done.stderr.splitlines()[-1]
    assert not state.exists()


def test_configuration_errors_exit_2(tmp_path: Path, server: TrackingServer) -> None:
    done = ship(server.url, str(tmp_path / "x.log"), BUCKET_TRACKING_KEY="")
    assert done.returncode == 2
    assert "no Bucket tracking key" in done.stderr
    done = ship(server.url, "--rules", str(tmp_path / "missing.json"))
    assert done.returncode == 2
    assert "cannot read" in done.stderr
    bad = tmp_path / "bad-rules.json"
    bad.write_text('[{"event": "no match"}]')
    assert ship(server.url, "--rules", str(bad)).returncode == 2
    for unreadable in (tmp_path / "missing.log", tmp_path):  # (a directory)
        done = ship(server.url, str(unreadable))
        assert done.returncode == 1
        assert f"cannot read {unreadable}" in done.stderr


def test_state_resumes_where_the_last_run_stopped(server: TrackingServer, tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    state = tmp_path / "state.json"
    write(log, [line(n) for n in range(50)])
    assert ship(server.url, str(log), "--state", str(state)).returncode == 0
    write(log, [line(n) for n in range(50, 80)])
    done = ship(server.url, str(log), "--state", str(state))
    assert done.returncode == 0, done.stderr
    assert "ship: 30 line(s) read, 30 item(s) sent" in done.stderr
    assert ship(server.url, str(log), "--state", str(state)).returncode == 0
    assert user_ids(server) == list(range(80))  # nothing lost, nothing twice
    saved = json.loads(state.read_text())["files"][str(log)]
    assert saved["offset"] == log.stat().st_size
    assert saved["ino"] == log.stat().st_ino


def test_follow_reads_growing_files_through_rotation_and_truncation(
    server: TrackingServer, tmp_path: Path
) -> None:
    log = tmp_path / "app.log"
    state = tmp_path / "state.json"
    write(log, [line(n) for n in range(10)])
    proc = start(f"http://localhost:{server.port}", "--follow", "--state", str(state), str(log))
    try:
        assert server.wait_for(10, TIMEOUT)
        write(log, [line(n) for n in range(10, 20)])
        assert server.wait_for(20, TIMEOUT)
        # rename rotation: lines still written to the old file after the rename
        log.rename(tmp_path / "app.log.1")
        write(tmp_path / "app.log.1", [line(n) for n in range(20, 25)])
        write(log, [line(n) for n in range(25, 30)], mode="w")
        assert server.wait_for(30, TIMEOUT)
        # copytruncate
        with open(log, "r+") as fh:
            fh.truncate(0)
        assert wait_until(lambda: json.loads(state.read_text())["files"][str(log)]["offset"] == 0)
        write(log, [line(n) for n in range(30, 35)])
        assert server.wait_for(35, TIMEOUT)
    finally:
        status, err = stop(proc)
    assert status == 0, err
    assert user_ids(server) == list(range(35))
    assert "ship: 35 line(s) read, 35 item(s) sent" in err


def test_follow_restart_with_state_loses_and_repeats_nothing(
    server: TrackingServer, tmp_path: Path
) -> None:
    log = tmp_path / "app.log"
    state = tmp_path / "state.json"
    write(log, [line(n) for n in range(100)])
    proc = start(server.url, "--follow", "--state", str(state), str(log))
    try:
        assert server.wait_for(100, TIMEOUT)
    finally:
        status, err = stop(proc)
    assert status == 0, err
    # while no shipper runs: more lines, a rotation, lines in the new file
    write(log, [line(n) for n in range(100, 120)])
    log.rename(tmp_path / "app.log.1")
    write(log, [line(n) for n in range(120, 130)], mode="w")
    proc = start(server.url, "--follow", "--state", str(state), str(log))
    try:
        assert server.wait_for(130, TIMEOUT)
        write(log, [line(n) for n in range(130, 140)])
        assert server.wait_for(140, TIMEOUT)
    finally:
        status, err = stop(proc)
    assert status == 0, err
    assert user_ids(server) == list(range(140))
    saved = json.loads(state.read_text())["files"][str(log)]
    assert (saved["ino"], saved["offset"]) == (log.stat().st_ino, log.stat().st_size)


def test_follow_waits_for_a_file_that_does_not_exist_yet(
    server: TrackingServer, tmp_path: Path
) -> None:
    log = tmp_path / "later.log"
    proc = start(server.url, "--follow", str(log))
    try:
        write(log, [line(n) for n in range(3)])
        assert server.wait_for(3, TIMEOUT)
    finally:
        status, err = stop(proc)
    assert status == 0, err


def test_progress_line_on_a_terminal_for_large_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    from support import FakeSender

    from bucket_logging._cli import logfiles as _logfiles
    from bucket_logging._cli import ship as _ship
    from bucket_logging._frontends.jsonlines import JsonLines

    monkeypatch.setattr(_ship, "PROGRESS_FROM_BYTES", 1000)
    monkeypatch.setattr(_ship, "CHECKPOINT_LINES", 10)
    monkeypatch.setattr(_logfiles, "CHUNK_BYTES", 512)
    log = tmp_path / "big.log"
    write(log, [line(n) for n in range(100)])
    terminal = io.StringIO()
    sender = FakeSender()
    shipper = _ship.Shipper(JsonLines(sender=sender), progress=terminal)
    shipper.ship_files([str(log)])
    assert shipper.finish() == 0
    assert "\rship:" in terminal.getvalue()
    assert "%" in terminal.getvalue()
    assert terminal.getvalue().endswith("\r\x1b[K")  # cleared before the summary
    assert len(sender.items) == 100
    assert "ship: 100 line(s) read" in capsys.readouterr().err


def test_kill_9_after_a_checkpoint_repeats_nothing(server: TrackingServer, tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    state = tmp_path / "state.json"
    write(log, [line(n) for n in range(100)])
    proc = start(server.url, "--follow", "--state", str(state), str(log))
    try:
        assert server.wait_for(100, TIMEOUT)
        size = log.stat().st_size
        assert wait_until(
            lambda: (
                state.exists()
                and json.loads(state.read_text())["files"][str(log)]["offset"] == size
            )
        )
    finally:
        proc.kill()  # no clean-up at all
        proc.communicate(timeout=TIMEOUT)
    write(log, [line(n) for n in range(100, 120)])
    proc = start(server.url, "--follow", "--state", str(state), str(log))
    try:
        assert server.wait_for(120, TIMEOUT)
    finally:
        status, err = stop(proc)
    assert status == 0, err
    assert user_ids(server) == list(range(120))  # nothing lost, nothing twice
