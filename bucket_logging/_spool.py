"""The optional on-disk spool: nothing lost across crashes, deploys and long outages.

With ``spool_dir=`` (or env ``BUCKET_SPOOL_DIR``) a :class:`~bucket_logging.BulkSender`
writes every batch it takes off its in-memory queue to a SQLite database in that
directory before the batch's first request, and deletes it once the server accepted
it (2xx) or finally rejected it (a 400 for a single item). A batch the sender gives
up on (retries exhausted, the shutdown deadline, another 4xx) is released in the
spool instead of being dropped; the next sender that opens the spool (a restarted
process, another worker, or this one after a pause) delivers it, oldest first.

Why SQLite (the standard library's :mod:`sqlite3`) in WAL mode, one file
(``bucket_logging.spool.sqlite3``) per directory:

* it is always there (no dependency) and atomic: a batch is either wholly in the
  file or not at all, whatever kills the process (``kill -9``, OOM, power loss in
  the middle of a write); a hand-made append-only file would need its own
  framing, checksums and compaction to get there;
* several processes (gunicorn workers) can share one directory: SQLite's own file
  locks serialize writers, ``BEGIN IMMEDIATE`` makes a claim atomic, and a
  ``busy_timeout`` makes a writer wait for another instead of failing;
* WAL lets readers and a writer proceed at once and makes a commit one sequential
  append (``synchronous=NORMAL``: durable across process crashes, and across power
  loss up to the last checkpoint), so a batch costs about one small write.

One row is one batch (up to ``max_batch_items`` items, at most 2,000,000 bytes),
not one item: the items' encoded bytes are stored back to back with their sizes,
so that persisting and deleting 1,000 items is one insert and one
delete. The bytes live in a table of their own, so that claiming, renewing and
releasing (small updates) never rewrite them. Schema (version 1)::

    batches(id        INTEGER PRIMARY KEY AUTOINCREMENT  -- spool order, oldest first
            dest      TEXT     -- sha256 of the tracking key: a spool shared by
                               -- several apps never sends a batch to the wrong one
            created   REAL     -- time.time() when written, for spool_max_age
            items     INTEGER  -- how many items
            bytes     INTEGER  -- size of its payload
            owner     TEXT     -- "host/pid-namespace/pid/token" of the holder, or NULL
            lease     REAL     -- time.time() until which the owner's claim holds
            attempted INTEGER) -- 1: a request may have carried it (a replay may
                               -- then be a duplicate; counted as ``redelivered``)
    payloads(id       INTEGER PRIMARY KEY  -- the batch's id
             kinds    BLOB     -- a JSON list, one entry per item ("item"; 0.1.0
                               -- wrote each item's kind and needs the length)
             sizes    BLOB     -- JSON list of the items' sizes in bytes
             bodies   BLOB)    -- the items' encoded JSON objects, back to back

Ownership and leases. Every sender has an owner id: its host name, pid namespace,
pid and a random token. A batch it writes is owned by it from the start, with a
lease of :data:`LEASE_SECONDS`; the sender renews its leases every
:data:`MAINTENANCE_SECONDS` and is the only one that sends, releases or deletes
what it owns. A batch is free for anyone to claim when its owner is NULL (released
after a give-up or at exit) or its lease expired (the owner died or hangs); an
owner on the same host and pid namespace whose pid no longer exists is treated as
expired at once, so a ``kill -9``'d worker's batches are taken over within
seconds, not a minute. Claiming is one ``BEGIN IMMEDIATE`` transaction: select the
oldest free batch of this tracking key, set owner and lease. So each batch has at
most one live owner, and no batch is sent twice in normal operation; a duplicate
needs a process to die (or a request to end without an answer) after the server
accepted a batch and before its row was deleted, and is then counted.

Bounds. ``spool_max_bytes`` caps the database's used pages and ``spool_max_age``
the age of a batch; what exceeds either is deleted oldest first, counted
(``dropped["spool_full"]``, ``dropped["spool_expired"]``) and reported. A sender
deletes only batches it owns (not in flight) or free ones, never another live
process's.

Threads and memory. The caller's thread is untouched: it still only appends to
the in-memory queue. Every spool operation runs on one worker thread per sender
(started by the sender's thread), awaited by the sender's event loop, so the loop
keeps serving requests while SQLite waits on the disk or on another process's lock.
Batches waiting for a request slot keep their items in memory up to a quarter of
``max_queue_bytes`` (so that a burst is sent without reading it back); beyond that
they are read back from the file when their turn comes. A ``fork()`` waits (at most
:data:`FORK_WAIT_SECONDS`) until no spool operation runs, and the child opens its
own connection; the parent's is never touched in the child.

On disk. The directory must be on a local file system (SQLite's locks are not
reliable over NFS and the like). Besides the database (at most about
``spool_max_bytes`` of used pages), the WAL file holds up to about 4 MiB between
checkpoints and is trimmed back to 16 MiB; new directories are created ``0700``.

Failures. A spool that cannot be opened or used (garbage in the file, a read-only
or missing directory, a full disk, a lock held past the busy timeout) is reported
on the ``bucket_logging`` logger; the sender continues in memory only, delivering
what it still holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import itertools
import logging
import os
import queue
import secrets
import socket
import sqlite3
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar

import httpx
import orjson

from . import _diagnostics
from ._diagnostics import report
from ._exceptions import DeliveryError

if TYPE_CHECKING:
    from ._sender import BulkSender

__all__ = [
    "DEFAULT_SPOOL_MAX_AGE",
    "DEFAULT_SPOOL_MAX_BYTES",
    "ENV_SPOOL_DIR",
    "LEASE_SECONDS",
    "MAINTENANCE_SECONDS",
    "SPOOL_FILE",
    "SpoolStore",
]

#: The environment variable read when ``spool_dir`` is not given.
ENV_SPOOL_DIR: Final = "BUCKET_SPOOL_DIR"

#: The database's file name inside ``spool_dir``.
SPOOL_FILE: Final = "bucket_logging.spool.sqlite3"

#: Default ``spool_max_bytes``: 256 MiB, over a million typical items.
DEFAULT_SPOOL_MAX_BYTES: Final = 256 * 1024 * 1024

#: Default ``spool_max_age``: 7 days.
DEFAULT_SPOOL_MAX_AGE: Final = 7 * 24 * 3600.0

#: Seconds a sender's claim on a batch holds without renewal.
LEASE_SECONDS: Final = 60.0

#: Seconds between a sender's lease renewals, TTL and size checks and backlog look-ups.
MAINTENANCE_SECONDS: Final = 10.0

#: Seconds a spool write waits for another process's lock before failing.
BUSY_TIMEOUT: Final = 10.0

SCHEMA_VERSION: Final = "1"

_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS batches ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " dest TEXT NOT NULL,"
    " created REAL NOT NULL,"
    " items INTEGER NOT NULL,"
    " bytes INTEGER NOT NULL,"
    " owner TEXT,"
    " lease REAL NOT NULL DEFAULT 0,"
    " attempted INTEGER NOT NULL DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS payloads ("
    " id INTEGER PRIMARY KEY,"
    " kinds BLOB NOT NULL,"
    " sizes BLOB NOT NULL,"
    " bodies BLOB NOT NULL)",
    "CREATE TRIGGER IF NOT EXISTS batches_delete AFTER DELETE ON batches"
    " BEGIN DELETE FROM payloads WHERE id = old.id; END",
    "CREATE INDEX IF NOT EXISTS batches_dest ON batches (dest, id)",
    "CREATE INDEX IF NOT EXISTS batches_owner ON batches (owner)",
    "CREATE INDEX IF NOT EXISTS batches_created ON batches (created)",
)

# A batch another sender may take: released, or its owner's lease expired.
_FREE: Final = "(owner IS NULL OR lease < ?)"
# A batch this sender may delete for the size or age limit.
_EVICTABLE: Final = "(owner IS NULL OR lease < ? OR owner = ?)"

_T = TypeVar("_T")

#: (row id, owned by this sender, item count) of a batch deleted for a limit.
Evicted = tuple[int, bool, int]


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it exists, as another user's process
        return True
    return True


# fork(): connections inherited by a child must never be used or closed there
# (closing one could checkpoint or remove the parent's WAL): they are parked here.
# And SQLite's own mutexes would stay locked in the child if a worker was inside
# SQLite at that moment: a fork waits (briefly) until every worker is between two
# operations; if one stays busy, the child's senders do without a spool.
_live_stores: weakref.WeakSet[SpoolStore] = weakref.WeakSet()
_live_workers: weakref.WeakSet[_Worker] = weakref.WeakSet()
_inherited: list[sqlite3.Connection] = []
_tokens_in_process: set[str] = set()
_held_for_fork: list[threading.Lock] = []
_fork_state = {"busy": False, "unsafe_in_child": False}

#: Seconds a fork() waits for a spool worker to finish its current operation.
FORK_WAIT_SECONDS: Final = 2.0


def _before_fork() -> None:
    _fork_state["busy"] = False
    for worker in list(_live_workers):
        if worker.busy.acquire(timeout=FORK_WAIT_SECONDS):
            _held_for_fork.append(worker.busy)
        else:
            _fork_state["busy"] = True


def _after_fork_in_parent() -> None:
    while _held_for_fork:
        _held_for_fork.pop().release()


def _after_fork_in_child() -> None:
    _held_for_fork.clear()
    _live_workers.clear()
    _fork_state["unsafe_in_child"] = _fork_state["busy"]
    _tokens_in_process.clear()
    for store in list(_live_stores):
        store._abandon()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )


class SpoolStore:
    """The SQLite side of the spool: every method runs on the spool's worker thread.

    Args:
        directory: the spool directory (created if missing).
        dest: the destination id (a hash of the tracking key).
        max_bytes: the most bytes of used database pages.
        max_age: the most seconds a batch is kept.
    """

    def __init__(self, directory: str, dest: str, max_bytes: int, max_age: float) -> None:
        self.directory = directory
        self.path = os.path.join(directory, SPOOL_FILE)
        self.dest = dest
        self.max_bytes = max_bytes
        self.max_age = max_age
        self._host = socket.gethostname().replace("/", "_")
        self._pidns = _pid_namespace()
        self._token = secrets.token_hex(6)
        self.owner = f"{self._host}/{self._pidns}/{os.getpid()}/{self._token}"
        self._conn: sqlite3.Connection | None = None
        # An upper bound of the bytes in use, to skip measuring before most inserts.
        self._used_estimate = 0
        self._unmeasured = 0
        _tokens_in_process.add(self._token)
        _live_stores.add(self)

    def _abandon(self) -> None:
        if self._conn is not None:
            _inherited.append(self._conn)
            self._conn = None

    @property
    def conn(self) -> sqlite3.Connection:
        """The open connection."""
        if self._conn is None:
            raise sqlite3.OperationalError("the spool is not open")
        return self._conn

    # -- life cycle -----------------------------------------------------------------

    def open(self) -> tuple[int, int, list[Evicted], list[Evicted]]:
        """Create or open the database; return the backlog (batches, items) and evictions."""
        os.makedirs(self.directory, mode=0o700, exist_ok=True)  # new ones: this user's
        conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
        )
        try:
            # auto_vacuum only takes effect on a new, empty database; it lets the file
            # shrink again after an outage (see maintain()).
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                report(
                    "spool-wal",
                    "bucket_logging: the spool at %s cannot use WAL mode (journal_mode=%s); "
                    "it still works, more slowly",
                    self.path,
                    mode,
                    level=logging.INFO,
                )
            conn.execute("PRAGMA synchronous = NORMAL")
            # Many builds default to secure_delete=ON, which rewrites every freed page
            # with zeros: deleting a delivered batch would cost as much as writing it.
            # FAST still clears what it can without extra I/O.
            conn.execute("PRAGMA secure_delete = FAST")
            conn.execute("PRAGMA journal_size_limit = 16777216")
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.execute(
                    "INSERT OR IGNORE INTO meta (name, value) VALUES ('schema', ?)",
                    (SCHEMA_VERSION,),
                )
                row = conn.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone()
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            if row is None or row[0] != SCHEMA_VERSION:
                raise sqlite3.DatabaseError(
                    f"spool schema version {row[0] if row else None!r}, "
                    f"this version reads {SCHEMA_VERSION}"
                )
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        expired, full = self.maintain(frozenset())
        batches, items = self.backlog()
        return batches, items, expired, full

    def close(self) -> None:
        """Close the connection (the last one to close checkpoints the WAL)."""
        conn, self._conn = self._conn, None
        _tokens_in_process.discard(self._token)
        if conn is not None:
            conn.close()

    # -- the sender's own batches -------------------------------------------------------

    def insert(
        self, bodies: list[bytes], attempted: bool, protect: frozenset[int]
    ) -> tuple[int | None, list[Evicted]]:
        """Write one batch owned by this sender; None when no room could be made."""
        kinds_blob, sizes_blob, blob = _payload(bodies)
        size = len(blob) + len(kinds_blob) + len(sizes_blob)
        now = time.time()
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            evicted, fits = self._make_room(size, protect, now)
            row: int | None = None
            if fits:
                cursor = conn.execute(
                    "INSERT INTO batches (dest, created, items, bytes, owner, lease, attempted)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        self.dest,
                        now,
                        len(bodies),
                        size,
                        self.owner,
                        now + LEASE_SECONDS,
                        int(attempted),
                    ),
                )
                row = cursor.lastrowid
                conn.execute(
                    "INSERT INTO payloads (id, kinds, sizes, bodies) VALUES (?, ?, ?, ?)",
                    (row, kinds_blob, sizes_blob, blob),
                )
            conn.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        return row, evicted

    def load(self, row: int) -> list[bytes] | None:
        """Read back a batch this sender owns, marking it attempted; None if it is gone."""
        conn = self.conn
        cursor = conn.execute(
            "UPDATE batches SET attempted = 1 WHERE id = ? AND owner = ?", (row, self.owner)
        )
        if cursor.rowcount != 1:
            return None
        return self.read(row)

    def read(self, row: int) -> list[bytes] | None:
        """Read a batch whoever owns it (the memory fallback's last attempt)."""
        found = self.conn.execute(
            "SELECT kinds, sizes, bodies FROM payloads WHERE id = ?", (row,)
        ).fetchone()
        return None if found is None else _split(found[0], found[1], found[2])

    def mark(self, row: int, attempted: bool) -> None:
        """Record whether a request for this batch may be on its way or accepted."""
        self.conn.execute(
            "UPDATE batches SET attempted = ? WHERE id = ? AND owner = ?",
            (int(attempted), row, self.owner),
        )

    def mark_all_attempted(self) -> None:
        """Mark everything this sender owns as attempted; never raises (best effort)."""
        with contextlib.suppress(sqlite3.Error):
            self.conn.execute("UPDATE batches SET attempted = 1 WHERE owner = ?", (self.owner,))

    def delete(self, row: int) -> None:
        """Forget a batch: delivered, or finally rejected (a trigger drops its payload)."""
        self.conn.execute("DELETE FROM batches WHERE id = ?", (row,))

    def release(self, row: int, attempted: bool, rest: Sequence[bytes] | None = None) -> None:
        """Give a batch up for anyone to claim; ``rest`` replaces its items when given."""
        if rest is None:
            self.conn.execute(
                "UPDATE batches SET owner = NULL, lease = 0, attempted = ?"
                " WHERE id = ? AND owner = ?",
                (int(attempted), row, self.owner),
            )
            return
        bodies = list(rest)
        kinds_blob, sizes_blob, blob = _payload(bodies)
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            cursor = conn.execute(
                "UPDATE batches SET owner = NULL, lease = 0, attempted = ?, items = ?,"
                " bytes = ? WHERE id = ? AND owner = ?",
                (
                    int(attempted),
                    len(bodies),
                    len(blob) + len(kinds_blob) + len(sizes_blob),
                    row,
                    self.owner,
                ),
            )
            if cursor.rowcount == 1:
                conn.execute(
                    "UPDATE payloads SET kinds = ?, sizes = ?, bodies = ? WHERE id = ?",
                    (kinds_blob, sizes_blob, blob, row),
                )
            conn.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise

    def release_rows(self, rows: Sequence[tuple[int, bool]]) -> None:
        """Give several batches up: (row, attempted) pairs."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(
                "UPDATE batches SET owner = NULL, lease = 0, attempted = ?"
                " WHERE id = ? AND owner = ?",
                [(int(attempted), row, self.owner) for row, attempted in rows],
            )
            conn.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise

    def release_all(self) -> None:
        """Give up everything this sender still owns, never sent (it is stopping)."""
        self.conn.execute(
            "UPDATE batches SET owner = NULL, lease = 0, attempted = 0 WHERE owner = ?",
            (self.owner,),
        )

    # -- the backlog -----------------------------------------------------------------

    def claim(self) -> tuple[int, list[bytes], bool] | None:
        """Take the oldest free batch of this destination: (row, items, attempted before)."""
        conn = self.conn
        now = time.time()
        query = f"SELECT id FROM batches WHERE dest = ? AND {_FREE} ORDER BY id LIMIT 1"
        if conn.execute(query, (self.dest, now)).fetchone() is None:
            return None  # the common case, without taking the write lock
        conn.execute("BEGIN IMMEDIATE")
        try:
            found = conn.execute(
                f"SELECT id, attempted FROM batches WHERE dest = ? AND {_FREE} ORDER BY id LIMIT 1",
                (self.dest, now),
            ).fetchone()
            if found is not None:
                conn.execute(
                    "UPDATE batches SET owner = ?, lease = ?, attempted = 1 WHERE id = ?",
                    (self.owner, now + LEASE_SECONDS, found[0]),
                )
            conn.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        if found is None:
            return None
        row = int(found[0])
        items = self.read(row)  # ours now: nobody else changes it
        if items is None:
            raise sqlite3.DatabaseError(f"spooled batch {row} has no payload")
        return row, items, bool(found[1])

    def backlog(self) -> tuple[int, int]:
        """How many batches and items of this destination are free to claim."""
        found = self.conn.execute(
            f"SELECT count(*), total(items) FROM batches WHERE dest = ? AND {_FREE}",
            (self.dest, time.time()),
        ).fetchone()
        return int(found[0]), int(found[1])

    # -- upkeep ----------------------------------------------------------------------

    def maintain(self, protect: frozenset[int]) -> tuple[list[Evicted], list[Evicted]]:
        """Renew leases, free dead owners' batches, apply the age and size limits.

        Returns the batches deleted for age and for size. ``protect`` are rows this
        sender has in flight: never deleted.
        """
        conn = self.conn
        now = time.time()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "UPDATE batches SET lease = ? WHERE owner = ?", (now + LEASE_SECONDS, self.owner)
            )
            owners = conn.execute(
                "SELECT DISTINCT owner FROM batches"
                " WHERE owner IS NOT NULL AND owner != ? AND lease >= ?",
                (self.owner, now),
            ).fetchall()
            for (owner,) in owners:
                if self._dead(str(owner)):
                    conn.execute("UPDATE batches SET lease = 0 WHERE owner = ?", (owner,))
            expired = self._evict(
                f"SELECT id, owner, items FROM batches WHERE created < ? AND {_EVICTABLE}"
                " ORDER BY id",
                (now - self.max_age, now, self.owner),
                protect,
            )
            self._unmeasured = 32  # measure: other processes wrote meanwhile
            full, _ = self._make_room(0, protect, now)
            conn.execute(  # defensive: a payload without its batch is never read
                "DELETE FROM payloads WHERE id NOT IN (SELECT id FROM batches)"
            )
            conn.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        page_size, pages, free = self._pages()
        if free * page_size > 4 * 1024 * 1024 and free * 4 > pages:
            # give the space back to the disk; executescript steps the pragma to the end
            # (execute() would free one page per call: it returns no rows to fetch)
            conn.executescript("PRAGMA incremental_vacuum;")
        return expired, full

    def _dead(self, owner: str) -> bool:
        """Whether ``owner`` is a process of this host and pid namespace that is gone."""
        parts = owner.split("/")
        if len(parts) != 4 or not self._pidns:
            return False
        host, pidns, pid_text, token = parts
        if host != self._host or pidns != self._pidns:
            return False  # another machine or container: only its lease tells
        try:
            pid = int(pid_text)
        except ValueError:
            return False
        if pid == os.getpid():
            return token not in _tokens_in_process  # an earlier process with our pid
        return not _pid_alive(pid)

    def _pages(self) -> tuple[int, int, int]:
        conn = self.conn
        page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
        free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
        return page_size, pages, free

    def used_bytes(self) -> int:
        """Bytes of database pages in use (the file minus its free pages)."""
        page_size, pages, free = self._pages()
        return (pages - free) * page_size

    def _make_room(
        self, size: int, protect: frozenset[int], now: float
    ) -> tuple[list[Evicted], bool]:
        """Delete the oldest evictable batches until ``size`` more bytes fit (in a txn).

        Returns what was deleted and whether ``size`` bytes fit now.
        """
        evicted: list[Evicted] = []
        if size > self.max_bytes:
            return evicted, False
        cost = size + size // 32 + 8192  # pages are not full; a row, index entries
        if self._unmeasured < 32 and self._used_estimate + cost <= self.max_bytes * 3 // 4:
            # Far from the limit: no need to measure. Other processes' writes are
            # caught up with at least every 32 inserts.
            self._used_estimate += cost
            self._unmeasured += 1
            return evicted, True
        while self._measure() + size > self.max_bytes:
            batch = self._evict(
                f"SELECT id, owner, items FROM batches WHERE {_EVICTABLE} ORDER BY id LIMIT 8",
                (now, self.owner),
                protect,
                stop_after=1,
            )
            if not batch:
                return evicted, False
            evicted.extend(batch)
        self._used_estimate += cost
        return evicted, True

    def _measure(self) -> int:
        used = self.used_bytes()
        self._used_estimate = used
        self._unmeasured = 0
        return used

    def _evict(
        self,
        query: str,
        args: tuple[Any, ...],
        protect: frozenset[int],
        stop_after: int | None = None,
    ) -> list[Evicted]:
        conn = self.conn
        out: list[Evicted] = []
        for row, owner, items in conn.execute(query, args).fetchall():
            if row in protect:
                continue
            conn.execute("DELETE FROM batches WHERE id = ?", (row,))
            out.append((int(row), owner == self.owner, int(items)))
            if stop_after is not None and len(out) >= stop_after:
                break
        return out

    def _rollback(self) -> None:
        conn = self._conn
        if conn is not None and conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")


def _payload(bodies: Sequence[bytes]) -> tuple[bytes, bytes, bytes]:
    """A batch's ``kinds``, ``sizes`` and ``bodies`` columns (read back by :func:`_split`).

    The entries name their ``type`` themselves: ``kinds`` lists ``"item"`` for each,
    kept for version 0.1.0, which reads it (for its messages) and refuses a row whose
    list is not as long as the batch. This version accepts that list or an empty one.
    """
    kinds = orjson.dumps(["item"] * len(bodies))
    return kinds, orjson.dumps([len(b) for b in bodies]), b"".join(bodies)


def _split(kinds_blob: bytes, sizes_blob: bytes, bodies: bytes) -> list[bytes]:
    """Cut a batch's payload back into its entries (deduplicated once already)."""
    kinds = orjson.loads(kinds_blob)
    sizes = orjson.loads(sizes_blob)
    if (kinds and len(kinds) != len(sizes)) or sum(sizes) != len(bodies):
        raise sqlite3.DatabaseError("a spooled batch is inconsistent")
    ends = list(itertools.accumulate(sizes))
    return list(map(bodies.__getitem__, map(slice, [0, *ends[:-1]], ends)))


def destination(tracking_key: str) -> str:
    """The spool's id of a tracking key (its SHA-256: the key is never stored)."""
    return hashlib.sha256(tracking_key.encode("utf-8", "replace")).hexdigest()[:32]


# ---------------------------------------------------------------------- worker thread


class _Worker:
    """One daemon thread running spool operations in order."""

    def __init__(self) -> None:
        self.busy = threading.Lock()  # held while an operation runs (see _before_fork)
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="bucket_logging-spool", daemon=True)
        self._thread.start()
        _live_workers.add(self)

    def _run(self) -> None:
        ident = threading.get_ident()
        _diagnostics.internal_threads.add(ident)
        try:
            while True:
                job = self._jobs.get()
                if job is None:
                    return
                with self.busy:
                    job()
        finally:
            _diagnostics.internal_threads.discard(ident)

    def submit(self, job: Callable[[], None]) -> None:
        self._jobs.put(job)

    def stop(self) -> None:
        self._jobs.put(None)


class _Chunk:
    """One batch of the spool as this sender tracks it."""

    __slots__ = (
        "accepted",
        "ambiguous",
        "backlog",
        "bid",
        "count",
        "items",
        "kept",
        "marked",
        "posting",
        "row",
        "size",
    )

    def __init__(self, bid: int, count: int, row: int | None = None, size: int = 0) -> None:
        self.bid = bid  # the sender's batch id (its _inflight key)
        self.count = count
        self.size = size  # encoded bytes
        self.row = row  # None: not in the spool (no room): memory only
        self.items: list[bytes] | None = None  # held in memory only until it is sent
        self.kept: list[bytes] = []  # items given up on: they stay in the spool
        self.ambiguous = False  # a request for it ended without an answer
        self.accepted = False  # a request for (part of) it was answered 2xx
        self.posting = False  # a request for it is on the wire
        self.marked = False  # its row says attempted = 1
        self.backlog = False  # claimed from the spool, not queued by this sender


# The batch the current delivery task is sending (set by Spool._run).
_current: contextvars.ContextVar[_Chunk | None] = contextvars.ContextVar(
    "bucket_logging_spool_chunk", default=None
)

_SPOOL_ERRORS: Final = (sqlite3.Error, OSError, ValueError, RuntimeError)


def _ambiguous(error: BaseException | None) -> bool:
    """Whether a failed request may have reached the server and been accepted."""
    if error is None or getattr(error, "status", None) is not None:
        return False  # the server answered, and not with 2xx
    cause = error.__context__
    return not isinstance(cause, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))


class Spool:
    """A sender's spool: persists its batches, delivers them and the backlog.

    Lives on the sender's event loop; :meth:`pump`, :meth:`settle`, :meth:`keep` and
    :meth:`close` are the sender's hooks. Built by :class:`~bucket_logging.BulkSender`
    when ``spool_dir`` is set.
    """

    def __init__(self, sender: BulkSender, directory: str, max_bytes: int, max_age: float) -> None:
        self._sender = sender
        self._store = SpoolStore(directory, destination(sender._key), max_bytes, max_age)
        self.path = self._store.path
        self._worker: _Worker | None = None
        self._opened = False
        self.failed = False
        self._waiting: deque[_Chunk] = deque()
        # Waiting batches keep their items in memory up to this many bytes, so that
        # a burst is sent without reading it back; the rest is read back from disk.
        self._retain_limit = sender.max_queue_bytes // 4
        self._retained = 0
        self._sending: dict[int, _Chunk] = {}  # row -> batch being delivered
        self._cancelled: list[_Chunk] = []  # deliveries cut short by the stop
        self._next_maintenance = 0.0
        self._backlog_after = 0.0
        self._backlog_maybe = True
        self._left_at_exit = 0

    def __repr__(self) -> str:
        state = "failed" if self.failed else "open" if self._opened else "new"
        return f"<Spool {self.path} {state} waiting={len(self._waiting)}>"

    # -- plumbing --------------------------------------------------------------------

    async def _call(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run ``fn(*args)`` on the worker thread and await its result.

        The job runs even if the awaiting task is cancelled: a delete or release
        that was asked for always happens, in order.
        """
        worker = self._worker
        if worker is None:
            raise RuntimeError("the spool worker is not running")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_T] = loop.create_future()

        def resolve(ok: bool, value: Any) -> None:
            if not future.done():
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

        def job() -> None:
            try:
                result: Any = fn(*args)
                ok = True
            except BaseException as exc:
                result, ok = exc, False
            with contextlib.suppress(RuntimeError):  # the loop is closed
                loop.call_soon_threadsafe(resolve, ok, result)

        worker.submit(job)
        return await future

    def _fail(self, exc: BaseException) -> None:
        """Give the spool up for this process: report, hand waiting batches to memory."""
        if self.failed:
            return
        self.failed = True
        report(
            "spool",
            "bucket_logging: the spool at %s cannot be used (%s: %s); continuing in memory only",
            self.path,
            type(exc).__name__,
            exc,
            level=logging.ERROR,
        )
        if self._opened and self._worker is not None:
            # Best effort: the batches now sent from memory may still be in the file;
            # if a later sender replays them, they count as possible duplicates.
            self._worker.submit(self._store.mark_all_attempted)
        self._hand_over()

    def _hand_over(self) -> None:
        """Deliver the waiting batches without the spool (after a failure)."""
        sender = self._sender
        waiting = list(self._waiting)
        self._waiting.clear()
        self._retained = 0
        loop = asyncio.get_running_loop()
        for chunk in waiting:
            task = loop.create_task(self._fallback(chunk))
            sender._tasks.add(task)
            task.add_done_callback(sender._tasks.discard)

    async def _fallback(self, chunk: _Chunk) -> None:
        """Deliver a waiting batch from memory (reading it back once if need be)."""
        _current.set(None)  # not a spool delivery, whatever task created this one
        sender = self._sender
        await sender._slots.acquire()
        items = chunk.items
        if items is None and chunk.row is not None:
            try:
                items = await self._call(self._store.read, chunk.row)
            except _SPOOL_ERRORS:
                items = None
        if items is None:
            sender._slots.release()
            with sender._lock:
                sender._inflight.pop(chunk.bid, None)
            sender._drop("spool_error", chunk.count, None, "the spool could not be read back")
            sender._check_waiters()
            return
        await sender._deliver(items, chunk.bid)

    # -- hooks -----------------------------------------------------------------------

    async def pump(self) -> bool:
        """Persist what is queued and send what a free request slot can take.

        Returns False when the spool is unusable: the sender's memory-only path
        takes over.
        """
        if self.failed:
            return False
        sender = self._sender
        try:
            if not self._opened and not await self._open():
                return False
            if time.monotonic() >= self._next_maintenance:
                await self._maintain()
            while not sender._stopping and not self.failed:
                await self._dispatch()
                if not sender._has_queued():
                    break
                batch, bid = sender._take_entries()
                if batch:
                    await self._persist(batch, bid)
                else:
                    sender._check_waiters()
        except _SPOOL_ERRORS as exc:
            self._fail(exc)
        if self.failed:  # here, or in a delivery task meanwhile
            self._hand_over()
            return False
        return True

    def keep(
        self,
        batch: list[bytes],
        reason: str,
        status: int | None,
        detail: str,
    ) -> bool:
        """Leave items the sender gives up on in the spool; False if they are not in it."""
        chunk = _current.get()
        if chunk is None or chunk.row is None or self.failed:
            return False
        sender = self._sender
        chunk.kept.extend(batch)
        count = len(batch)
        with sender._lock:
            sender._counts["spooled"] += count
            sender._done += count
        self._backlog_after = time.monotonic() + max(sender.backoff_max, sender.flush_interval)
        self._backlog_maybe = True
        if reason == "shutdown":
            self._left_at_exit += count  # one summary at exit, from close()
        else:
            how = f"HTTP {status}: " if status is not None else ""
            report(
                "spool-left",
                "bucket_logging: %d item(s) not delivered yet (%s, %s%s); left in the spool "
                "at %s for a later attempt",
                count,
                reason,
                how,
                _diagnostics.redact(detail),
                self.path,
            )
        return True

    async def post(self, body: bytes) -> httpx.Response:
        """The sender's request, tracking whether it may have reached the server.

        A batch's row says ``attempted = 1`` while a request for it is on the wire or
        may have been accepted; after a clear failure (refused connection, an error
        answer) it says 0 again. A replay of a row that says 1 is counted as a
        possible duplicate (``redelivered``).
        """
        sender = self._sender
        chunk = _current.get()
        if chunk is None or chunk.row is None or self.failed:
            return await sender._post(body)
        if not chunk.marked and await self._mark(chunk, True):
            chunk.marked = True
        chunk.posting = True
        try:
            response = await sender._post(body)
        except asyncio.CancelledError:
            raise  # still posting: the outcome is unknown
        except Exception as exc:
            chunk.posting = False
            if _ambiguous(exc):
                chunk.ambiguous = True
            elif (
                chunk.marked
                and not (chunk.ambiguous or chunk.accepted)
                and await self._mark(chunk, False)
            ):
                chunk.marked = False
            raise
        chunk.posting = False
        if 200 <= response.status_code < 300:
            chunk.accepted = True
        return response

    async def _mark(self, chunk: _Chunk, attempted: bool) -> bool:
        try:
            await self._call(self._store.mark, chunk.row, attempted)
        except _SPOOL_ERRORS as exc:
            self._fail(exc)
            return False
        return True

    async def settle(self) -> None:
        """After a batch's delivery: delete it, or release what was kept. Never raises."""
        chunk = _current.get()
        if chunk is None or chunk.row is None or self.failed:
            return
        try:
            if not chunk.kept:
                await self._call(self._store.delete, chunk.row)
            else:
                rest = chunk.kept if len(chunk.kept) < chunk.count else None
                await self._call(self._store.release, chunk.row, chunk.ambiguous, rest)
        except _SPOOL_ERRORS as exc:
            self._fail(exc)

    async def close(self) -> None:
        """At the sender's stop: persist what is still queued, release what it owns."""
        sender = self._sender
        try:
            if not self._opened or self.failed:
                return
            while True:
                if not sender._has_queued():
                    break
                batch, bid = sender._take_entries()
                if batch:
                    await self._persist(batch, bid, send=False)
            cut = [(c.row, c.ambiguous or c.posting) for c in self._cancelled if c.row]
            memory_only = sum(c.count for c in self._cancelled if c.row is None)
            self._cancelled.clear()
            if cut:
                await self._call(self._store.release_rows, cut)
            await self._call(self._store.release_all)
            memory_only += sum(c.count for c in self._waiting if c.row is None)
            with sender._lock:
                for chunk in self._waiting:
                    if chunk.row is not None:
                        sender._inflight.pop(chunk.bid, None)
                left = sender._enqueued - sender._done - memory_only
                left = max(0, left)
                sender._counts["spooled"] += left
                sender._done += left
            self._waiting = deque(c for c in self._waiting if c.row is None)
            left += self._left_at_exit
            self._left_at_exit = 0
            if left:
                report(
                    "spool-exit",
                    "bucket_logging: %d item(s) not delivered before the shutdown deadline "
                    "left in the spool at %s; the next sender with this spool_dir delivers "
                    "them",
                    left,
                    self.path,
                )
        except _SPOOL_ERRORS as exc:
            report(
                "spool",
                "bucket_logging: could not leave the queued items in the spool at %s (%s)",
                self.path,
                exc,
                level=logging.ERROR,
            )
        finally:
            worker, self._worker = self._worker, None
            if worker is not None:
                worker.submit(self._store.close)
                worker.stop()

    # -- internals -------------------------------------------------------------------

    async def _open(self) -> bool:
        try:
            if _fork_state["unsafe_in_child"]:
                raise RuntimeError(
                    "this process was forked while a spool operation was running in the "
                    "parent; SQLite cannot be used safely here"
                )
            if self._worker is None:
                self._worker = _Worker()
            batches, items, expired, full = await self._call(self._store.open)
        except _SPOOL_ERRORS as exc:
            self._fail(exc)
            return False
        self._opened = True
        self._next_maintenance = time.monotonic() + MAINTENANCE_SECONDS
        self._evicted(expired, "spool_expired")
        self._evicted(full, "spool_full")
        if items:
            report(
                "spool-backlog",
                "bucket_logging: the spool at %s holds %d item(s) not delivered by an "
                "earlier sender; delivering them",
                self.path,
                items,
                level=logging.INFO,
            )
        self._backlog_maybe = batches > 0
        return True

    async def _maintain(self) -> None:
        self._next_maintenance = time.monotonic() + MAINTENANCE_SECONDS
        expired, full = await self._call(self._store.maintain, frozenset(self._sending))
        self._evicted(expired, "spool_expired")
        self._evicted(full, "spool_full")
        self._backlog_maybe = True

    async def _persist(self, batch: list[bytes], bid: int, send: bool = True) -> None:
        """Write one batch taken off the queue; keep its items if it is sent next."""
        sender = self._sender
        bodies = batch
        size = sum(map(len, bodies))
        sent_next = (
            send and not self._waiting and not sender._slots.locked() and not self._backlog_maybe
        )
        retain = sent_next or (send and self._retained + size <= self._retain_limit)
        chunk = _Chunk(bid, len(batch), size=size)
        try:
            row, evicted = await self._call(
                self._store.insert,
                bodies,
                sent_next,  # its row says "attempted" before the request starts
                frozenset(self._sending),
            )
        except BaseException:
            chunk.items = batch  # the memory fallback delivers it
            self._waiting.append(chunk)
            raise
        self._evicted(evicted, "spool_full")
        if row is None:
            # No room, even after deleting everything this sender may delete: the
            # batch is sent from memory, as without a spool, within a small bound.
            if sum(1 for c in self._waiting if c.row is None) >= sender.max_concurrent_requests:
                with sender._lock:
                    sender._inflight.pop(bid, None)
                sender._drop("spool_full", len(batch), None, "the spool is full")
                sender._check_waiters()
                return
            retain = True
        chunk.row = row
        chunk.marked = sent_next and row is not None
        if retain:
            chunk.items = batch
            self._retained += size
        self._waiting.append(chunk)

    def _unretain(self, chunks: Iterable[_Chunk]) -> None:
        """Waiting batches leave the waiting list: stop counting their items."""
        for chunk in chunks:
            if chunk.items is not None:
                self._retained -= chunk.size

    async def _dispatch(self) -> None:
        """Start deliveries while a request slot is free: the backlog, oldest first,
        then this sender's own batches (those first while a flush or exit waits)."""
        sender = self._sender
        loop = asyncio.get_running_loop()
        while not sender._stopping and not sender._slots.locked() and not self.failed:
            closing = sender._closing_deadline
            if closing is not None and time.monotonic() >= closing:
                await self._leave_waiting()
                return
            claimed = await self._claim()
            if claimed is not None:
                chunk = claimed
            elif self._waiting:
                chunk = self._waiting.popleft()
                self._unretain((chunk,))
                if chunk.items is None and chunk.row is not None:
                    try:
                        items = await self._call(self._store.load, chunk.row)
                    except BaseException:
                        self._waiting.appendleft(chunk)
                        raise
                    if items is None:
                        self._taken_over(chunk)
                        continue
                    chunk.items = items
                    chunk.marked = True
            else:
                return
            items = chunk.items or []
            chunk.items = None
            if chunk.row is not None:
                self._sending[chunk.row] = chunk
            await sender._slots.acquire()
            task = loop.create_task(self._run(chunk, items))
            sender._tasks.add(task)
            task.add_done_callback(sender._tasks.discard)
            task.add_done_callback(self._delivered)

    async def _run(self, chunk: _Chunk, items: list[bytes]) -> None:
        _current.set(chunk)
        try:
            await self._sender._deliver(items, chunk.bid)
        except asyncio.CancelledError:
            self._cancelled.append(chunk)
            raise
        finally:
            if chunk.row is not None:
                self._sending.pop(chunk.row, None)

    def _delivered(self, task: asyncio.Task[None]) -> None:
        self._sender._wake.set()  # a slot is free: pump again

    async def _claim(self) -> _Chunk | None:
        """Take the oldest free batch of the backlog, unless a flush or exit is waiting."""
        sender = self._sender
        if (
            not self._backlog_maybe
            or sender._waiters
            or sender._closing_deadline is not None
            or time.monotonic() < self._backlog_after
        ):
            return None
        claimed = await self._call(self._store.claim)
        if claimed is None:
            self._backlog_maybe = False
            return None
        row, items, attempted = claimed
        count = len(items)
        with sender._lock:
            sender._batch_ids += 1
            bid = sender._batch_ids
            # A backlog batch has no sequence number: -1 makes a flush() that starts
            # while it is in flight wait for it; no new one starts while a flush waits.
            sender._inflight[bid] = -1
            sender._done -= count  # it joins `pending` until it is finished
            sender._counts["replayed"] += count
            if attempted:
                sender._counts["redelivered"] += count
        chunk = _Chunk(bid, count, row)
        chunk.backlog = True
        chunk.marked = True  # the claim set attempted = 1
        chunk.items = items
        return chunk

    async def _leave_waiting(self) -> None:
        """The shutdown deadline passed: leave every waiting batch in the spool."""
        sender = self._sender
        waiting = list(self._waiting)
        self._waiting.clear()
        self._retained = 0
        rows = [(c.row, False) for c in waiting if c.row is not None]
        if rows:
            await self._call(self._store.release_rows, rows)
        left = 0
        lost = 0
        with sender._lock:
            for chunk in waiting:
                sender._inflight.pop(chunk.bid, None)
                if chunk.row is not None:
                    left += chunk.count
                else:
                    lost += chunk.count
            sender._counts["spooled"] += left
            sender._done += left
        self._left_at_exit += left
        if lost:
            sender._drop("shutdown", lost, None, "not delivered before the shutdown deadline")
        sender._check_waiters()

    def _taken_over(self, chunk: _Chunk) -> None:
        """Our batch is gone (another sender took it over after our lease expired)."""
        sender = self._sender
        with sender._lock:
            sender._inflight.pop(chunk.bid, None)
            sender._counts["spooled"] += chunk.count
            sender._done += chunk.count
        sender._check_waiters()

    def _evicted(self, evicted: list[Evicted], reason: str) -> None:
        """Count (and report) batches deleted for the size or age limit."""
        if not evicted:
            return
        sender = self._sender
        total = 0
        mine: dict[int, int] = {}
        for row, own, count in evicted:
            total += count
            if own:
                mine[row] = count
        dropped_own = [c for c in self._waiting if c.row in mine]
        if dropped_own:
            self._waiting = deque(c for c in self._waiting if c.row not in mine)
            self._unretain(dropped_own)
        with sender._lock:
            sender._dropped[reason] += total
            for chunk in dropped_own:
                sender._inflight.pop(chunk.bid, None)
                sender._done += chunk.count
        why = (
            "older than spool_max_age"
            if reason == "spool_expired"
            else "the spool reached spool_max_bytes"
        )
        error = DeliveryError(reason, total, None, f"{why} (oldest first)")
        report("drop-" + reason, "bucket_logging: %s", error)
        sender._notify(error)
        if dropped_own:
            sender._check_waiters()
