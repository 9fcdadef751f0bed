"""Journal marks in the spool file: how far each journal's records are stored.

A batch taken from a journal (by its writer, or by the recovery of a dead one) is
stored in the same SQLite transaction as its journal's new mark, so that "stored"
and "the journal is settled up to here" can never disagree: recovery re-stores
exactly the records after the mark, never one twice, whatever kills which process
when. (The checkpoint in a segment's header says the same for batches delivered
without being stored, and deletes segments: recovery starts at the larger of the two.)

May import: nothing of the package.
"""

from __future__ import annotations

import sqlite3
from typing import Final

__all__ = ["SCHEMA", "forget", "mark_of", "record"]

SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS journal_marks (journal TEXT PRIMARY KEY, mark INTEGER NOT NULL)"
)


def record(conn: sqlite3.Connection, journal: str, mark: int) -> None:
    """Journal ``journal`` is stored up to ``mark`` (inside the caller's transaction)."""
    conn.execute(
        "INSERT INTO journal_marks (journal, mark) VALUES (?, ?) ON CONFLICT (journal)"
        " DO UPDATE SET mark = max(mark, excluded.mark)",
        (journal, mark),
    )


def mark_of(conn: sqlite3.Connection, journal: str) -> int:
    """How far ``journal``'s records are stored (0: none)."""
    row = conn.execute("SELECT mark FROM journal_marks WHERE journal = ?", (journal,)).fetchone()
    return 0 if row is None else int(row[0])


def forget(conn: sqlite3.Connection, journal: str) -> None:
    """``journal`` is gone (closed with everything settled, or recovered)."""
    conn.execute("DELETE FROM journal_marks WHERE journal = ?", (journal,))
