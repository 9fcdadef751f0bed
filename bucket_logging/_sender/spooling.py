"""The optional on-disk spool: nothing lost across crashes, deploys and long outages.

With ``spool_dir=`` (or env ``BUCKET_SPOOL_DIR``) a :class:`~bucket_logging.BulkSender`
writes every batch it takes off its in-memory queue to a SQLite database in that
directory before the batch's first request (:mod:`bucket_logging._spool.store`
says how and why), and deletes it once the server accepted it (2xx) or finally
rejected it (a 400 for a single item). A batch the sender gives up on (retries
exhausted, the shutdown deadline, another 4xx) is released in the spool instead
of being dropped; the next sender that opens the spool (a restarted process,
another worker, or this one after a pause) delivers it, oldest first.

Threads and memory. The caller's thread is untouched: it still only appends to
the in-memory queue. Every spool operation runs on one worker thread per sender
(:class:`~bucket_logging._runtime.worker.SpoolExecutor`), awaited by the sender's
loop, which keeps serving requests while SQLite waits on the disk or a lock.
Batches waiting for a request slot keep their items in memory up to a quarter of
``max_queue_bytes`` (so that a burst is sent without reading it back); beyond that
they are read back from the file when their turn comes. Fork: see
:mod:`bucket_logging._runtime.worker`.

The spool talks to its sender through :class:`SpoolHost` (queue, ledger, request
slots, delivery); each delivery's outcome is settled by a
:class:`~bucket_logging._sender.settle.Settlement`.

Failures. A spool that cannot be opened or used (garbage in the file, a read-only
or missing directory, a full disk, a lock held past the busy timeout) is reported
on the ``bucket_logging`` logger; the sender continues in memory only, delivering
what it still holds. A single malformed row is quarantined instead (see
:meth:`~bucket_logging._spool.store.SpoolStore.quarantine`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar

from .._exceptions import DeliveryError
from .._runtime import diagnostics as _diagnostics
from .._runtime import state as _process
from .._runtime.diagnostics import report
from .._runtime.worker import SpoolExecutor
from .._sender.config import SenderConfig
from .._sender.ledger import DropReason, Ledger, Ticket
from .._spool.rows import destination
from .._spool.store import MAINTENANCE_SECONDS, SPOOL_ERRORS, Evicted, SpoolStore
from .settle import Chunk, Settlement, deliver_from_memory

if TYPE_CHECKING:
    from .._sender.delivery import Delivery, Outcome, Pace, Post
    from .._sender.queue import Batch, BatchQueue

__all__ = ["Spool", "SpoolHost"]

_T = TypeVar("_T")


class SpoolHost(Protocol):
    """What the spool uses of its sender (:class:`~bucket_logging.BulkSender`)."""

    @property
    def ledger(self) -> Ledger:
        """Where items are counted."""

    @property
    def queue(self) -> BatchQueue:
        """The batches to persist."""

    @property
    def stopping(self) -> bool:
        """Whether the sender is stopping."""

    slots: asyncio.Semaphore
    pace: Pace
    delivery: Delivery

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run a task on the sender's loop."""

    async def deliver(
        self,
        batch: Batch | list[bytes],
        ticket: Ticket,
        post: Post | None = None,
        settle: Callable[[Outcome], Coroutine[Any, Any, None]] | None = None,
    ) -> None:
        """Deliver a batch holding a slot; free the slot and the ticket after."""

    def finished(self, ticket: Ticket) -> None:
        """A batch is no longer in flight."""

    def drop(self, reason: DropReason, count: int, status: int | None, detail: str) -> None:
        """Count and report items dropped."""

    def notify(self, error: DeliveryError) -> None:
        """Pass an error to ``on_error``."""

    def wake(self) -> None:
        """Pump again."""

    def check_waiters(self) -> None:
        """Answer the flushes that are done."""


class Spool:
    """A sender's spool: persists its batches, delivers them and the backlog.

    Lives on the sender's event loop; :meth:`pump` and :meth:`close` are the
    sender's hooks. Built by :class:`~bucket_logging.BulkSender` when ``spool_dir``
    is set.
    """

    def __init__(self, config: SenderConfig, host: SpoolHost) -> None:
        spool = config.spool
        if spool is None:
            raise ValueError("the sender has no spool_dir")
        self.host: Final = host
        self._config = config
        self.store: Final = SpoolStore(
            spool.directory, destination(config.destination), spool.max_bytes, spool.max_age
        )
        self.path = self.store.path
        self._executor: SpoolExecutor | None = None
        self._opened = False
        self.failed = False
        self._waiting: deque[Chunk] = deque()
        self._retained = 0  # bytes of waiting batches held in memory (see _persist)
        self._sending: dict[int, Chunk] = {}  # row -> batch being delivered
        self._cancelled: list[Chunk] = []  # deliveries cut short by the stop
        self._next_maintenance = 0.0
        self._backlog_after = 0.0
        self._backlog_maybe = True
        self._left_at_exit = 0

    def __repr__(self) -> str:
        state = "failed" if self.failed else "open" if self._opened else "new"
        return f"<Spool {self.path} {state} waiting={len(self._waiting)}>"

    @property
    def executor(self) -> SpoolExecutor | None:
        """The worker thread, once the spool was opened."""
        return self._executor

    async def call(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run ``fn(*args)`` on the spool's worker thread and await its result."""
        executor = self._executor
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
        if self._opened and self._executor is not None:
            # Best effort: the batches now sent from memory may still be in the file;
            # if a later sender replays them, they count as possible duplicates.
            store = self.store

            def mark_all() -> None:
                store.bound()
                store.mark_all_attempted()

            self._executor.submit(mark_all)
        self._hand_over()

    def _hand_over(self) -> None:
        """Deliver the waiting batches without the spool (after a failure)."""
        waiting = list(self._waiting)
        self._waiting.clear()
        self._retained = 0
        for chunk in waiting:
            self.host.spawn(deliver_from_memory(self, chunk))

    # -- hooks -----------------------------------------------------------------------

    async def pump(self) -> bool:
        """Persist the queue's sealed batches and send what a free request slot can take.

        Only sealed batches leave the queue, as without a spool (the sender seals the
        one being filled on its timer, for a flush or the close). Returns False when
        the spool is unusable: the sender's memory-only path takes over.
        """
        if self.failed:
            return False
        host = self.host
        try:
            if not self._opened and not await self._open():
                return False
            if time.monotonic() >= self._next_maintenance:
                await self._maintain()
            while not host.stopping and not self.failed:
                await self._dispatch()
                taken = host.queue.take(partial=False)
                if taken is None:
                    host.check_waiters()
                    break
                await self._persist(taken[0].entries(), taken[1])
        except SPOOL_ERRORS as exc:
            self.fail(exc)
        if self.failed:  # here, or in a delivery task meanwhile
            self._hand_over()
            return False
        return True

    async def close(self) -> None:
        """At the sender's stop: persist what is still queued, release what it owns."""
        host = self.host
        ledger = host.ledger
        try:
            if not self._opened or self.failed:
                return
            while (taken := host.queue.take()) is not None:
                await self._persist(taken[0].entries(), taken[1], send=False)
            cut = [(c.row, c.ambiguous or c.posting) for c in self._cancelled if c.row]
            memory_only = sum(c.count for c in self._cancelled if c.row is None)
            self._cancelled.clear()
            if cut:
                await self.call(self.store.release_rows, cut)
            await self.call(self.store.release_all)
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
            executor, self._executor = self._executor, None
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
            if self._executor is None:
                self._executor = SpoolExecutor()
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

    async def _maintain(self) -> None:
        self._next_maintenance = time.monotonic() + MAINTENANCE_SECONDS
        expired, full = await self.call(self.store.maintain, frozenset(self._sending))
        self._evicted(expired, "spool_expired")
        self._evicted(full, "spool_full")
        self._backlog_maybe = True

    async def _persist(self, batch: list[bytes], ticket: Ticket, send: bool = True) -> None:
        """Write one batch taken off the queue; keep its items if it is sent next."""
        host = self.host
        size = sum(map(len, batch))
        sent_next = (
            send and not self._waiting and not host.slots.locked() and not self._backlog_maybe
        )
        # Waiting batches keep their items in memory up to a quarter of the queue's
        # bytes, so that a burst is sent without reading it back.
        retain_limit = self._config.max_queue_bytes // 4
        retain = sent_next or (send and self._retained + size <= retain_limit)
        chunk = Chunk(ticket, len(batch), size=size)
        try:
            row, evicted = await self.call(
                self.store.insert,
                batch,
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
            memory = sum(1 for c in self._waiting if c.row is None)
            if memory >= self._config.max_concurrent_requests:
                host.drop("spool_full", len(batch), None, "the spool is full")
                host.finished(ticket)
                return
            retain = True
        chunk.row = row
        chunk.marked = sent_next and row is not None
        if retain:
            chunk.items = batch
            self._retained += size
        self._waiting.append(chunk)

    def _unretain(self, chunks: Iterable[Chunk]) -> None:
        """Waiting batches leave the waiting list: stop counting their items."""
        for chunk in chunks:
            if chunk.items is not None:
                self._retained -= chunk.size

    async def _dispatch(self) -> None:
        """Start deliveries while a request slot is free: the backlog, oldest first,
        then this sender's own batches (those first while a flush or exit waits)."""
        host = self.host
        while not host.stopping and not host.slots.locked() and not self.failed:
            closing = host.pace.closing_deadline
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
                        items = await self.call(self.store.load, chunk.row)
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
            await host.slots.acquire()
            task = host.spawn(self._run(chunk, items))
            task.add_done_callback(self._delivered)

    async def _run(self, chunk: Chunk, items: list[bytes]) -> None:
        host = self.host
        try:
            if chunk.row is None or self.failed:
                await host.deliver(items, chunk.ticket)
            else:
                settlement = Settlement(self, chunk)
                await host.deliver(items, chunk.ticket, settlement.post, settlement.settle)
        except asyncio.CancelledError:
            self._cancelled.append(chunk)
            raise
        finally:
            if chunk.row is not None:
                self._sending.pop(chunk.row, None)

    def _delivered(self, task: asyncio.Task[None]) -> None:
        self.host.wake()  # a slot is free: pump again

    def keep(self, batch: list[bytes], reason: DropReason, status: int | None, why: str) -> None:
        """Items given up on stay in the spool: counted as spooled, reported."""
        host = self.host
        count = len(batch)
        host.ledger.count_spooled(count)
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
        """Take the oldest free batch of the backlog, unless a flush or exit is waiting."""
        host = self.host
        if (
            not self._backlog_maybe
            or host.pace.flush_waiting()
            or host.pace.closing_deadline is not None
            or time.monotonic() < self._backlog_after
        ):
            return None
        claimed = await self.call(self.store.claim)
        if claimed is None:
            self._backlog_maybe = False
            return None
        row, items, attempted = claimed
        # pending until it is finished; a flush that starts meanwhile waits for it
        ticket = host.ledger.replay(len(items), redelivered=attempted)
        chunk = Chunk(ticket, len(items), row)
        chunk.marked = True  # the claim set attempted = 1
        chunk.items = items
        return chunk

    async def _leave_waiting(self) -> None:
        """The shutdown deadline passed: leave every waiting batch in the spool."""
        host = self.host
        waiting = list(self._waiting)
        self._waiting.clear()
        self._retained = 0
        rows = [(c.row, False) for c in waiting if c.row is not None]
        if rows:
            await self.call(self.store.release_rows, rows)
        left = sum(c.count for c in waiting if c.row is not None)
        lost = sum(c.count for c in waiting if c.row is None)
        host.ledger.count_spooled(left)
        self._left_at_exit += left
        if lost:
            host.drop("shutdown", lost, None, "not delivered before the shutdown deadline")
        for chunk in waiting:
            host.ledger.release(chunk.ticket)
        host.check_waiters()

    def _taken_over(self, chunk: Chunk) -> None:
        """Our batch is gone (another sender took it over after our lease expired)."""
        self.host.ledger.count_spooled(chunk.count)
        self.host.finished(chunk.ticket)

    def _evicted(self, evicted: list[Evicted], reason: DropReason) -> None:
        """Count (and report) batches deleted for the size or age limit."""
        if not evicted:
            return
        host = self.host
        total = sum(count for _, _, count in evicted)
        mine = {row for row, own, _ in evicted if own}
        dropped_own = [c for c in self._waiting if c.row in mine]
        if dropped_own:
            self._waiting = deque(c for c in self._waiting if c.row not in mine)
            self._unretain(dropped_own)
        host.ledger.count_evicted(reason, total, sum(c.count for c in dropped_own))
        why = (
            "older than spool_max_age"
            if reason == "spool_expired"
            else "the spool reached spool_max_bytes"
        )
        error = DeliveryError(reason, total, None, f"{why} (oldest first)")
        report("drop-" + reason, "bucket_logging: %s", error)
        host.notify(error)
        for chunk in dropped_own:
            host.ledger.release(chunk.ticket)
        if dropped_own:
            host.check_waiters()
