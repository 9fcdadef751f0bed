"""``bucket-logging ship`` against a hostile directory: a symlink planted beside the state
file, a FIFO as the file (also swapped in under ``--follow``), a crafted state file
(negative offsets, huge ``head_bytes``, wrong types, another file's inode)."""

from __future__ import annotations

import json
import os
import select
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bucket_logging import TrackingServer
from bucket_logging._cli.logfiles import StateFile

KEY = "trSHIPhostile-7d3e2a1b0c9f8e6d"
TIMEOUT = 30.0


@pytest.fixture
def server() -> Iterator[TrackingServer]:
    with TrackingServer() as srv:
        yield srv


def env(url: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("BUCKET_", "REFLAG_"))}
    return {**base, "BUCKET_TRACKING_KEY": KEY, "BUCKET_TRACKING_URL": url}


def ship(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bucket_logging", "ship", *args],
        env=env(url),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def start(url: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bucket_logging", "ship", *args],
        env=env(url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stderr_line(proc: subprocess.Popen[str], needle: str, timeout: float = TIMEOUT) -> str:
    """The first line of the process's stderr holding ``needle`` (awaited)."""
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        text = proc.stderr.readline()
        if not text:
            break
        if needle in text:
            return text
    raise AssertionError(f"no line with {needle!r} on stderr")


def line(n: int) -> str:
    return json.dumps({"event": "sent", "bucket_event": "Sent message", "user_id": n}) + "\n"


def user_ids(server: TrackingServer) -> list[int]:
    return sorted(c["userId"] for c in server.calls)


# ------------------------------------------------------------------------- 10: the state


def test_a_symlink_planted_beside_the_state_file_is_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("the victim's own file\n")
    state_path = tmp_path / "ship.state"
    # where the temporary file used to be made: a predictable name
    (tmp_path / f"ship.state.tmp-{os.getpid()}").symlink_to(victim)
    StateFile(str(state_path)).save({"a.log": {"dev": 1, "ino": 2, "offset": 3}})
    assert victim.read_text() == "the victim's own file\n"
    assert json.loads(state_path.read_text())["files"]["a.log"]["offset"] == 3
    assert stat.S_IMODE(state_path.stat().st_mode) == 0o600
    assert not state_path.is_symlink()
    leftovers = {p.name for p in tmp_path.iterdir()} - {"victim.txt", "ship.state"}
    assert leftovers == {f"ship.state.tmp-{os.getpid()}"}  # the planted link, untouched


def test_a_failed_write_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = StateFile(str(tmp_path / "ship.state"))

    def broken(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError):
        state.save({"a.log": {"dev": 1, "ino": 2, "offset": 3}})
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ 11: regular files only


def test_a_fifo_is_refused_at_once(server: TrackingServer, tmp_path: Path) -> None:
    fifo = tmp_path / "app.log"
    os.mkfifo(fifo)
    done = ship(server.url, str(fifo))  # (before: open() blocked for good)
    assert done.returncode == 1
    assert "not a regular file" in done.stderr and "FIFO" in done.stderr
    assert KEY not in done.stdout + done.stderr


def test_a_fifo_under_follow_is_said_and_sigterm_ends_ship(
    server: TrackingServer, tmp_path: Path
) -> None:
    fifo = tmp_path / "app.log"
    os.mkfifo(fifo)
    proc = start(server.url, "--follow", str(fifo))
    try:
        assert "not a regular file" in stderr_line(proc, "not a regular file")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=TIMEOUT)
    assert proc.returncode is not None


def test_a_fifo_swapped_in_under_follow(server: TrackingServer, tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("".join(line(n) for n in range(5)))
    proc = start(server.url, "--follow", str(log))
    try:
        assert server.wait_for(5, TIMEOUT)
        log.rename(tmp_path / "app.log.1")
        os.mkfifo(log)
        assert "not a regular file" in stderr_line(proc, "not a regular file")
        # a regular file back at the path is read
        log.unlink()
        log.write_text("".join(line(n) for n in range(5, 8)))
        assert server.wait_for(8, TIMEOUT)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, err
    assert user_ids(server) == list(range(8))


def test_a_device_is_refused(server: TrackingServer) -> None:
    done = ship(server.url, "/dev/zero")
    assert done.returncode == 1
    assert "not a regular file" in done.stderr


# --------------------------------------------------------------- 12: a crafted state file


def crafted(tmp_path: Path, log: Path, **entry: Any) -> Path:
    st = log.stat()
    state = tmp_path / "ship.state"
    base = {"dev": st.st_dev, "ino": st.st_ino, "offset": 0, "head_bytes": 0, "head": 0}
    state.write_text(json.dumps({"version": 1, "files": {str(log): {**base, **entry}}}))
    return state


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param({"offset": -5}, id="negative-offset"),
        pytest.param({"offset": 2**70}, id="huge-offset"),
        pytest.param({"head_bytes": 10**30}, id="huge-head-bytes"),
        pytest.param({"head_bytes": -1}, id="negative-head-bytes"),
        pytest.param({"offset": "5"}, id="offset-a-string"),
        pytest.param({"head": [1]}, id="head-a-list"),
        pytest.param({"ino": -3}, id="negative-inode"),
        pytest.param({"dev": 1.5}, id="dev-a-float"),
    ],
)
def test_an_invalid_entry_is_ignored_with_a_message(
    server: TrackingServer, tmp_path: Path, entry: dict[str, Any]
) -> None:
    log = tmp_path / "app.log"
    log.write_text("".join(line(n) for n in range(4)))
    state = crafted(tmp_path, log, **entry)
    done = ship(server.url, "--state", str(state), str(log))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "invalid entry" in done.stderr and "ignored" in done.stderr
    assert user_ids(server) == list(range(4))  # read from its start


def test_another_files_inode_is_never_read(server: TrackingServer, tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("".join(line(n) for n in range(3)))
    secret = tmp_path / "secrets.txt"
    secret.write_text("".join(line(n) for n in range(100, 103)))
    st = secret.stat()
    state = tmp_path / "ship.state"
    state.write_text(
        json.dumps({"files": {str(log): {"dev": st.st_dev, "ino": st.st_ino, "offset": 0}}})
    )
    done = ship(server.url, "--state", str(state), str(log))
    assert done.returncode == 0, done.stderr
    assert user_ids(server) == [0, 1, 2]  # the secrets file was not read


def test_a_rotated_file_by_the_stem_is_still_read(server: TrackingServer, tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("".join(line(n) for n in range(3)))
    state = tmp_path / "ship.state"
    done = ship(server.url, "--state", str(state), str(log))
    assert done.returncode == 0, done.stderr
    with open(log, "a") as fh:
        fh.write(line(3))
    log.rename(tmp_path / "app.log.1")
    log.write_text(line(4))
    done = ship(server.url, "--state", str(state), str(log))
    assert done.returncode == 0, done.stderr
    assert user_ids(server) == [0, 1, 2, 3, 4]
