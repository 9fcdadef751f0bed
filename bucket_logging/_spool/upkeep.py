"""The spool's upkeep: the size limit's accounting, eviction, owners and file checks.

:class:`Space` keeps the database under ``spool_max_bytes`` (measuring only near the
limit) and deletes the oldest batches this sender may delete; :func:`owner_dead`
tells a dead owner's batches from a live one's; :func:`check_private` refuses a spool
another user could change. All run on the spool's worker thread.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from typing import Any, Final

from .._runtime import state as _process

__all__ = [
    "EVICTABLE",
    "Evicted",
    "Space",
    "check_private",
    "owner_dead",
    "pid_alive",
    "pid_namespace",
]

# A batch this sender may delete for the size or age limit.
EVICTABLE: Final = "(owner IS NULL OR lease < ? OR owner = ?)"

#: (row id, owned by this sender, item count) of a batch deleted for a limit.
Evicted = tuple[int, bool, int]


def pid_namespace() -> str:
    """This process's pid namespace (\"\" when it cannot be told)."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def check_private(path: str, what: str) -> None:
    """Refuse a spool ``path`` another user could change: not owned by this user, or
    writable by its group or others (it could feed the sender any batch)."""
    geteuid = getattr(os, "geteuid", None)
    if geteuid is None:  # pragma: no cover - Windows: no POSIX owners and modes
        return
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        raise PermissionError(f"the spool {what} {path} is a symbolic link")
    if info.st_uid != geteuid():
        raise PermissionError(
            f"the spool {what} {path} belongs to uid {info.st_uid}, not to this user"
        )
    if info.st_mode & 0o022:
        raise PermissionError(
            f"the spool {what} {path} is writable by its group or others "
            f"(mode {stat.S_IMODE(info.st_mode):o}); make it 0700 (directory) or 0600"
        )


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists here (True when that cannot be told)."""
    if not 0 < pid < 1 << 31:
        return True  # not a pid of this host: its lease tells
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # e.g. PermissionError: another user's process
        return True
    return True


def owner_dead(owner: str, my_host: str, my_pidns: str) -> bool:
    """Whether ``owner`` is a process of this host and pid namespace that is gone."""
    parts = owner.split("/")
    if len(parts) != 4 or not my_pidns:
        return False
    host, pidns, pid_text, token = parts
    if host != my_host or pidns != my_pidns:
        return False  # another machine or container: only its lease tells
    try:
        pid = int(pid_text)
    except ValueError:
        return False
    if pid == os.getpid():
        return token not in _process.state.spool_tokens  # an earlier process with our pid
    return not pid_alive(pid)


class Space:
    """The size limit: an upper bound of the bytes in use, measured when near it.

    Args:
        max_bytes: the most bytes of used database pages.
        owner: this sender's owner id (its batches may be evicted).
    """

    def __init__(self, max_bytes: int, owner: str) -> None:
        self.max_bytes = max_bytes
        self.owner = owner
        # An upper bound of the bytes in use, to skip measuring before most inserts.
        self._used_estimate = 0
        self._unmeasured = 0

    def others_wrote(self) -> None:
        """Measure at the next insert: other processes may have written meanwhile."""
        self._unmeasured = 32

    def pages(self, conn: sqlite3.Connection) -> tuple[int, int, int]:
        """(page size, pages, free pages) of the database."""
        page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
        free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
        return page_size, pages, free

    def used_bytes(self, conn: sqlite3.Connection) -> int:
        """Bytes of database pages in use (the file minus its free pages)."""
        page_size, pages, free = self.pages(conn)
        return (pages - free) * page_size

    def make_room(
        self, conn: sqlite3.Connection, size: int, protect: frozenset[int], now: float
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
        while self._measure(conn) + size > self.max_bytes:
            batch = self.evict(
                conn,
                f"SELECT id, owner, items FROM batches WHERE {EVICTABLE} ORDER BY id LIMIT 8",
                (now, self.owner),
                protect,
                stop_after=1,
            )
            if not batch:
                return evicted, False
            evicted.extend(batch)
        self._used_estimate += cost
        return evicted, True

    def _measure(self, conn: sqlite3.Connection) -> int:
        used = self.used_bytes(conn)
        self._used_estimate = used
        self._unmeasured = 0
        return used

    def evict(
        self,
        conn: sqlite3.Connection,
        query: str,
        args: tuple[Any, ...],
        protect: frozenset[int],
        stop_after: int | None = None,
    ) -> list[Evicted]:
        """Delete the batches ``query`` selects, except ``protect`` (in a transaction)."""
        out: list[Evicted] = []
        for row, owner, items in conn.execute(query, args).fetchall():
            if row in protect:
                continue
            conn.execute("DELETE FROM batches WHERE id = ?", (row,))
            out.append((int(row), owner == self.owner, int(items)))
            if stop_after is not None and len(out) >= stop_after:
                break
        return out
