"""The journal: every item a log call queued, in the kernel's hands before the call returns.

A sender with a spool keeps one journal per process: append-only segment files
(``journal-<id>-<n>.blj``) in the spool directory, each memory-mapped (``MAP_SHARED``).
A log call copies its item's encoded bytes into the mapping as one framed record,
under one short lock, on its own thread: no system call, no fsync. The page cache
outlives the process, so a record is safe from SIGKILL, an OOM kill or a crash as
soon as the copy is done (power loss needs the disk: see the docs' "The spool").

Record: ``magic, length, sequence, crc32`` (20 bytes, little-endian) then the bytes;
the checksum covers the bytes, seeded with the sequence and length, so a torn last
record, a flipped byte or a bad length is detected (recovery resynchronises on the
next magic). Segment header (128 bytes): magic, version, destination (a hash of the
tracking key), host, pid, first sequence, the checkpoint with its checksum, a
heartbeat, and *attempted* with its checksum (records below it may have been sent
before they were stored: a recovery counts them as possible duplicates).

Settlement: the engine settles batches (stored in SQLite, delivered, or dropped) in
the order they were queued, so one number is enough: :meth:`Journal.checkpoint` says
"every record below sequence N is in SQLite (or delivered, or dropped)". A segment
whose records all lie below it is deleted; at a clean close everything is, and the
files go.

Ownership: the writer holds ``flock`` on each of its segments; the kernel releases
it when the process dies, so the next sender on the same host takes a dead journal
over at once (:mod:`.recovery`); from another host, once the heartbeat is older than
a lease. A forked child never writes to nor keeps its parent's journal: it opens
its own.

May import: :mod:`bucket_logging._runtime`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import mmap
import os
import secrets
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable
from typing import Final

from .._runtime.diagnostics import report
from .upkeep import check_private

__all__ = [
    "HEADER",
    "HEADER_BYTES",
    "NOTE_MAGIC",
    "RECORD",
    "RECORD_MAGIC",
    "SEGMENT_BYTES",
    "SEGMENT_MAGIC",
    "Journal",
    "host_id",
    "read_attempted",
    "read_checkpoint",
    "record_crc",
    "write_checkpoint",
]

#: A segment's size: about 16,000 items of 250 bytes; reserved on disk when it is made
#: (a full disk is found then, never as a SIGBUS in a log call).
SEGMENT_BYTES: Final = 4 << 20
SEGMENT_MAGIC: Final = b"BLJ1"
VERSION: Final = 1
#: magic, version, destination (32), host (32), pid, first sequence
HEADER: Final = struct.Struct("<4sI32s32sIQ")
HEADER_BYTES: Final = 128
_FIRST: Final = struct.Struct("<Q")
_FIRST_AT: Final = 76  # the first sequence, in HEADER
#: Maps a new segment's pages in when it is made.
_POPULATE: Final = getattr(mmap, "MAP_POPULATE", 0)
#: checkpoint, its crc32, heartbeat (wall clock)
_CHECKPOINT: Final = struct.Struct("<QId")
_CHECKPOINT_AT: Final = 96
#: attempted (every record below it may have been sent: see Journal.attempt), its crc32
_ATTEMPTED: Final = struct.Struct("<QI")
_ATTEMPTED_AT: Final = 116
RECORD_MAGIC: Final = 0x9AE70CB1  # b"\xb1\x0c\xe7\x9a": not UTF-8, so rare in JSON
#: A note between records, not an item (the relay's request bounds: see note()).
NOTE_MAGIC: Final = 0x9AE70CB2
RECORD: Final = struct.Struct("<IIQI")  # magic, length, sequence, crc32
_pack_record = RECORD.pack_into
_crc32 = zlib.crc32
_MASK: Final = 0xFFFFFFFF


def host_id() -> str:
    """This machine, as journals name it (a hash of the host name)."""
    return hashlib.sha256(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:32]


def record_crc(body: bytes | memoryview, seq: int, length: int) -> int:
    """The checksum of a record: its bytes, seeded with its sequence and length."""
    return zlib.crc32(body, (seq ^ length) & _MASK)


def _number_crc(number: int) -> int:
    """The checksum that guards a number in a segment header."""
    return zlib.crc32(number.to_bytes(8, "little"))


def write_checkpoint(buf: mmap.mmap | bytearray, checkpoint: int) -> None:
    """Write ``checkpoint`` (and a fresh heartbeat) into a segment header."""
    _CHECKPOINT.pack_into(buf, _CHECKPOINT_AT, checkpoint, _number_crc(checkpoint), time.time())


def _write_attempted(buf: mmap.mmap | bytearray, attempted: int) -> None:
    _ATTEMPTED.pack_into(buf, _ATTEMPTED_AT, attempted, _number_crc(attempted))


def read_attempted(header: bytes) -> int:
    """How far a segment header says records may have been sent (0: none, or damaged)."""
    attempted, crc = _ATTEMPTED.unpack_from(header, _ATTEMPTED_AT)
    return attempted if _number_crc(attempted) == crc else 0


def read_checkpoint(header: bytes) -> tuple[int | None, float]:
    """(checkpoint or None when it is damaged, heartbeat) of a segment header."""
    checkpoint, crc, heartbeat = _CHECKPOINT.unpack_from(header, _CHECKPOINT_AT)
    if _number_crc(checkpoint) != crc:
        return None, heartbeat
    return checkpoint, heartbeat


class _Segment:
    __slots__ = ("fd", "first", "mm", "path")

    def __init__(self, path: str, fd: int, mm: mmap.mmap, first: int) -> None:
        self.path = path
        self.fd = fd
        self.mm = mm
        self.first = first


class Journal:
    """This process's journal in a spool directory.

    Args:
        directory: the spool directory.
        dest: the destination id (a hash of the tracking key): only a sender of the
            same destination recovers it.
        segment_bytes: the size of a segment.
    """

    def __init__(self, directory: str, dest: str, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.directory = directory
        self.dest = dest
        self.segment_bytes = segment_bytes
        self.host = host_id()
        #: this journal's id (its files' names start with ``journal-<id>-``)
        self.id = f"{os.getpid()}-{secrets.token_hex(6)}"
        #: guards the writes (re-entrant: a signal handler that logs while this
        #: thread writes is told to defer, never waits for itself)
        self.lock = threading.RLock()
        self._busy = False
        self._segments: list[_Segment] = []
        self._spare: _Segment | None = None  # the next segment, made ahead (prepare)
        self._index = 0  # the last segment's number (its file name)
        self._mm: mmap.mmap | None = None
        self._off = 0
        self._size = 0
        self._seq = 0
        self._checkpoint = 0
        self._attempted = 0
        self.failed = False

    def __repr__(self) -> str:
        return f"<Journal {self.id} seq={self._seq} checkpoint={self._checkpoint}>"

    @property
    def written(self) -> int:
        """Records written so far (the next record's sequence)."""
        return self._seq

    @property
    def settled(self) -> int:
        """The checkpoint: every record below it is settled."""
        return self._checkpoint

    # -- writing (any thread) -----------------------------------------------------------

    def open(self) -> None:
        """Create the directory if need be and the first segment (raises OSError)."""
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        check_private(self.directory, "directory")
        with self.lock:
            self._roll(prefault=True)  # (the sender's start: its log calls do not fault)

    def append(self, body: bytes, then: Callable[[bytes], object]) -> bool:
        """Write ``body`` as a record, then call ``then(body)`` under the same lock (so
        the queue holds items in the journal's order). False, without calling ``then``,
        when this thread is already inside (a signal handler): the caller defers it.
        Never raises: a journal that cannot be written is given up (reported) and the
        item goes on in memory only."""
        lock = self.lock
        if not lock.acquire(False):
            while not lock.acquire(False):
                time.sleep(0)  # the GIL goes to the writer (see queue._acquire_contended)
        if self._busy:
            lock.release()
            return False
        self._busy = True
        try:
            mm = self._mm
            n = len(body)
            off = self._off
            end = off + 20 + n
            if mm is not None and end <= self._size:  # the everyday case, inline
                seq = self._seq
                _pack_record(mm, off, RECORD_MAGIC, n, seq, _crc32(body, (seq ^ n) & _MASK))
                mm[off + 20 : end] = body
                self._off = end
                self._seq = seq + 1
            else:
                self.write_locked(body)
            then(body)
        except Exception as exc:  # pragma: no cover - defensive: never raise in a log call
            self._fail(exc)
        finally:
            self._busy = False
            lock.release()
        return True

    def write_locked(self, body: bytes) -> None:
        """Write one record; the caller holds :attr:`lock`. Never raises."""
        mm = self._mm
        if mm is None:
            return
        n = len(body)
        off = self._off
        end = off + 20 + n
        try:
            if end > self._size:
                self._roll()
                mm = self._mm
                if mm is None:
                    return
                off = self._off
                end = off + 20 + n
                if end > self._size:
                    self._fail(ValueError(f"an item of {n} bytes does not fit a segment"))
                    return
            seq = self._seq
            RECORD.pack_into(mm, off, RECORD_MAGIC, n, seq, zlib.crc32(body, (seq ^ n) & _MASK))
            mm[off + 20 : end] = body
        except (OSError, ValueError, TypeError) as exc:
            self._fail(exc)
            return
        self._off = end
        self._seq = seq + 1

    def note(self, tag: bytes) -> None:
        """Write a note (not an item: it takes no sequence number). The relay brackets
        each request's items with ``b"begin"`` and ``b"end"``; recovery leaves out the
        items of a request begun and never ended in the last segment (its process died
        before answering: the pipeline sends it again). Never raises."""
        with self.lock:
            mm = self._mm
            n = len(tag)
            off = self._off
            end = off + 20 + n
            if mm is None or self._busy or end > self._size:
                return  # (a note lost to a roll costs at most a duplicate)
            seq = self._seq
            _pack_record(mm, off, NOTE_MAGIC, n, seq, _crc32(tag, (seq ^ n) & _MASK))
            mm[off + 20 : end] = tag
            self._off = end

    def prepare(self) -> None:
        """Make the next segment ahead, on the sender's thread (reserved, mapped, its
        pages faulted in), so that the log call that fills a segment only switches."""
        with self.lock:
            if self._spare is not None or self._mm is None or self.failed:
                return
            self._index += 1
            index = self._index
        try:
            spare = self._new_segment(index, 0, prefault=True)
        except (OSError, ValueError):
            return  # the log call that needs it tries again (and reports)
        with self.lock:
            if self._spare is None and self._mm is not None:
                self._spare = spare
                return
        _remove(spare)

    def _roll(self, *, prefault: bool = False) -> None:
        """Start a new segment (the lock is held); give the journal up on failure."""
        spare, self._spare = self._spare, None
        try:
            if spare is None:
                self._index += 1
                spare = self._new_segment(self._index, self._seq, prefault=prefault)
            else:  # made ahead: it starts here
                spare.first = self._seq
                _FIRST.pack_into(spare.mm, _FIRST_AT, self._seq)
                write_checkpoint(spare.mm, self._checkpoint)
                _write_attempted(spare.mm, self._attempted)
            segment = spare
        except (OSError, ValueError) as exc:
            self._fail(exc)
            return
        old = self._mm
        self._segments.append(segment)
        self._mm = segment.mm
        self._off = HEADER_BYTES
        self._size = len(segment.mm)
        if old is not None:
            with contextlib.suppress(BufferError, ValueError):
                old.close()  # its fd stays open: the flock says the file is ours

    def _new_segment(self, index: int, first: int, *, prefault: bool = False) -> _Segment:
        name = f"journal-{self.id}-{index:012d}.blj"
        path = os.path.join(self.directory, name)
        temp = os.path.join(self.directory, f".{name}.tmp")
        fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.posix_fallocate(fd, 0, self.segment_bytes)  # ENOSPC now, not SIGBUS later
            if prefault:
                # Written once through the file, before it is mapped (one system call,
                # without the GIL): its pages are then in the page cache, dirty, and the
                # log calls' first writes to them fault cheaply if at all.
                os.pwrite(fd, bytes(self.segment_bytes), 0)
            mm = mmap.mmap(
                fd,
                self.segment_bytes,
                mmap.MAP_SHARED | _POPULATE,
                mmap.PROT_READ | mmap.PROT_WRITE,
            )
            HEADER.pack_into(
                mm,
                0,
                SEGMENT_MAGIC,
                VERSION,
                self.dest.encode("ascii"),
                self.host.encode("ascii"),
                os.getpid(),
                first,
            )
            write_checkpoint(mm, self._checkpoint)
            _write_attempted(mm, self._attempted)
            os.rename(temp, path)  # found by recovery only once complete, and flocked
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        return _Segment(path, fd, mm, first)

    def _fail(self, exc: BaseException) -> None:
        """Give the journal up: what it holds stays for the next sender; items go on in
        memory only (a SIGKILL from now on loses what was not stored yet)."""
        self.failed = True
        self._mm = None
        report(
            "journal",
            "bucket_logging: the spool's journal in %s cannot be written (%s: %s); items "
            "reach the spool only when their batch is stored, and a killed process loses "
            "what was not stored yet",
            self.directory,
            type(exc).__name__,
            exc,
            level=logging.ERROR,
        )

    # -- settling (the sender's thread) ---------------------------------------------------

    def checkpoint(self, mark: int) -> None:
        """Every record below sequence ``mark`` is settled: say so in the header, and
        delete the segments that hold only such records."""
        done: list[_Segment] = []
        with self.lock:
            if self.failed or mark <= self._checkpoint or self._mm is None:
                return
            mark = min(mark, self._seq)
            self._checkpoint = mark
            with contextlib.suppress(ValueError, OSError):
                write_checkpoint(self._mm, mark)
            segments = self._segments
            while len(segments) > 1 and segments[1].first <= mark:
                done.append(segments.pop(0))
        for segment in done:
            _remove(segment)

    def attempt(self, mark: int) -> None:
        """Records below ``mark`` may be sent now (a batch's first request, before it
        is stored): said in the header, so that a recovery counts them as possible
        duplicates."""
        with self.lock:
            if self.failed or mark <= self._attempted or self._mm is None:
                return
            self._attempted = mark
            with contextlib.suppress(ValueError, OSError):
                _write_attempted(self._mm, mark)

    def sync(self) -> None:
        """Make every record written so far durable (fsync: for a power loss; a killed
        process needs nothing). Raises OSError."""
        with self.lock:
            fds = [segment.fd for segment in self._segments]
        for fd in fds:
            os.fsync(fd)  # (writes back the pages dirtied through the mapping too)
        dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)  # the segments' names
        finally:
            os.close(dir_fd)

    def heartbeat(self) -> None:
        """Renew the heartbeat (a journal of another host is taken over by its age)."""
        with self.lock:
            if self._mm is not None:
                with contextlib.suppress(ValueError, OSError):
                    write_checkpoint(self._mm, self._checkpoint)

    def close(self) -> None:
        """At the sender's stop: delete the files when everything is settled, else keep
        them (unlocked) for the next sender."""
        with self.lock:
            segments, self._segments = self._segments, []
            mm, self._mm = self._mm, None
            spare, self._spare = self._spare, None
            settled = self._checkpoint >= self._seq and not self.failed
        if spare is not None:
            _remove(spare)  # never written to
        if mm is not None:
            with contextlib.suppress(BufferError, ValueError):
                mm.close()
        for segment in segments:
            if settled:
                _remove(segment)
            else:
                with contextlib.suppress(OSError):
                    os.close(segment.fd)

    def abandon(self) -> None:
        """In a forked child: let go of the parent's journal without touching its files
        (closing the inherited descriptors, so the parent's death frees them)."""
        segments, self._segments = self._segments, []
        if self._spare is not None:
            segments.append(self._spare)
            self._spare = None
        mm, self._mm = self._mm, None
        self.lock = threading.RLock()
        self._busy = False
        if mm is not None:
            with contextlib.suppress(BufferError, ValueError):
                mm.close()
        for segment in segments:
            with contextlib.suppress(OSError):
                os.close(segment.fd)


def _remove(segment: _Segment) -> None:
    with contextlib.suppress(OSError):
        os.unlink(segment.path)
    with contextlib.suppress(OSError):
        os.close(segment.fd)
    with contextlib.suppress(BufferError, ValueError):
        segment.mm.close()
