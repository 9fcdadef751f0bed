"""The sender's engine: one daemon thread running an asyncio loop that sends batches.

A :class:`SenderLoop` belongs to one :class:`~bucket_logging.BulkSender` in one
process (a forked child builds a new one). Its loop wakes when the batch queue
seals a full batch, when a request slot frees up, on the flush interval, and when
a flush or the close asks; it takes batches off the queue and delivers each with
:class:`~bucket_logging._sender.delivery.Delivery`, at most ``max_concurrent_requests`` at
once, through the spool when there is one: the engine hands the spool its batches and
asks it what to send next (:class:`~bucket_logging._sender.spooling.Spool`: the spool
never starts a delivery itself). Flushes wait here for a ledger
:class:`~bucket_logging._sender.ledger.Mark`.

Data flow: the queue's sealed batches → :meth:`SenderLoop.pump` → (spool: stored
first, unless it is idle: then sent first and stored only if need be) →
:meth:`SenderLoop.deliver` → HTTP → the outcome counted in the ledger.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ssl
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import httpx

from .._exceptions import DeliveryError
from .._runtime import diagnostics as _diagnostics
from .._runtime import shutdown as _shutdown
from .._runtime.diagnostics import report
from .._spool.store import SPOOL_ERRORS
from . import http_stack  # the HTTP client's modules, imported now
from .config import SenderConfig
from .delivery import Delivery, Outcome, Pace, Post
from .journaling import open_journal
from .ledger import DropReason, Ledger, Mark, Ticket
from .loop import ResolvingLoop
from .observe import Levels, Publisher, observers
from .queue import Batch, BatchQueue
from .settle import Chunk, FirstAttempt, Settlement
from .spooling import Spool
from .waiters import Waiters

__all__ = ["SenderLoop", "levels", "new_event_loop"]


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The sender thread's event loop (the one place a sender's loop is made).

    It resolves host names on a thread started with it (see :mod:`bucket_logging._sender.loop`):
    asyncio's default executor refuses work once the interpreter shuts down. Raises
    :class:`RuntimeError` where no thread can be started.
    """
    return ResolvingLoop()


class SenderLoop:
    """The thread, loop, HTTP client and spool of one sender in one process.

    Args:
        config: the sender's options.
        ledger: where everything is counted.
        queue: the batches to send.
        verify: TLS verification for the client (a context made once per sender).
        transport: an httpx transport (tests), or None.
        on_error: returns the sender's ``on_error`` (an attribute the application may
            set at any time), or None.
    """

    def __init__(
        self,
        config: SenderConfig,
        ledger: Ledger,
        queue: BatchQueue,
        *,
        verify: ssl.SSLContext | bool | str,
        transport: httpx.AsyncBaseTransport | None,
        on_error: Callable[[], Callable[[DeliveryError], object] | None],
    ) -> None:
        self.config = config
        self._ledger = ledger
        self._queue = queue
        self.on_error = on_error
        self.thread: threading.Thread | None = None
        #: The thread's id once it runs (flush() on it must not wait for itself).
        self.thread_id: int | None = None
        self._stopping = False
        self._waiters = Waiters(ledger)
        self.spool: Spool | None = (
            Spool(config, ledger, self.drop, self.notify) if config.spool is not None else None
        )
        if self.spool is not None:  # this process's journal, opened here (see queue)
            if queue.journal is None:
                queue.journal = open_journal(config, self.spool.store.dest)
            self.spool.journal.journal = queue.journal
            self.spool.wake = self.wake_soon
        # Everything the loop's callbacks touch is made here, on the caller's thread:
        # the caller never waits for the new thread (dictConfig holds logging's lock
        # while it builds handlers), and a fork during a half-done import on the
        # sender's thread would leave the child a partial module.
        _diagnostics.silence_http_client_logs()
        # The loop's constructor logs "Using selector" on asyncio's logger: for that
        # moment this thread counts as the sender's, so the record is filtered out.
        me = threading.get_ident()
        mine = me not in _diagnostics.internal_threads
        _diagnostics.internal_threads.add(me)
        self._cannot_start: RuntimeError | None = None
        try:
            self.loop: asyncio.AbstractEventLoop | None = new_event_loop()
        except RuntimeError as exc:  # "can't create new thread at interpreter shutdown"
            self.loop = None
            self._cannot_start = exc
        finally:
            if mine:
                _diagnostics.internal_threads.discard(me)
        self._wake = asyncio.Event()
        self.pace = Pace(self._waiters.flush_waiting)
        self.slots = asyncio.Semaphore(config.max_concurrent_requests)
        self._tasks: set[asyncio.Task[None]] = set()
        self._client = http_stack.make_client(config, verify, transport)
        self.delivery = Delivery.configured(self._client, config, ledger, self.pace, self.notify)
        self.delivery.on_failure = self.check_waiters  # (the close's wait for the backlog)
        #: Tells the metrics observers (if any) what was counted, on this thread only.
        self.publisher = Publisher(ledger)

    def start(self) -> bool:
        """Start the thread (never waiting for it); False if it could not start."""
        loop = self.loop
        if loop is None:
            report(
                "start", "bucket_logging: cannot start the sender thread (%s)", self._cannot_start
            )
            return False
        thread = threading.Thread(
            target=self._thread_main, args=(loop,), name="bucket_logging-sender", daemon=True
        )
        try:
            _shutdown.start_thread(thread)
        except RuntimeError as exc:  # e.g. "can't create new thread at interpreter shutdown"
            self.loop = None
            loop.close()
            report("start", "bucket_logging: cannot start the sender thread (%s)", exc)
            return False
        self.thread = thread
        if self.spool is not None:
            self.call_soon(self._wake.set)  # open the spool and replay its backlog now
        return True

    # -- from any thread -----------------------------------------------------------------

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> bool:
        """Run ``callback(*args)`` on the loop; False when the loop is gone."""
        loop = self.loop
        if loop is None:
            return False
        try:
            loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop is closed
            return False
        return True

    def wake_soon(self) -> None:
        """A batch was sealed: pump soon."""
        self.call_soon(self._wake.set)

    def request_flush(self, mark: Mark) -> concurrent.futures.Future[bool] | None:
        """A future answered once ``mark`` is reached (None if the loop is gone)."""
        future: concurrent.futures.Future[bool] = concurrent.futures.Future()
        if not self.call_soon(self._add_waiter, mark, future):
            return None
        return future

    def request_backlog(self) -> concurrent.futures.Future[bool] | None:
        """At the close: answered once the spool's backlog is delivered, or cannot be now."""
        future: concurrent.futures.Future[bool] = concurrent.futures.Future()
        return future if self.call_soon(self._add_backlog_waiter, future) else None

    def _add_backlog_waiter(self, future: concurrent.futures.Future[bool]) -> None:
        self._waiters.add_backlog(future)
        self._wake.set()
        self.check_waiters()

    def start_closing(self, deadline: float) -> None:
        """Cut back-offs short; what is not delivered by ``deadline`` is given up."""
        self.call_soon(self._set_closing, deadline)

    def stop(self) -> None:
        """End the loop soon (after the close's flush): deliveries are cancelled."""
        self.call_soon(self._stop)

    # -- the loop --------------------------------------------------------------------------

    def _thread_main(self, loop: asyncio.AbstractEventLoop) -> None:
        ident = self.thread_id = threading.get_ident()
        _diagnostics.internal_threads.add(ident)
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:  # pragma: no cover - last resort
            report("thread", "bucket_logging: the sender stopped unexpectedly: %r", exc)
        finally:
            with contextlib.suppress(Exception):
                loop.close()
            # thread ids are reused: a later application thread must not pass for ours
            _diagnostics.internal_threads.discard(ident)

    async def _main(self) -> None:
        interval = self.config.flush_interval
        tick = time.monotonic() + interval  # when the batch being filled goes out
        try:
            while not self._stopping:
                now = time.monotonic()
                if not self._wake.is_set() and now < tick:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), tick - now)
                self._wake.clear()
                self._queue.woken()
                # Woken for a full batch (or a free request slot), send the full ones;
                # the batch being filled goes on the timer, for a flush, or at the close.
                now = time.monotonic()
                partial = (
                    now >= tick or bool(self._waiters) or self.pace.closing_deadline is not None
                )
                if now >= tick:
                    tick = now + interval
                try:
                    await self.pump(partial)
                    if observers:
                        if self.spool is not None:
                            await self.spool.meter.measure(self.spool)
                        self.publisher.publish(levels(self))
                except Exception as exc:  # never let the thread die: report, go on
                    report("pump", "bucket_logging: sending failed, retrying: %r", exc)
                    await asyncio.sleep(min(1.0, interval))
        finally:
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            if self.spool is not None:
                with contextlib.suppress(Exception):  # (a failure fails the spool: said)
                    await self.spool.journal.store_held()  # first attempts cut short
                await self.spool.close(all_queued(self._queue))
            await self._client.aclose()
            self.publisher.publish(None)  # the last counts; this sender's levels are gone
            self._waiters.stopped()

    def _set_closing(self, deadline: float) -> None:
        self.pace.closing_deadline = deadline
        self._hurry()

    def _stop(self) -> None:
        self._stopping = True
        self._wake.set()
        for task in list(self._tasks):
            task.cancel()

    def _hurry(self) -> None:
        """Wake every retry back-off now (a flush or shutdown is waiting)."""
        self.pace.hurry()
        self._wake.set()

    def _add_waiter(self, mark: Mark, future: concurrent.futures.Future[bool]) -> None:
        self._waiters.add_flush(mark, future)
        self._hurry()
        self.check_waiters()

    def check_waiters(self) -> None:
        """Answer the flushes whose items are all finished, and the close's wait for the
        backlog once it cannot go on (no usable spool, or the endpoint failing)."""
        spool = self.spool
        hopeless = spool is None or spool.failed or self.delivery.failing
        self._waiters.check(backlog_hopeless=hopeless)

    async def pump(self, partial: bool) -> None:
        """Take sealed batches off the queue while a request slot is free, and send them.

        With ``partial`` the batch being filled is sealed first (once: what arrives
        while this pump awaits waits for a full batch or the next tick).
        """
        if partial:
            self._queue.seal()
        if self.spool is not None and await self._pump_spooled(self.spool):
            return  # the spool persisted the queue and started what slots allow
        while not self._stopping:
            if not self._queue.has_full_batch():
                break
            await self.slots.acquire()
            taken = self._queue.take(partial=False)
            if taken is None:  # nothing (full) queued after all
                self.slots.release()
                self.check_waiters()
                break
            if self.spool is not None:  # a failed spool: memory from now on
                self.spool.journal.settle(taken[0].mark)
            self.spawn(self.deliver(*taken))

    @property
    def queue(self) -> BatchQueue:
        """The sender's batch queue (read by the benchmarks' memory measure)."""
        return self._queue

    # -- the spooled path ------------------------------------------------------------------

    async def _pump_spooled(self, spool: Spool) -> bool:
        """Persist the queue's sealed batches, send what the free request slots can take
        (the spool says which); False when the spool is unusable: memory takes over."""
        try:
            while not self._stopping and await spool.ready():
                await self._start_spooled(spool)
                closing = self.pace.closing_deadline  # (past it, batches are stored)
                first = (
                    spool.idle
                    and not (self.slots.locked() or self.delivery.failing)
                    and (closing is None or time.monotonic() < closing)
                )
                if not first and spool.journal.holding:
                    if not self._queue.filling():
                        self._queue.park()  # woken when a first attempt ends, or it fills
                        break  # the queue keeps the batches (journaled) meanwhile
                    await spool.journal.store_held()  # (stored first: then look again)
                    continue
                taken = self._queue.take(partial=False)
                if taken is None:
                    break
                if first:  # sent first, stored only if that fails (see FirstAttempt)
                    await self.slots.acquire()  # (free: no wait)
                    attempt = FirstAttempt(spool, taken[0], taken[1], self.delivery.post)
                    task = self.spawn(self._deliver_spooled(spool, attempt, taken[0]))
                    task.add_done_callback(lambda _: self._wake.set())  # pump again
                    continue
                await spool.persist(
                    taken[0].entries(),
                    taken[1],
                    send_soon=not self.slots.locked(),
                    mark=taken[0].mark,
                )
        except SPOOL_ERRORS as exc:
            spool.fail(exc)
        self.check_waiters()
        if spool.failed:  # here, or in a delivery task meanwhile
            for chunk in spool.hand_over():
                self.spawn(self._deliver_handed_over(spool, chunk))
            return False
        return True

    async def _start_spooled(self, spool: Spool) -> None:
        """Start deliveries of the spool's batches while a request slot is free."""
        pace = self.pace
        while not self._stopping and not self.slots.locked() and not spool.failed:
            closing = pace.closing_deadline
            if closing is not None and time.monotonic() >= closing:
                await spool.leave_waiting()
                return
            claim = self._waiters.claims_backlog(closing)
            chunk = await spool.next_batch(
                flush_waiting=pace.flush_waiting(), closing=closing is not None and not claim
            )
            if chunk is None:
                if not self._tasks:  # nothing of the backlog is being sent, nor claimable
                    self._waiters.backlog_done()
                return
            items, chunk.items = chunk.items or [], None
            spool.sending(chunk)
            await self.slots.acquire()
            settlement = Settlement(spool, chunk, self.delivery.post)
            task = self.spawn(self._deliver_spooled(spool, settlement, items))
            task.add_done_callback(lambda _: self._wake.set())  # a slot is free: pump

    async def _deliver_spooled(
        self, spool: Spool, settlement: Settlement, items: Batch | list[bytes]
    ) -> None:
        chunk, cancelled = settlement.chunk, False
        try:
            if isinstance(settlement, FirstAttempt) or not (chunk.row is None or spool.failed):
                await self.deliver(items, chunk.ticket, settlement.post, settlement.settle)
            else:
                await self.deliver(items, chunk.ticket)
        except asyncio.CancelledError:
            cancelled = True  # (a first attempt stays held: the close stores it)
            raise
        finally:
            spool.sent(chunk, cancelled=cancelled)
            if isinstance(settlement, FirstAttempt) and not cancelled:
                settlement.finished()

    async def _deliver_handed_over(self, spool: Spool, chunk: Chunk) -> None:
        """Deliver a batch that waited in a failed spool from memory."""
        await self.slots.acquire()
        items = await spool.read_back(chunk)
        if items is None:
            self.slots.release()
            self.drop("spool_error", chunk.count, None, "the spool could not be read back")
            self.finished(chunk.ticket)
            return
        await self.deliver(items, chunk.ticket)

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run a delivery task on the loop (cancelled at the stop)."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def deliver(
        self,
        batch: Batch | list[bytes],
        ticket: Ticket,
        post: Post | None = None,
        settle: Callable[[Outcome], Coroutine[Any, Any, None]] | None = None,
    ) -> None:
        """Deliver a batch holding a request slot; then free the slot and the ticket.

        ``settle`` decides what becomes of the items given up (the spool keeps them);
        without it they are dropped.
        """
        try:
            outcome = await self.delivery.deliver(batch, post)
            if settle is not None:
                await settle(outcome)
            else:
                for gave_up in outcome.given_up:
                    self.drop(gave_up.reason, len(gave_up.entries), gave_up.status, gave_up.detail)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # pragma: no cover - defensive: never kill the loop
            self.drop("internal_error", len(batch), None, f"unexpected error: {exc!r}")
        finally:
            self.finished(ticket)
            self.slots.release()

    def finished(self, ticket: Ticket) -> None:
        """A batch is no longer in flight: answer the flushes that waited for it."""
        self._ledger.release(ticket)
        if observers:
            self.publisher.publish(levels(self))
        self.check_waiters()

    def drop(self, reason: DropReason, count: int, status: int | None, detail: str) -> None:
        """Count and report queued items that will not be delivered (they are done)."""
        self._ledger.count_dropped(reason, count)
        error = DeliveryError(reason, count, status, _diagnostics.outside_text(detail, 1000))
        report("drop-" + reason, "bucket_logging: %s", error, items=count)
        self.notify(error)

    def notify(self, error: DeliveryError) -> None:
        """Pass ``error`` to ``on_error`` (its exceptions are reported, not raised)."""
        on_error = self.on_error()
        if on_error is None:
            return
        try:
            on_error(error)
        except Exception as exc:
            report("on_error", "bucket_logging: on_error callback raised %r", exc)


def all_queued(queue: BatchQueue) -> Iterator[tuple[list[bytes], Ticket, int]]:
    """What the queue still holds, batch by batch, with each one's journal mark (the
    spool's close stores it)."""
    while (taken := queue.take()) is not None:
        yield taken[0].entries(), taken[1], taken[0].mark


def levels(engine: SenderLoop) -> Levels:
    """The queue's, the spool's and the destination's levels now (for the observers)."""
    items, size = engine.queue.held()
    config, spool = engine.config, engine.spool
    return Levels(
        items,
        size,
        config.max_queue_items,
        config.max_queue_bytes,
        engine.delivery.failing_seconds,
        None if spool is None else spool.meter.levels,
    )
