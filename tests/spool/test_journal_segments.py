"""The journal's segments: written across many small ones (some made ahead), settled
ones deleted, and a dead journal's records recovered in order, each once."""

from __future__ import annotations

from pathlib import Path

from bucket_logging._spool.journal import Journal
from bucket_logging._spool.recovery import Recovery


def test_records_across_segments_are_recovered_in_order_after_the_mark(tmp_path: Path) -> None:
    spool = str(tmp_path)
    journal = Journal(spool, "d" * 32, segment_bytes=4096)
    journal.open()
    queued: list[bytes] = []
    bodies = [b'{"type":"event","userId":"%d"}' % i for i in range(1000)]
    for i, body in enumerate(bodies):
        assert journal.append(body, queued.append)
        if i % 150 == 149:
            journal.checkpoint(i - 100)  # stored up to here (the engine's part)
            journal.prepare()  # the next segment, made ahead
    assert queued == bodies
    segments = sorted(p.name for p in tmp_path.glob("*.blj"))
    assert int(segments[-1][-16:-4]) > 5  # it rolled over many segments
    assert len(segments) <= 4  # the settled ones were deleted as the mark moved
    mark = journal.settled
    assert mark == 899 - 100
    journal.abandon()  # the process dies: its locks go, its files stay

    stored: list[tuple[list[bytes], str, int]] = []
    forgotten: list[str] = []
    recovery = Recovery(spool, "d" * 32, None, 100, 60.0)
    while recovery.step(
        lambda batch, jid, m, _attempted: stored.append((batch, jid, m)),
        lambda jid: 0,
        forgotten.append,
    )[2]:
        pass
    got = [body for batch, _, _ in stored for body in batch]
    assert got == bodies[mark:]  # exactly the records after the mark, in order
    assert all(len(batch) <= 100 for batch, _, _ in stored)
    assert forgotten == [journal.id]
    assert not list(tmp_path.glob("*.blj"))
