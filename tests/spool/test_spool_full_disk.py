"""A spool on a disk that is full, or fills up: the log calls go on, the spool says why,
and what was logged is delivered from memory (docs/spool.md, "What survives what").

The disk is a real one: a 1 MiB tmpfs mounted for the test (root only; it skips
elsewhere, and fails under CI, where the machine runs as root), smaller than one
journal segment (4 MiB), filled with a file as a full disk is.
"""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import KEY, free_port

from bucket_logging import BucketHandler, TrackingServer

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="tmpfs")

CALLS = 1000
MORE = 20_000


@pytest.fixture(params=["1m"], ids=lambda size: f"disk {size}")
def small_disk(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={request.param},mode=0700", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        why = f"cannot mount a 1 MiB tmpfs here: {done.stderr.strip()}"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, leave: int = 0) -> None:
    """Write a file until the disk is full (but ``leave`` bytes)."""
    try:
        with open(disk / "filler", "wb") as fh:
            chunk = bytes(64 * 1024)
            while True:
                fh.write(chunk)
                fh.flush()
    except OSError as exc:  # (the file itself may find no room)
        assert exc.errno == errno.ENOSPC
    if leave:
        size = (disk / "filler").stat().st_size
        os.truncate(disk / "filler", max(0, size - leave))


def tracked_logger(handler: BucketHandler) -> logging.Logger:
    log = logging.getLogger(f"app.fulldisk{uuid.uuid4().hex[:6]}")
    log.setLevel(logging.INFO)
    log.propagate = False
    log.addHandler(handler)
    return log


@pytest.mark.parametrize("room", [0, 64 * 1024], ids=["full", "64 KiB left"])
def test_a_spool_on_a_full_disk_reports_it_and_delivers_from_memory(
    small_disk: Path, server: TrackingServer, lines: list[str], room: int
) -> None:
    fill(small_disk, leave=room)
    handler = BucketHandler(KEY, base_url=server.url, spool_dir=str(small_disk / "spool"))
    log = tracked_logger(handler)
    try:
        for i in range(CALLS):
            log.info("did", extra={"bucket_event": "Did", "user_id": f"u{i}"})
        assert handler.sender.flush(20)
    finally:
        handler.close()
    assert sorted(int(c["userId"][1:]) for c in server.calls) == list(range(CALLS))
    said = "\n".join(lines)
    assert "Traceback" not in said
    # the journal cannot reserve a segment (4 MiB on a 1 MiB disk): said, once
    assert "journal" in said and ("No space left" in said or "cannot" in said), said


# 1 MiB: the journal cannot start; 12 MiB: it starts (a segment and the next one, made
# ahead) and its third segment finds the disk full
@pytest.mark.parametrize("small_disk", ["1m", "12m"], indirect=True)
def test_a_disk_that_fills_during_an_outage_loses_nothing_logged_while_running(
    small_disk: Path, lines: list[str]
) -> None:
    server = TrackingServer(port=free_port())  # (off the ephemeral range: restarted)
    # an outage: batches go to the store on the disk until it is full
    handler = BucketHandler(
        KEY, base_url=server.url, spool_dir=str(small_disk / "spool"), max_batch_items=100
    )
    log = tracked_logger(handler)
    try:
        for i in range(CALLS // 2):
            log.info("did", extra={"bucket_event": "Did", "user_id": f"u{i}"})
        fill(small_disk)  # the disk fills up under the running sender
        for i in range(CALLS // 2, MORE):  # (over 4 MiB: the journal needs a new segment)
            log.info("did", extra={"bucket_event": "Did", "user_id": f"u{i}"})
        server.start()
        assert handler.sender.flush(30)
        got = sorted(int(c["userId"][1:]) for c in server.calls)
    finally:
        handler.close()
        server.stop()
    assert got == list(range(MORE)), f"{len(got)} of {MORE}"
    said = "\n".join(lines)
    assert "Traceback" not in said
    assert "No space left on device" in said or "disk is full" in said, said
