"""Recovery: the journals of processes that ended, taken over and stored in the spool.

Runs on the spool's worker thread, one segment a step, so that the sender keeps
storing and sending its own batches meanwhile and the application's start-up never
waits. A journal is taken over when every one of its segments can be ``flock``-ed
(its writer is gone: the kernel released its locks) and, when it was written on
another host, once its heartbeat is older than :data:`~.store.LEASE_SECONDS`.

The records after the journal's mark are stored in batches, each with the journal's
new mark in the same transaction (:mod:`.marks`), so a recovery cut short by another
crash goes on where it stopped, never storing a record twice. Damaged
records (a torn last write, a flipped byte) are skipped, counted and reported;
every intact record is recovered.

May import: :mod:`bucket_logging._items`, :mod:`bucket_logging._runtime`.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
import zlib
from collections import deque
from collections.abc import Callable
from typing import Final

from .._items.item import MAX_BODY_BYTES
from .._runtime.diagnostics import report
from .journal import (
    HEADER,
    HEADER_BYTES,
    NOTE_MAGIC,
    RECORD,
    RECORD_MAGIC,
    SEGMENT_MAGIC,
    host_id,
    read_attempted,
    read_checkpoint,
)
from .upkeep import check_private

__all__ = ["Recovery", "Step", "parse"]

_MAGIC_BYTES: Final = RECORD.pack(RECORD_MAGIC, 0, 0, 0)[:4]
_MASK: Final = 0xFFFFFFFF

#: What one step did: (items stored, damaged records, more to do).
Step = tuple[int, int, bool]

#: Stores one batch of a journal with the journal's new mark, in one transaction; the
#: last argument says whether it may have been sent already (counted as redelivered).
Insert = Callable[[list[bytes], str, int, bool], None]


def parse(
    data: bytes, start: int, after: int, last: bool = False
) -> tuple[list[tuple[int, bytes]], int, int]:
    """The intact records of a segment's ``data`` from ``start`` whose sequence is at
    least ``after``: ([(sequence, bytes)], damaged records, damaged bytes). In the
    ``last`` segment, the items of a request begun and never ended are left out."""
    records: list[tuple[int, bytes]] = []
    damaged = skipped = 0
    begun: int | None = None  # where the open request's items start in records
    unpack = RECORD.unpack_from
    size = len(data)
    off = start
    view = memoryview(data)
    while off + 20 <= size:
        magic, n, seq, crc = unpack(data, off)
        end = off + 20 + n
        if (
            magic in (RECORD_MAGIC, NOTE_MAGIC)
            and end <= size
            and zlib.crc32(view[off + 20 : end], (seq ^ n) & _MASK) == crc
        ):
            if magic == NOTE_MAGIC:
                begun = len(records) if data[off + 20 : end] == b"begin" else None
            elif seq >= after:
                records.append((seq, data[off + 20 : end]))
            off = end
            continue
        following = data.find(_MAGIC_BYTES, off + 1)
        stop = size if following < 0 else following
        if data.count(0, off, stop) != stop - off:  # not the zeros after the last record
            damaged += 1
            skipped += stop - off
        if following < 0:
            break
        off = following
    if last and begun is not None:
        del records[begun:]  # never answered: its sender retries it
    return records, damaged, skipped


class Recovery:
    """Finds dead journals in a spool directory and stores what they hold.

    Args:
        directory: the spool directory.
        dest: this sender's destination id (other destinations' journals are left).
        own: this process's journal id (never taken), or None.
        batch_items: the most items a stored batch holds.
        lease: seconds of silence after which another host's journal is taken.
    """

    def __init__(
        self, directory: str, dest: str, own: str | None, batch_items: int, lease: float
    ) -> None:
        self.directory = directory
        self.dest = dest
        self.own = own
        self.batch_items = batch_items
        self.lease = lease
        self.host = host_id()
        self._held: list[tuple[str, int]] = []  # (path, fd) of the journal being recovered
        self._checkpoint = 0
        self._attempted = 0  # records below it may have been sent (see Journal.attempt)
        self._records: deque[tuple[int, bytes]] | None = None  # of the segment at hand
        self._journal = ""
        self._stored = 0
        self._damaged = 0

    def step(
        self, insert: Insert, stored: Callable[[str], int], forget: Callable[[str], None]
    ) -> Step:
        """Store one batch of a dead journal with ``insert`` (so that the worker thread is
        soon free for the sender's own work); ``stored`` tells how far a journal is
        stored already, ``forget`` drops that once it is all recovered."""
        if not self._held and not self._take_next(stored):
            return 0, 0, False
        path, fd = self._held[0]
        damaged = 0
        if self._records is None:
            self._records, damaged = self._read_segment(path, fd)
        count = self._store_batch(insert)
        if not self._records:  # this segment is done
            self._records = None
            self._held.pop(0)
            _remove(path, fd)
        self._stored += count
        self._damaged += damaged
        if not self._held:
            forget(self._journal)
            self._done()
        return count, damaged, True

    def release(self) -> None:
        """Let go of a journal taken (the sender stops): another sender finishes it."""
        held, self._held = self._held, []
        self._records = None
        for _, fd in held:
            with contextlib.suppress(OSError):
                os.close(fd)

    # -- internals -------------------------------------------------------------------

    def _groups(self) -> list[tuple[float, str, list[str]]]:
        groups: dict[str, list[str]] = {}
        for name in os.listdir(self.directory):
            if not (name.startswith("journal-") and name.endswith(".blj")):
                continue
            journal = name[len("journal-") : -len(".blj")].rpartition("-")[0]
            if journal and journal != self.own:
                groups.setdefault(journal, []).append(name)
        found = []
        for journal, names in groups.items():
            names.sort()  # by first sequence (zero-padded)
            paths = [os.path.join(self.directory, name) for name in names]
            try:
                oldest = os.stat(paths[0]).st_mtime
            except OSError:
                continue
            found.append((oldest, journal, paths))
        found.sort()
        return found

    def _take_next(self, stored: Callable[[str], int]) -> bool:
        for _, journal, paths in self._groups():
            held = self._lock_all(paths)
            if held is None:
                continue
            checkpoint = self._accept(held)
            if checkpoint is not None:  # the spool file's mark is the exact one
                checkpoint = max(checkpoint, stored(journal))
            if checkpoint is None:
                for _, fd in held:
                    os.close(fd)
                continue
            self._held = held
            self._checkpoint = checkpoint
            self._journal = journal
            self._stored = self._damaged = 0
            return True
        return False

    def _lock_all(self, paths: list[str]) -> list[tuple[str, int]] | None:
        """Every segment locked (its writer is gone), or None (all released)."""
        held: list[tuple[str, int]] = []
        try:
            for path in paths:
                try:
                    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
                except FileNotFoundError:
                    continue  # settled and removed meanwhile
                held.append((path, fd))
                check_private(path, "file")
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if os.fstat(fd).st_ino != os.stat(path).st_ino:
                    raise FileNotFoundError(path)  # removed and replaced meanwhile
        except OSError:
            for _, fd in held:
                os.close(fd)
            return None
        return held or None

    def _accept(self, held: list[tuple[str, int]]) -> int | None:
        """The journal's checkpoint if it is ours to recover, else None."""
        checkpoint = 0
        newest_beat = 0.0
        foreign = False
        self._attempted = 0
        for path, fd in held:
            header = os.pread(fd, HEADER_BYTES, 0)
            if len(header) < HEADER_BYTES or header[:4] != SEGMENT_MAGIC:
                _set_aside(path, "its header is damaged or it is not a journal")
                return None
            _, _, dest, host, _, _ = HEADER.unpack_from(header)
            if dest.decode("ascii", "replace") != self.dest:
                return None  # another destination's: left for its sender
            point, beat = read_checkpoint(header)
            newest_beat = max(newest_beat, beat)
            if point is not None:
                checkpoint = max(checkpoint, point)
            self._attempted = max(self._attempted, read_attempted(header))
            foreign = foreign or host.decode("ascii", "replace") != self.host
        if foreign and time.time() - newest_beat < self.lease:
            return None  # another host's, alive as far as we can tell
        return checkpoint

    def _read_segment(self, path: str, fd: int) -> tuple[deque[tuple[int, bytes]], int]:
        """The records of a segment after the checkpoint, and how many were damaged."""
        data = os.pread(fd, os.fstat(fd).st_size, 0)
        empty = b"\0" * 4  # a segment made ahead and never written to
        last = all(os.pread(later, 4, HEADER_BYTES) == empty for _, later in self._held[1:])
        records, damaged, skipped = parse(data, HEADER_BYTES, self._checkpoint, last)
        if damaged:
            report(
                "journal-damaged",
                "bucket_logging: the journal segment %s has %d damaged record(s) (%d bytes: "
                "a write cut short by a crash, or a disk fault); they are skipped, every "
                "intact record is recovered",
                path,
                damaged,
                skipped,
                level=logging.ERROR,
            )
        return deque(records), damaged

    def _store_batch(self, insert: Insert) -> int:
        """Store the next batch of the segment's records, with the journal's new mark."""
        records = self._records
        if not records:
            return 0
        batch: list[bytes] = []
        size = 2  # "[" and "]"
        seq = 0
        attempted = records[0][0] < self._attempted
        while records and len(batch) < self.batch_items:
            if batch and size + len(records[0][1]) + 1 > MAX_BODY_BYTES:
                break
            seq, body = records.popleft()
            batch.append(body)
            size += len(body) + 1
        insert(batch, self._journal, seq + 1, attempted)  # with the mark: never stored twice
        self._checkpoint = seq + 1
        return len(batch)

    def _done(self) -> None:
        if self._stored or self._damaged:
            report(
                "journal-recovered",
                "bucket_logging: recovered %d item(s) from the journal %s of a process that "
                "ended (%d damaged record(s) skipped); delivering them",
                self._stored,
                self._journal,
                self._damaged,
                level=logging.INFO,
            )


def _remove(path: str, fd: int) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
    with contextlib.suppress(OSError):
        os.close(fd)


def _set_aside(path: str, why: str) -> None:
    """Keep a journal file that cannot be read, out of the way, and say so."""
    with contextlib.suppress(OSError):
        os.rename(path, path + ".damaged")
    report(
        "journal-damaged",
        "bucket_logging: the journal file %s was set aside (%s), as %s.damaged",
        path,
        why,
        path,
        level=logging.ERROR,
    )
