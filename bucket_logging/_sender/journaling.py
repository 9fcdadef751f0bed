"""The spool's journal, on the sender's side: opened, settled, and dead ones recovered.

With a spool, every item a log call queues is first written to this process's
journal (:mod:`bucket_logging._spool.journal`, by the queue on the calling thread).
This module opens the journal when the sender starts, moves its checkpoint on as
the engine stores batches (:meth:`JournalSide.settle`), and drives the recovery of
journals whose processes ended (:mod:`bucket_logging._spool.recovery`), one segment
a step on the spool's worker thread, between the engine's own work: the
application's start-up never waits for it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from .._runtime.diagnostics import report
from .._spool import marks
from .._spool.journal import Journal
from .._spool.recovery import Recovery
from .._spool.store import LEASE_SECONDS, Evicted, SpoolStore
from .config import SenderConfig

__all__ = ["JournalSide", "open_journal"]


def open_journal(config: SenderConfig, dest: str) -> Journal | None:
    """This process's journal in the spool directory, or None (reported) when it
    cannot be made: the sender then works as without one."""
    spool = config.spool
    if spool is None:
        return None
    journal = Journal(spool.directory, dest)
    try:
        journal.open()
    except (OSError, ValueError) as exc:
        report(
            "journal",
            "bucket_logging: cannot make the spool's journal in %s (%s: %s); a killed "
            "process loses what was not stored in the spool yet",
            spool.directory,
            type(exc).__name__,
            exc,
            level=logging.ERROR,
        )
        return None
    if journal.failed:
        return None
    return journal


class JournalSide:
    """The journal of a sender's spool, and the recovery of dead ones.

    Args:
        directory: the spool directory.
        dest: the destination id.
        batch_items: the most items in a recovered batch.
    """

    def __init__(self, directory: str, dest: str, batch_items: int) -> None:
        self.directory = directory
        self.dest = dest
        self.batch_items = batch_items
        self.journal: Journal | None = None
        self._recovery: Recovery | None = None
        #: whether a look for dead journals is due
        self.pending = True
        #: items recovered from dead journals, and damaged records skipped
        self.recovered = 0
        self.damaged = 0

    def mark(self, mark: int) -> tuple[str, int] | None:
        """What :meth:`SpoolStore.insert` records with a batch whose journal mark is
        ``mark`` (None without a journal)."""
        journal = self.journal
        if journal is None or journal.failed or mark <= 0:
            return None
        return journal.id, mark

    def forget(self, store: SpoolStore) -> None:
        """On the worker thread, at a clean stop: this journal's mark is not needed."""
        journal = self.journal
        if journal is not None and journal.settled >= journal.written:
            marks.forget(store.conn, journal.id)

    def settle(self, mark: int) -> None:
        """Every entry queued before ``mark`` is stored (or given to memory, or dropped)."""
        journal = self.journal
        if journal is not None:
            journal.checkpoint(mark)

    def heartbeat(self) -> None:
        """Renew this journal's heartbeat, and look for dead journals again."""
        if self.journal is not None:
            self.journal.heartbeat()
        self.pending = True

    async def recover(
        self,
        call: Callable[..., Awaitable[Any]],
        store: SpoolStore,
        sending: Iterable[int],
    ) -> tuple[int, list[Evicted], int]:
        """One step: (items stored as free batches, evictions, items that found no room).

        Clears :attr:`pending` when no dead journal is left. An error here is reported
        and leaves the rest for the next look (the spool itself goes on)."""
        if self._recovery is None:
            own = self.journal.id if self.journal is not None else None
            self._recovery = Recovery(
                self.directory, self.dest, own, self.batch_items, LEASE_SECONDS
            )
        recovery = self._recovery
        protect = frozenset(sending)  # rows being delivered: never evicted
        evicted: list[Evicted] = []
        no_room = [0]

        def insert(batch: list[bytes], journal: str, mark: int) -> None:
            row, gone = store.insert(batch, False, protect, free=True, journal=(journal, mark))
            evicted.extend(gone)
            if row is None:
                no_room[0] += len(batch)

        def stored_mark(journal: str) -> int:
            return marks.mark_of(store.conn, journal)

        def forget(journal: str) -> None:
            marks.forget(store.conn, journal)

        try:
            stored, damaged, more = await call(recovery.step, insert, stored_mark, forget)
        except OSError as exc:
            recovery.release()
            self.pending = False
            report(
                "journal-recover",
                "bucket_logging: cannot recover a journal in %s (%s: %s); trying again later",
                self.directory,
                type(exc).__name__,
                exc,
                level=logging.ERROR,
            )
            return 0, evicted, no_room[0]
        self.recovered += stored
        self.damaged += damaged
        self.pending = more
        return stored, evicted, no_room[0]

    def close(self) -> None:
        """At the stop: close the journal (deleted when all settled), let go of any
        dead journal being recovered."""
        if self._recovery is not None:
            self._recovery.release()
        if self.journal is not None:
            self.journal.close()
