"""The shipper's files in process: positions, rotation, truncation, resuming from a state.

(``tests/cli/test_ship.py`` runs the same as users do, in a subprocess; these run the
classes directly, with a sender that keeps its items.)
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from support import FakeSender

from bucket_logging._cli.logfiles import LogFile, StateFile, find_rotated, resume
from bucket_logging._cli.ship import Shipper
from bucket_logging._frontends.jsonlines import JsonLines

TIMEOUT = 20.0


def line(n: int) -> str:
    return json.dumps({"event": "sent", "bucket_event": "Sent message", "user_id": n}) + "\n"


def write(path: Path, numbers: range, mode: str = "a") -> None:
    with open(path, mode) as fh:
        fh.writelines(line(n) for n in numbers)


def wait_until(predicate: Callable[[], bool]) -> bool:
    """Poll what the shipper's thread makes true."""
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def ids(sender: FakeSender) -> list[int]:
    return sorted(int(c["userId"]) for c in sender.calls)


def test_logfile_reads_whole_lines_and_keeps_the_partial_one(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(b'{"a": 1}\n{"b": 2}\n{"c"')
    f = LogFile.open(str(path))
    assert f.read_lines() == [b'{"a": 1}', b'{"b": 2}']
    assert f.offset == 18
    assert f.read_lines() == []
    with open(path, "ab") as fh:
        fh.write(b": 3}\n")
    assert f.read_lines() == [b'{"c": 3}']
    assert f.take_partial() == []
    assert f.status() == "same"
    path.write_bytes(b"")
    assert f.status() == "truncated"
    path.unlink()
    assert f.status() == "missing"
    f.close()


def test_resume_finds_the_rotated_file_by_its_inode(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    write(path, range(3))
    first = LogFile.open(str(path))
    first.read_lines()
    state = StateFile(str(tmp_path / "state.json"))
    state.save({str(path): first.entry()})
    first.close()
    write(path, range(3, 5))  # after the checkpoint, before the rotation
    path.rename(tmp_path / "app.log.1")
    write(path, range(5, 7), mode="w")
    assert find_rotated(str(path), first.dev, first.ino) == str(tmp_path / "app.log.1")
    old, current = resume(str(path), StateFile(str(tmp_path / "state.json")))
    assert old is not None and current is not None
    assert [json.loads(x)["user_id"] for x in old.read_lines()] == [3, 4]
    assert [json.loads(x)["user_id"] for x in current.read_lines()] == [5, 6]
    old.close()
    current.close()
    (tmp_path / "app.log.1").unlink()  # compressed away meanwhile: the new file only
    _, current = resume(str(path), StateFile(str(tmp_path / "state.json")))
    assert current is not None and current.offset == 0
    current.close()


def test_follow_in_process_through_rotation_truncation_and_a_late_file(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    late = tmp_path / "late.log"
    write(path, range(5))
    sender = FakeSender()
    state = StateFile(str(tmp_path / "state.json"))
    shipper = Shipper(JsonLines(sender=sender), state=state)
    thread = threading.Thread(target=shipper.ship_files, args=([str(path), str(late)], True))
    thread.start()
    try:
        assert wait_until(lambda: len(sender.items) == 5)
        path.rename(tmp_path / "app.log.1")
        write(tmp_path / "app.log.1", range(5, 8))
        write(path, range(8, 10), mode="w")
        assert wait_until(lambda: len(sender.items) == 10)
        path.write_text("")
        assert wait_until(lambda: state.files.get(str(path), {}).get("offset") == 0)
        write(path, range(10, 12))
        write(late, range(12, 14))
        assert wait_until(lambda: len(sender.items) == 14)
    finally:
        shipper.stop.set()
        thread.join(TIMEOUT)
    assert shipper.finish() == 0
    assert ids(sender) == list(range(14))
    saved = json.loads((tmp_path / "state.json").read_text())["files"]
    assert saved[str(path)]["offset"] == path.stat().st_size
    assert saved[str(late)]["offset"] == late.stat().st_size


def test_a_broken_state_file_is_a_clear_error(tmp_path: Path) -> None:

    bad = tmp_path / "state.json"
    bad.write_text("{not json")
    with pytest.raises(SystemExit, match="cannot read the state file"):
        StateFile(str(bad))
    bad.write_text('{"files": {"/x": {"dev": 1}, "/y": {"dev": 1, "ino": 2, "offset": 3}}}')
    assert StateFile(str(bad)).files == {"/y": {"dev": 1, "ino": 2, "offset": 3}}


def test_long_lines_are_read_whole_and_giant_ones_in_pieces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bucket_logging._cli import logfiles as _logfiles

    monkeypatch.setattr(_logfiles, "CHUNK_BYTES", 64)
    monkeypatch.setattr(_logfiles, "MAX_LINE_BYTES", 1000)
    path = tmp_path / "a.log"
    long = json.dumps({"bucket_event": "E", "user_id": 1, "pad": "x" * 500})
    giant = json.dumps({"bucket_event": "E", "user_id": 2, "pad": "x" * 3000})
    path.write_text(f"{long}\n{giant}\n{line(3)}")
    sender = FakeSender()
    shipper = Shipper(JsonLines(sender=sender))
    shipper.ship_files([str(path)])
    assert shipper.finish() == 0
    assert ids(sender) == [1, 3]  # the giant line was skipped, in pieces
    assert shipper.counts.skipped >= 2


def test_a_file_truncated_and_rewritten_while_down_is_read_from_the_start(
    tmp_path: Path,
) -> None:
    path = tmp_path / "app.log"
    write(path, range(3))
    f = LogFile.open(str(path))
    f.read_lines()
    state = StateFile(str(tmp_path / "state.json"))
    state.save({str(path): f.entry()})
    f.close()
    with open(path, "r+") as fh:  # copytruncate, then more lines than before
        fh.truncate(0)
    write(path, range(10, 15))
    _, current = resume(str(path), StateFile(str(tmp_path / "state.json")))
    assert current is not None
    assert [json.loads(x)["user_id"] for x in current.read_lines()] == list(range(10, 15))
    current.close()
    # the same file, grown: resumed where it was
    f = LogFile.open(str(path))
    f.read_lines()
    state.save({str(path): f.entry()})
    f.close()
    write(path, range(15, 17))
    _, current = resume(str(path), StateFile(str(tmp_path / "state.json")))
    assert current is not None
    assert [json.loads(x)["user_id"] for x in current.read_lines()] == [15, 16]
    current.close()
