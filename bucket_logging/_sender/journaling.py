"""The spool's journal, on the sender's side: opened, settled, and dead ones recovered.

With a spool, every item a log call queues is first written to this process's
journal (:mod:`bucket_logging._spool.journal`, by the queue on the calling thread).
This module opens the journal when the sender starts, stores batches with their
marks (:meth:`JournalSide.store_batch`), moves its checkpoint on as batches are
stored or delivered (:meth:`JournalSide.settle`), and drives the recovery of
journals whose processes ended (:mod:`bucket_logging._spool.recovery`), one segment
a step on the spool's worker thread, between the engine's own work: the
application's start-up never waits for it.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from .._runtime.diagnostics import report
from .._spool import marks
from .._spool.journal import Journal
from .._spool.recovery import Recovery
from .._spool.store import LEASE_SECONDS, Evicted, SpoolStore
from .config import SenderConfig
from .ledger import DropReason, Ledger
from .settle import Chunk

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
        store: the spool's store.
        batch_items: the most items in a recovered batch.
        ledger: where recovered items are counted (as replayed).
        evicted: counts batches deleted for the size limit (the spool's).
        drop: reports items given up on (the spool's).
    """

    def __init__(
        self,
        store: SpoolStore,
        batch_items: int,
        ledger: Ledger,
        evicted: Callable[[list[Evicted], DropReason], None],
        drop: Callable[[DropReason, int, int | None, str], None],
    ) -> None:
        self.store = store
        self.directory = store.directory
        self.dest = store.dest
        self.batch_items = batch_items
        self._ledger = ledger
        self._evicted = evicted
        self._drop = drop
        self.journal: Journal | None = None
        self._recovery: Recovery | None = None
        #: whether a look for dead journals is due
        self.pending = True
        #: items recovered from dead journals, and damaged records skipped
        self.recovered = 0
        self.damaged = 0
        # [mark, settled, store] of the batches taken off the queue since the oldest one
        # sent before it was stored and not settled yet (see hold), in the queue's order
        self._held: deque[list[Any]] = deque()

    def mark(self, mark: int) -> tuple[str, int] | None:
        """What :meth:`SpoolStore.insert` records with a batch whose journal mark is
        ``mark`` (None without a journal): ``mark``, or less when an earlier batch is
        held (its records must stay after the recorded mark: recovery sends them)."""
        journal = self.journal
        if journal is None or journal.failed or mark <= 0:
            return None
        start = journal.settled
        for held, settled, _ in self._held:
            if not settled and held != mark:
                return journal.id, min(mark, start)
            start = held
        return journal.id, mark

    @property
    def usable(self) -> bool:
        """Whether this process's journal is open and writable."""
        return self.journal is not None and not self.journal.failed

    def hold(self, mark: int, store: Callable[[], Awaitable[None]]) -> None:
        """A batch is sent before it is stored (its first request): the checkpoint
        waits at its start until it is settled (delivered, stored or dropped);
        ``store`` stores it (see :meth:`store_held`)."""
        if self.usable and mark > 0:
            self._held.append([mark, False, store])

    def attempt(self, mark: int) -> None:
        """A held batch's first request starts (see :meth:`Journal.attempt`)."""
        if self.journal is not None:
            self.journal.attempt(mark)

    @property
    def holding(self) -> bool:
        """Whether a batch sent before it was stored is not settled yet."""
        return bool(self._held)

    async def store_held(self, before: int | None = None) -> None:
        """Store every held batch not settled yet (those before mark ``before`` only,
        when given). Called before a later batch is stored or settled, and at the
        close: a batch settled while an earlier one is only in the journal would be
        recovered again after a kill (recovery starts at the earlier one), so none is."""
        for mark, settled, store in list(self._held):
            if before is not None and mark >= before:
                break
            if not settled:
                await store()

    def forget(self) -> None:
        """On the worker thread, at a clean stop: this journal's mark is not needed."""
        journal = self.journal
        if journal is not None and journal.settled >= journal.written:
            marks.forget(self.store.conn, journal.id)

    def settle(self, mark: int) -> None:
        """The batch whose journal mark is ``mark`` is settled: stored (or delivered,
        given to memory, dropped). The checkpoint moves on to the last mark before which
        every batch is settled (batches held by :meth:`hold` settle in any order)."""
        journal = self.journal
        if journal is None:
            return
        held = self._held
        if held:
            for entry in held:
                if entry[0] == mark:
                    entry[1] = True
                    break
            else:
                if mark > journal.settled:  # (taken after the held ones: stored)
                    held.append([mark, True, None])
            mark = 0
            while held and held[0][1]:
                mark = held.popleft()[0]
            if not mark:
                return
        journal.checkpoint(mark)
        journal.prepare()  # the next segment, ahead of the log calls

    async def store_batch(
        self,
        call: Callable[..., Awaitable[Any]],
        entries: list[bytes],
        attempted: bool,
        mark: int,
        sending: Iterable[int],
    ) -> int | None:
        """Store one of this sender's batches with its journal mark (one transaction),
        settle the mark, count the rows deleted to make room (never one of ``sending``):
        its row, or None when no room could be made. Raises the spool's errors
        (:data:`~.store.SPOOL_ERRORS`)."""
        row: int | None
        row, evicted = await call(
            self.store.insert, entries, attempted, frozenset(sending), self.mark(mark)
        )
        self.settle(mark)
        self._evicted(evicted, "spool_full")
        return row

    def heartbeat(self) -> None:
        """Renew this journal's heartbeat, and look for dead journals again."""
        if self.journal is not None:
            self.journal.heartbeat()
        self.pending = True

    async def recover(
        self, call: Callable[..., Awaitable[Any]], sending: Iterable[int]
    ) -> list[Chunk]:
        """One step: the batches stored, this sender's to send (their items in memory).

        The batches are this sender's own rows (as those it persists), sent without
        being read back nor checked again (their records' checksums held). Clears
        :attr:`pending` when no dead journal is left. An error here is reported and
        leaves the rest for the next look (the spool itself goes on)."""
        if self._recovery is None:
            own = self.journal.id if self.journal is not None else None
            self._recovery = Recovery(
                self.directory, self.dest, own, self.batch_items, LEASE_SECONDS
            )
        recovery = self._recovery
        store = self.store
        protect = frozenset(sending)  # rows being delivered: never evicted
        evicted: list[Evicted] = []
        stored: list[tuple[int, list[bytes], bool]] = []
        no_room = [0]

        def insert(batch: list[bytes], journal: str, mark: int, attempted: bool) -> None:
            row, gone = store.insert(batch, attempted, protect, journal=(journal, mark))
            evicted.extend(gone)
            if row is None:
                no_room[0] += len(batch)
            else:
                stored.append((row, batch, attempted))

        def stored_mark(journal: str) -> int:
            return marks.mark_of(store.conn, journal)

        def forget(journal: str) -> None:
            marks.forget(store.conn, journal)

        try:
            count, damaged, more = await call(recovery.step, insert, stored_mark, forget)
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
            return []
        self.recovered += count
        self.damaged += damaged
        self.pending = more
        self._evicted(evicted, "spool_full")
        if no_room[0]:
            self._drop("spool_full", no_room[0], None, "the spool is full (recovering a journal)")
        chunks = []
        for row, batch, attempted in stored:
            chunk = Chunk(self._ledger.replay(len(batch), redelivered=attempted), len(batch), row)
            chunk.marked = attempted
            chunk.items = batch
            chunk.size = sum(map(len, batch))
            chunks.append(chunk)
        return chunks

    def close(self) -> None:
        """At the stop: close the journal (deleted when all settled), let go of any
        dead journal being recovered."""
        if self._recovery is not None:
            self._recovery.release()
        if self.journal is not None:
            self.journal.close()
