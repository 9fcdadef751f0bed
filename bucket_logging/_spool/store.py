"""The spool's storage: batches in one SQLite file, claimed with leases.

What the spool is for is in :mod:`bucket_logging._sender.spooling`; the rows' format in
:mod:`bucket_logging._spool.rows`.

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

On disk. The directory must be on a local file system (SQLite's locks are not
reliable over NFS and the like). Besides the database (at most about
``spool_max_bytes`` of used pages), the WAL file holds up to about 4 MiB between
checkpoints and is trimmed back to 16 MiB; new directories are created ``0700`` and
new files ``0600``; a directory or file another user owns or could write is refused.

Every method of :class:`SpoolStore` runs on the spool's worker thread (see
:mod:`bucket_logging._sender.spooling`); each write is one transaction
(:meth:`SpoolStore.transaction`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import sqlite3
import time
from collections.abc import Iterator, Sequence
from typing import Final

from .._runtime import state as _process
from .._runtime.diagnostics import report
from . import marks
from .rows import SCHEMA, SCHEMA_VERSION, check_entries, payload, split_payload
from .upkeep import EVICTABLE, Evicted, Space, check_private, owner_dead, pid_namespace

__all__ = [
    "BUSY_TIMEOUT",
    "CALL_SECONDS",
    "LEASE_SECONDS",
    "MAINTENANCE_SECONDS",
    "SPOOL_ERRORS",
    "SPOOL_FILE",
    "Evicted",
    "SpoolStore",
]

#: The database's file name inside ``spool_dir``.
SPOOL_FILE: Final = "bucket_logging.spool.sqlite3"

#: Seconds a sender's claim on a batch holds without renewal.
LEASE_SECONDS: Final = 60.0

#: Seconds between a sender's lease renewals, TTL and size checks and backlog look-ups.
MAINTENANCE_SECONDS: Final = 10.0

#: What a failing spool raises (it is then given up: the sender goes on in memory).
SPOOL_ERRORS: Final = (sqlite3.Error, OSError, ValueError, RuntimeError)

#: Seconds a spool write waits for another process's lock before failing.
BUSY_TIMEOUT: Final = 10.0

#: Seconds one spool operation may run inside SQLite before it is interrupted (a
#: progress handler): a pathological file cannot hold the sender's spool forever.
CALL_SECONDS: Final = 30.0

#: SQLite VM steps between two looks at the clock.
_PROGRESS_STEPS: Final = 10_000

# A batch another sender may take: released, or its owner's lease expired.
_FREE: Final = "(owner IS NULL OR lease < ?)"


# fork(): connections inherited by a child must never be used or closed there
# (closing one could checkpoint or remove the parent's WAL): they are parked here.
# And SQLite's own mutexes would stay locked in the child if a worker was inside


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
        self._pidns = pid_namespace()
        self._token = secrets.token_hex(6)
        self.owner = f"{self._host}/{self._pidns}/{os.getpid()}/{self._token}"
        self._conn: sqlite3.Connection | None = None
        self._deadline = 0.0  # of the running operation (see bound())
        #: The size limit's bookkeeping.
        self.space = Space(max_bytes, self.owner)
        _process.state.spool_tokens.add(self._token)
        _process.state.spool_stores.add(self)

    def abandon(self) -> None:
        """In a forked child: never use nor close the parent's connection (closing
        it could checkpoint or remove the parent's WAL); it is parked for good."""
        if self._conn is not None:
            _process.state.inherited_connections.append(self._conn)
            self._conn = None

    def bound(self, seconds: float | None = None) -> None:
        """Start the clock of one operation (at most ``seconds``, else CALL_SECONDS)."""
        self._deadline = time.monotonic() + (CALL_SECONDS if seconds is None else seconds)

    def _overdue(self) -> int:
        return 1 if time.monotonic() > self._deadline else 0  # nonzero: interrupt

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
        check_private(self.directory, "directory")
        # a new file is this user's alone (SQLite gives its -wal and -shm the same mode)
        with contextlib.suppress(FileExistsError):
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        check_private(self.path, "file")
        conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
        )
        self.bound()
        conn.set_progress_handler(self._overdue, _PROGRESS_STEPS)
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
            with self.transaction(conn):
                for statement in SCHEMA:
                    conn.execute(statement)
                conn.execute(
                    "INSERT OR IGNORE INTO meta (name, value) VALUES ('schema', ?)",
                    (SCHEMA_VERSION,),
                )
                row = conn.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone()
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
        _process.state.spool_tokens.discard(self._token)
        if conn is not None:
            conn.close()

    # -- the sender's own batches -------------------------------------------------------

    def insert(
        self,
        bodies: list[bytes],
        attempted: bool,
        protect: frozenset[int],
        journal: tuple[str, int] | None = None,
    ) -> tuple[int | None, list[Evicted]]:
        """Write one batch owned by this sender, and how far it settles ``journal``
        (its id, its new mark); None when no room could be made."""
        kinds_blob, sizes_blob, blob = payload(bodies)
        size = len(blob) + len(kinds_blob) + len(sizes_blob)
        now = time.time()
        conn = self.conn
        with self.transaction(conn):
            evicted, fits = self.space.make_room(conn, size, protect, now)
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
            if journal is not None:  # (even with no room: sent from memory by choice)
                marks.record(conn, *journal)
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
        return None if found is None else split_payload(found[0], found[1], found[2])

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
        kinds_blob, sizes_blob, blob = payload(bodies)
        conn = self.conn
        with self.transaction(conn):
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

    def release_rows(self, rows: Sequence[tuple[int, bool]]) -> None:
        """Give several batches up: (row, attempted) pairs."""
        conn = self.conn
        with self.transaction(conn):
            conn.executemany(
                "UPDATE batches SET owner = NULL, lease = 0, attempted = ?"
                " WHERE id = ? AND owner = ?",
                [(int(attempted), row, self.owner) for row, attempted in rows],
            )

    def release_all(self) -> None:
        """Give up everything this sender still owns, never sent (it is stopping)."""
        self.conn.execute(
            "UPDATE batches SET owner = NULL, lease = 0, attempted = 0 WHERE owner = ?",
            (self.owner,),
        )

    # -- the backlog -----------------------------------------------------------------

    def claim(self) -> tuple[int, list[bytes], bool] | None:
        """Take the oldest free batch of this destination: (row, items, attempted before).

        A malformed batch is quarantined (see :meth:`quarantine`) and the next one taken.
        """
        while True:
            claimed = self._claim_one()
            if claimed != "quarantined":
                return claimed  # type: ignore[return-value]

    def _claim_one(self) -> tuple[int, list[bytes], bool] | str | None:
        conn = self.conn
        now = time.time()
        query = f"SELECT id FROM batches WHERE dest = ? AND {_FREE} ORDER BY id LIMIT 1"
        if conn.execute(query, (self.dest, now)).fetchone() is None:
            return None  # the common case, without taking the write lock
        with self.transaction(conn):
            found = conn.execute(
                f"SELECT id, attempted FROM batches WHERE dest = ? AND {_FREE} ORDER BY id LIMIT 1",
                (self.dest, now),
            ).fetchone()
            if found is not None:
                conn.execute(
                    "UPDATE batches SET owner = ?, lease = ?, attempted = 1 WHERE id = ?",
                    (self.owner, now + LEASE_SECONDS, found[0]),
                )
        if found is None:
            return None
        row = int(found[0])
        try:
            items = self.read(row)  # ours now: nobody else changes it
            if items is None:
                raise sqlite3.DatabaseError(f"spooled batch {row} has no payload")
            check_entries(items)  # another process wrote it: checked as fresh items are
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError):
                raise  # the file, not the row: the spool is given up
            self.quarantine(row, str(exc))
            return "quarantined"  # the next one
        return row, items, bool(found[1])

    def quarantine(self, row: int, why: str) -> None:
        """Set a malformed batch aside: kept in the file for a look, never claimed again."""
        self.conn.execute(
            "UPDATE batches SET dest = 'quarantined:' || dest, owner = NULL, lease = 0"
            " WHERE id = ?",
            (row,),
        )
        report(
            "spool-quarantine",
            "bucket_logging: a malformed batch in the spool at %s was quarantined (%s); "
            "its row %d stays in the file, never sent",
            self.path,
            why,
            row,
            level=logging.ERROR,
        )

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
        with self.transaction(conn):
            conn.execute(
                "UPDATE batches SET lease = ? WHERE owner = ?", (now + LEASE_SECONDS, self.owner)
            )
            owners = conn.execute(
                "SELECT DISTINCT owner FROM batches"
                " WHERE owner IS NOT NULL AND owner != ? AND lease >= ?",
                (self.owner, now),
            ).fetchall()
            for (owner,) in owners:
                if owner_dead(str(owner), self._host, self._pidns):
                    conn.execute("UPDATE batches SET lease = 0 WHERE owner = ?", (owner,))
            expired = self.space.evict(
                conn,
                f"SELECT id, owner, items FROM batches WHERE created < ? AND {EVICTABLE}"
                " ORDER BY id",
                (now - self.max_age, now, self.owner),
                protect,
            )
            self.space.others_wrote()  # measure: other processes wrote meanwhile
            full, _ = self.space.make_room(conn, 0, protect, now)
            conn.execute(  # defensive: a payload without its batch is never read
                "DELETE FROM payloads WHERE id NOT IN (SELECT id FROM batches)"
            )
        page_size, pages, free = self.space.pages(conn)
        if free * page_size > 4 * 1024 * 1024 and free * 4 > pages:
            # give the space back to the disk; executescript steps the pragma to the end
            # (execute() would free one page per call: it returns no rows to fetch)
            conn.executescript("PRAGMA incremental_vacuum;")
        return expired, full

    def measure(self) -> tuple[int, int, float]:
        """Used bytes, items of this destination and the oldest one's age in seconds."""
        items, created = self.conn.execute(
            "SELECT total(items), min(created) FROM batches WHERE dest = ?", (self.dest,)
        ).fetchone()
        age = 0.0 if created is None else max(0.0, time.time() - float(created))
        return self.used_bytes(), int(items), age

    def used_bytes(self) -> int:
        """Bytes of database pages in use (the file minus its free pages)."""
        return self.space.used_bytes(self.conn)

    @staticmethod
    @contextlib.contextmanager
    def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``, or ``ROLLBACK`` on any exception.

        IMMEDIATE takes the write lock at once (waiting up to the busy timeout for
        another process): a claim's select and update see the same rows.
        """
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
