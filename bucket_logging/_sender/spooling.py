"""The optional on-disk spool: nothing lost across crashes, deploys and long outages.

With ``spool_dir=`` (or env ``BUCKET_SPOOL_DIR``) a :class:`~bucket_logging.BulkSender`
writes each item to its journal as it is queued, and the batches it takes off its
in-memory queue to a SQLite database in that directory (:mod:`bucket_logging._spool`
says how and why): each batch before its first request, unless the spool is idle, a
slot is free and the endpoint answers: then it is sent first and stored only if need
be (see :class:`~bucket_logging._sender.settle.FirstAttempt`). It deletes a stored
batch once the server accepted it (2xx) or finally rejected it.
A batch the sender gives up on (retries exhausted, the shutdown deadline, another
4xx) is released in the spool instead of being dropped; the next sender that opens
the spool (a restarted process, another worker, or this one after a pause) delivers
it, oldest first.

Threads and memory. The caller's thread is untouched: it still only appends to
the in-memory queue. Every spool operation runs on one worker thread per sender
(:class:`~bucket_logging._runtime.worker.Worker`), awaited by the sender's
loop, which keeps serving requests while SQLite waits on the disk or a lock.
Batches waiting for a request slot keep their items in memory up to a quarter of
``max_queue_bytes`` (so that a burst is sent without reading it back); beyond that
they are read back from the file when their turn comes. Fork: see
:mod:`bucket_logging._runtime.worker`.

One way: the engine (:class:`~bucket_logging._sender.engine.SenderLoop`) drives,
the spool answers. The engine hands it the batches it takes off the queue and does
not send first (:meth:`Spool.persist`), asks it which batch to send next
(:meth:`Spool.next_batch`) and settles each delivery through a
:class:`~bucket_logging._sender.settle.Settlement`; the spool never starts a
delivery. It counts in the sender's ledger and reports drops through ``drop``.

Failures. A spool that cannot be opened or used (garbage in the file, a read-only
or missing directory, a full disk, a lock held past the busy timeout) is reported
on the ``bucket_logging`` logger; the sender continues in memory only, delivering
what it still holds. A single malformed row is quarantined instead (see
:meth:`~bucket_logging._spool.store.SpoolStore.quarantine`).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Final, TypeVar

from .._exceptions import DeliveryError
from .._runtime import diagnostics as _diagnostics
from .._runtime import state as _process
from .._runtime.diagnostics import report
from .._runtime.worker import Worker
from .._spool.rows import destination
from .._spool.store import MAINTENANCE_SECONDS, SPOOL_ERRORS, Evicted, SpoolStore
from .config import SenderConfig
from .journaling import JournalSide
from .ledger import DropReason, Ledger, Ticket
from .observe import SpoolLevels
from .settle import Chunk

__all__ = ["Drop", "LevelsMeter", "Spool", "retained"]

_T = TypeVar("_T")


#: How the spool reports items it gives up on (the engine's ``drop``: counted as
#: dropped, reported, passed to ``on_error``).
Drop = Callable[[DropReason, int, "int | None", str], None]


def retained(chunks: Iterable[Chunk]) -> int:
    """The bytes of these batches' items held in memory (they leave the waiting list)."""
    return sum(chunk.size for chunk in chunks if chunk.items is not None)


class LevelsMeter:
    """A spool file's levels for the metrics, measured at most once a second."""

    def __init__(self, max_bytes: int) -> None:
        #: The levels as last measured.
        self.levels = SpoolLevels(max_bytes=max_bytes)
        self._at = 0.0

    async def measure(self, spool: Spool) -> None:
        """Measure ``spool``'s file on its worker (a failure fails the spool)."""
        now = time.monotonic()
        if now < self._at + 1.0:
            return
        self._at = now
        max_bytes = self.levels.max_bytes
        if not spool.opened:
            self.levels = SpoolLevels(max_bytes=max_bytes, failed=spool.failed)
            return
        try:
            used, items, oldest = await spool.call(spool.store.measure)
        except SPOOL_ERRORS as exc:
            spool.fail(exc)
            self.levels = SpoolLevels(max_bytes=max_bytes, failed=True)
            return
        self.levels = SpoolLevels(used, max_bytes, items, oldest)


class Spool:
    """A sender's spool: persists its batches, delivers them and the backlog.

    Lives on the sender's event loop, called by its engine only. Built when
    ``spool_dir`` is set.

    Args:
        config: the sender's configuration.
        ledger: the sender's ledger (spooled, replayed, evicted items are counted there).
        drop: reports items given up on (see :data:`Drop`).
        notify: passes an error to the sender's ``on_error``.
    """

    def __init__(
        self,
        config: SenderConfig,
        ledger: Ledger,
        drop: Drop,
        notify: Callable[[DeliveryError], None],
    ) -> None:
        spool = config.spool
        if spool is None:
            raise ValueError("the sender has no spool_dir")
        self._ledger = ledger
        #: reports items given up on (also the settlements' when the spool failed)
        self.drop: Final = drop
        self._notify = notify
        self._config = config
        self.store: Final = SpoolStore(
            spool.directory, destination(config.destination), spool.max_bytes, spool.max_age
        )
        self.path = self.store.path
        self.journal = JournalSide(self.store, config.max_batch_items, ledger, self._evicted, drop)
        self.wake: Callable[[], object] | None = None  # the engine's: pump again
        #: The worker thread, once the spool was opened.
        self.executor: Worker | None = None
        self._opened = False
        self.failed = False
        self._waiting: deque[Chunk] = deque()
        self._retained = 0  # bytes of waiting batches held in memory (see persist)
        #: row -> batch being delivered (the store never evicts them)
        self.in_flight: dict[int, Chunk] = {}
        self._cancelled: list[Chunk] = []  # deliveries cut short by the stop
        self._next_maintenance = 0.0
        self._backlog_after = 0.0
        self._backlog_maybe = True
        self._left_at_exit = 0
        #: The file's levels for the metrics (the engine measures them).
        self.meter: Final = LevelsMeter(spool.max_bytes)

    def __repr__(self) -> str:
        state = "failed" if self.failed else "open" if self._opened else "new"
        return f"<Spool {self.path} {state} waiting={len(self._waiting)}>"

    @property
    def opened(self) -> bool:
        """Whether the file was opened (and has not failed since)."""
        return self._opened and not self.failed

    @property
    def idle(self) -> bool:
        """Nothing of this sender's waits, the backlog is known to be empty, the journal works."""
        return self.journal.usable and not (self.failed or self._waiting or self._backlog_maybe)

    async def call(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run ``fn(*args)`` on the spool's worker thread and await its result."""
        executor = self.executor
        if executor is None:
            raise RuntimeError("the spool worker is not running")
        store = self.store

        def bounded() -> _T:
            store.bound()  # interrupted past CALL_SECONDS inside SQLite
            return fn(*args)

        return await executor.call(bounded)

    def fail(self, exc: BaseException) -> None:
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
        if self._opened and self.executor is not None:
            # Best effort: the batches now sent from memory may still be in the file;
            # if a later sender replays them, they count as possible duplicates.
            store = self.store

            def mark_all() -> None:
                store.bound()
                store.mark_all_attempted()

            self.executor.submit(mark_all)

    def hand_over(self) -> list[Chunk]:
        """After a failure: the waiting batches, for the engine to deliver from memory
        (with :meth:`read_back` for those whose items are only in the file)."""
        waiting = list(self._waiting)
        self._waiting.clear()
        self._retained = 0
        return waiting

    async def read_back(self, chunk: Chunk) -> list[bytes] | None:
        """The items of a batch handed over, read back once if need be; None if they
        cannot be (the caller drops them as ``spool_error``)."""
        if chunk.items is not None or chunk.row is None:
            return chunk.items
        try:
            return await self.call(self.store.read, chunk.row)
        except SPOOL_ERRORS:
            return None

    # -- hooks -----------------------------------------------------------------------

    async def ready(self) -> bool:
        """Open the spool on first use, and maintain it when that is due; False when it
        cannot be used (the engine's memory-only path takes over)."""
        if self.failed:
            return False
        try:
            if not self._opened and not await self._open():
                return False
            if time.monotonic() >= self._next_maintenance:
                await self._maintain()
            if self.journal.pending:
                await self._recover()
        except SPOOL_ERRORS as exc:
            self.fail(exc)
        return not self.failed

    async def close(self, queued: Iterable[tuple[list[bytes], Ticket, int]]) -> None:
        """At the sender's stop: persist what is still ``queued`` (batch, ticket, mark),
        release what it owns."""
        ledger = self._ledger
        try:
            if not self._opened or self.failed:
                return
            for batch, ticket, mark in queued:
                await self.persist(batch, ticket, send_soon=False, mark=mark)
            cut = [(c.row, c.marked or c.ambiguous or c.posting) for c in self._cancelled if c.row]
            memory_only = sum(c.count for c in self._cancelled if c.row is None)
            self._cancelled.clear()
            if cut:
                await self.call(self.store.release_rows, cut)
            await self.call(self.store.release_all)
            await self.call(self.journal.forget)
            memory_only += sum(c.count for c in self._waiting if c.row is None)
            for chunk in self._waiting:
                if chunk.row is not None:
                    ledger.release(chunk.ticket)
            left = max(0, ledger.pending - memory_only)
            ledger.count_spooled(left)
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
        except SPOOL_ERRORS as exc:
            report(
                "spool",
                "bucket_logging: could not leave the queued items in the spool at %s (%s)",
                self.path,
                exc,
                level=logging.ERROR,
            )
        finally:
            self.journal.close()
            executor, self.executor = self.executor, None
            if executor is not None:
                executor.submit(self.store.close)
                executor.stop()

    # -- internals -------------------------------------------------------------------

    async def _open(self) -> bool:
        try:
            if _process.state.forked_while_busy:
                raise RuntimeError(
                    "this process was forked while a spool operation was running in the "
                    "parent; SQLite cannot be used safely here"
                )
            if self.executor is None:
                self.executor = Worker("bucket_logging-spool", wait_at_fork=True)
            batches, items, expired, full = await self.call(self.store.open)
        except SPOOL_ERRORS as exc:
            self.fail(exc)
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

    async def _recover(self) -> None:  # one step: dead journals into the waiting batches
        limit = self._config.max_queue_bytes // 4  # items kept in memory as persist() does
        for chunk in await self.journal.recover(self.call, self.in_flight):
            if self._retained + chunk.size <= limit:
                self._retained += chunk.size
            else:
                chunk.items = None  # read back when its turn comes
            self._waiting.append(chunk)
        if self.journal.pending and self.wake is not None:
            self.wake()

    async def _maintain(self) -> None:
        self._next_maintenance = time.monotonic() + MAINTENANCE_SECONDS
        self.journal.heartbeat()
        expired, full = await self.call(self.store.maintain, frozenset(self.in_flight))
        self._evicted(expired, "spool_expired")
        self._evicted(full, "spool_full")
        self._backlog_maybe = True

    async def persist(
        self, batch: list[bytes], ticket: Ticket, *, send_soon: bool, mark: int = 0
    ) -> None:
        """Store one batch taken off the queue (when the spool is :attr:`idle` and a
        request slot is free, the engine sends the batch first instead: see
        :class:`~bucket_logging._sender.settle.FirstAttempt`).

        ``send_soon``: a request slot is free now (False at the close: only stored).
        ``mark``: the batch's journal mark (settled once it is stored).
        """
        size = sum(map(len, batch))
        # Waiting batches keep their items in memory up to a quarter of the queue's
        # bytes, so that a burst is sent without reading it back.
        retain = send_soon and self._retained + size <= self._config.max_queue_bytes // 4
        chunk = Chunk(ticket, len(batch), size=size)
        try:  # (not attempted; with recovery's exact mark)
            row = await self.journal.store_batch(self.call, batch, False, mark, self.in_flight)
        except BaseException:
            chunk.items = batch  # the memory fallback delivers it
            self._waiting.append(chunk)
            raise
        if row is None:
            # No room, even after deleting everything this sender may delete: the
            # batch is sent from memory, as without a spool, within a small bound.
            memory = sum(1 for c in self._waiting if c.row is None)
            if memory >= self._config.max_concurrent_requests:
                self.drop("spool_full", len(batch), None, "the spool is full")
                self._ledger.release(ticket)
                return
            retain = True
        chunk.row = row
        if retain:
            chunk.items = batch
            self._retained += size
        self._waiting.append(chunk)

    async def next_batch(self, *, flush_waiting: bool, closing: bool) -> Chunk | None:
        """The batch to send next, its items loaded: the backlog, oldest first, then
        this sender's own batches (those first while a flush or the exit waits); None
        when there is none. The engine delivers it with a request slot held, and calls
        :meth:`sending` then :meth:`sent`."""
        while not self.failed:
            claimed = None if flush_waiting or closing else await self._claim()
            if claimed is not None:
                return claimed
            if not self._waiting:
                return None
            chunk = self._waiting.popleft()
            self._retained -= retained((chunk,))
            if chunk.items is None and chunk.row is not None:
                try:
                    items = await self.call(self.store.load, chunk.row)
                except BaseException:
                    self._waiting.appendleft(chunk)
                    raise
                if items is None:
                    self._taken_over(chunk)
                    continue
                chunk.items = items
                chunk.marked = True
            return chunk
        return None

    def sending(self, chunk: Chunk) -> None:
        """``chunk``'s delivery starts (its row is not the store's to evict meanwhile)."""
        if chunk.row is not None:
            self.in_flight[chunk.row] = chunk

    def sent(self, chunk: Chunk, *, cancelled: bool) -> None:
        """``chunk``'s delivery ended (``cancelled``: cut short by the stop)."""
        if cancelled:
            self._cancelled.append(chunk)
        if chunk.row is not None:
            self.in_flight.pop(chunk.row, None)

    def keep(self, batch: list[bytes], reason: DropReason, status: int | None, why: str) -> None:
        """Items given up on stay in the spool: counted as spooled, reported."""
        count = len(batch)
        self._ledger.count_spooled(count)
        config = self._config
        self._backlog_after = time.monotonic() + max(config.retry.cap, config.flush_interval)
        self._backlog_maybe = True
        if reason == "shutdown":
            self._left_at_exit += count  # one summary at exit, from close()
            return
        how = f"HTTP {status}: " if status is not None else ""
        report(
            "spool-left",
            "bucket_logging: %d item(s) not delivered yet (%s, %s%s); left in the spool "
            "at %s for a later attempt",
            count,
            reason,
            how,
            _diagnostics.redact(why),
            self.path,
        )

    async def _claim(self) -> Chunk | None:
        """Take the oldest free batch of the backlog (none while it is known empty)."""
        if not self._backlog_maybe or time.monotonic() < self._backlog_after:
            return None
        claimed = await self.call(self.store.claim)
        if claimed is None:
            self._backlog_maybe = False
            return None
        row, items, attempted = claimed
        # pending until it is finished; a flush that starts meanwhile waits for it
        ticket = self._ledger.replay(len(items), redelivered=attempted)
        chunk = Chunk(ticket, len(items), row)
        chunk.marked = True  # the claim set attempted = 1
        chunk.items = items
        return chunk

    async def leave_waiting(self) -> None:
        """The shutdown deadline passed: leave every waiting batch in the spool."""
        waiting = list(self._waiting)
        self._waiting.clear()
        self._retained = 0
        rows = [(c.row, False) for c in waiting if c.row is not None]
        if rows:
            await self.call(self.store.release_rows, rows)
        left = sum(c.count for c in waiting if c.row is not None)
        lost = sum(c.count for c in waiting if c.row is None)
        self._ledger.count_spooled(left)
        self._left_at_exit += left
        if lost:
            self.drop("shutdown", lost, None, "not delivered before the shutdown deadline")
        for chunk in waiting:
            self._ledger.release(chunk.ticket)

    def _taken_over(self, chunk: Chunk) -> None:
        """Our batch is gone (another sender took it over after our lease expired)."""
        self._ledger.count_spooled(chunk.count)
        self._ledger.release(chunk.ticket)

    def _evicted(self, evicted: list[Evicted], reason: DropReason) -> None:
        """Count (and report) batches deleted for the size or age limit."""
        if not evicted:
            return
        total = sum(count for _, _, count in evicted)
        mine = {row for row, own, _ in evicted if own}
        dropped_own = [c for c in self._waiting if c.row in mine]
        if dropped_own:
            self._waiting = deque(c for c in self._waiting if c.row not in mine)
            self._retained -= retained(dropped_own)
        self._ledger.count_evicted(reason, total, sum(c.count for c in dropped_own))
        why = (
            "older than spool_max_age"
            if reason == "spool_expired"
            else "the spool reached spool_max_bytes"
        )
        error = DeliveryError(reason, total, None, f"{why} (oldest first)")
        report("drop-" + reason, "bucket_logging: %s", error)
        self._notify(error)
        for chunk in dropped_own:
            self._ledger.release(chunk.ticket)
