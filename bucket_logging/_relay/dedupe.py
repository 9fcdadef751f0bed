"""What the relay has already taken: retried bodies answered 200 without tracking them
again, and the group commit of ``--fsync``.

A pipeline re-sends a batch whose answer it did not get (the OpenTelemetry Collector
after a timeout or a reset connection; Vector, Fluent Bit and syslog-ng after an
unanswered request), and the API has no idempotency key: tracked again, every item
would be counted twice. :class:`RetryWindow` remembers the SHA-256 of each body the
relay tracked, for ``--dedupe-window`` seconds (10 minutes by default, longer than
the pipelines' retries), and answers an identical body 200 without tracking it. The
hash is of the body **once decompressed** (with the path's kind): the same batch is
recognised whether a retry is compressed again, differently, or not at all; a body
differing by one byte is a new batch.

With a spool the digests are appended to files in the spool directory (one per window
interval, ``relay-bodies-<n>.bin``, 40 bytes a body), written after the body's items
are in the journal and before the 200: a SIGKILL and a restart on the same spool
remember them, and ``--workers`` processes sharing the spool see each other's (each
reads what the others appended). A kill between the journal and the digest sends the
batch again when retried (never loses it). Without a spool, the window is in memory.

:class:`GroupCommit`: with ``--fsync`` the 200 waits until the journal (and the digest
file) is fsynced; concurrent requests share one fsync per short window.

May import: :mod:`bucket_logging._runtime`.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import os
import struct
import threading
import time
from collections.abc import Callable
from typing import Final

__all__ = ["DEDUPE_WINDOW", "GroupCommit", "RetryWindow"]

#: The default window: longer than the pipelines' longest retries (the Collector's
#: sending queue retries for 5 minutes by default).
DEDUPE_WINDOW: Final = 600.0
#: The most digests remembered in memory (the oldest are forgotten first).
MAX_DIGESTS: Final = 500_000
_RECORD: Final = struct.Struct("<32sd")  # digest, when


class RetryWindow:
    """The bodies tracked within the last ``window`` seconds.

    Args:
        directory: the spool directory (the digests survive a restart), or None.
        window: seconds a body is remembered (0: never).
    """

    def __init__(self, directory: str | None, window: float) -> None:
        self.directory = directory
        self.window = window
        self._lock = threading.Lock()
        self._seen: collections.OrderedDict[bytes, float] = collections.OrderedDict()
        self._busy: set[bytes] = set()
        self._read: dict[int, int] = {}  # interval -> bytes of its file read so far
        self._fd: int | None = None
        self._fd_interval = -1
        #: bodies answered 200 without being tracked again
        self.retried = 0

    @staticmethod
    def digest(kind: str, body: bytes) -> bytes:
        """The key of a decompressed body posted to ``kind`` (its path)."""
        return hashlib.sha256(kind.encode() + b"\0" + body).digest()

    def begin(self, digest: bytes) -> str:
        """ "new" (track it, then :meth:`done` and :meth:`end`), "seen" (answer 200,
        counted) or "busy" (an identical body is being tracked: ask to retry later)."""
        if self.window <= 0:
            return "new"
        now = time.time()
        with self._lock:
            self._catch_up(now)
            when = self._seen.get(digest)
            if when is not None and now - when < self.window:
                self.retried += 1
                return "seen"
            if digest in self._busy:
                return "busy"
            self._busy.add(digest)
        return "new"

    def done(self, digest: bytes) -> None:
        """The body's items are all queued (in the journal): remember it."""
        if self.window <= 0:
            return
        now = time.time()
        with self._lock:
            self._remember(digest, now)
            if self.directory is not None:
                with contextlib.suppress(OSError):
                    fd = self._file(now)
                    os.write(fd, _RECORD.pack(digest, now))  # O_APPEND: one write, atomic

    def end(self, digest: bytes) -> None:
        """The request that began ``digest`` ended (tracked or not)."""
        with self._lock:
            self._busy.discard(digest)

    def sync(self) -> None:
        """fsync the digests' file (``--fsync``)."""
        fd = self._fd
        if fd is not None:
            with contextlib.suppress(OSError):
                os.fsync(fd)

    # -- internals (the lock is held) -------------------------------------------------

    def _remember(self, digest: bytes, when: float) -> None:
        seen = self._seen
        seen[digest] = when
        seen.move_to_end(digest)
        while len(seen) > MAX_DIGESTS:
            seen.popitem(last=False)

    def _path(self, interval: int) -> str:
        assert self.directory is not None
        return os.path.join(self.directory, f"relay-bodies-{interval}.bin")

    def _file(self, now: float) -> int:
        interval = int(now // self.window)
        if self._fd is None or self._fd_interval != interval:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            os.makedirs(self.directory or ".", mode=0o700, exist_ok=True)
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
            self._fd = os.open(self._path(interval), flags, 0o600)
            self._fd_interval = interval
            for name in os.listdir(self.directory):  # intervals gone by: forgotten
                if name.startswith("relay-bodies-") and name.endswith(".bin"):
                    with contextlib.suppress(ValueError, OSError):
                        if int(name[13:-4]) < interval - 1:
                            os.unlink(os.path.join(self.directory or ".", name))
        return self._fd

    def _catch_up(self, now: float) -> None:
        """Read what this and other processes appended since the last look."""
        if self.directory is None:
            return
        interval = int(now // self.window)
        for n in (interval - 1, interval):
            try:
                with open(self._path(n), "rb") as f:
                    f.seek(self._read.get(n, 0))
                    data = f.read()
            except OSError:
                continue
            usable = len(data) - len(data) % _RECORD.size  # a record being written waits
            for digest, when in _RECORD.iter_unpack(data[:usable]):
                if now - when < self.window:
                    self._remember(digest, when)
            self._read[n] = self._read.get(n, 0) + usable


class GroupCommit:
    """One ``sync()`` for the requests that wait at about the same moment.

    Args:
        sync: makes everything written so far durable (fsync); may raise OSError.
        window: seconds the first waiter waits for others to join its fsync.
    """

    def __init__(self, sync: Callable[[], None], window: float = 0.002) -> None:
        self._sync = sync
        self.window = window
        self._cond = threading.Condition()
        self._requested = 0
        self._done = 0
        self._syncing = False
        self._failed = (0, 0)  # the tickets of the last sync that failed
        #: fsyncs made, and requests they covered
        self.syncs = 0
        self.commits = 0

    def commit(self) -> bool:
        """Return once a sync that started after this call covered what this thread
        wrote before it: True, or False when that sync failed."""
        cond = self._cond
        with cond:
            self._requested += 1
            self.commits += 1
            mine = self._requested
            while self._done < mine:
                if self._syncing:
                    cond.wait()
                    continue
                self._syncing = True
                target = mine
                cond.release()
                try:
                    time.sleep(self.window)  # others join this one
                    with cond:
                        target = self._requested
                    self._sync()
                except OSError:
                    self._failed = (self._done, target)  # the tickets it covered
                finally:
                    cond.acquire()
                    self._syncing = False
                    self._done = max(self._done, target)
                    self.syncs += 1
                    cond.notify_all()
            low, high = self._failed
            return not low < mine <= high


def durability(
    sender: object, limits: object
) -> tuple[RetryWindow, GroupCommit | None, Callable[[bytes], None]]:
    """The relay's retry window, with ``--fsync`` its group commit, and how it notes a
    request's bounds in the spool's journal (a no-op without one), for the ``sender``
    (a :class:`~bucket_logging._relay.sender.RelaySender`) and its limits.

    Raises ValueError for ``--fsync`` without a spool (nothing to fsync)."""
    real = getattr(sender, "real", sender)
    config = getattr(real, "config", None)
    spool = getattr(config, "spool", None)
    directory = getattr(spool, "directory", None)
    window = float(getattr(limits, "dedupe_window", DEDUPE_WINDOW))
    retries = RetryWindow(directory, window)
    engine = getattr(real, "engine", None)
    side = getattr(getattr(engine, "spool", None), "journal", None)
    journal = getattr(side, "journal", None)
    note: Callable[[bytes], None] = journal.note if journal is not None else _nothing
    if not getattr(limits, "fsync", False):
        return retries, None, note
    if journal is None:
        raise ValueError("--fsync needs a spool (--spool-dir) whose journal could be opened")

    def sync() -> None:
        journal.sync()
        retries.sync()

    return retries, GroupCommit(sync), note


def _nothing(tag: bytes) -> None:
    """No journal: nothing to note."""
