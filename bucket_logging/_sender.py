"""The bulk sender: the facade over the parts that ship items to Bucket.

A :class:`BulkSender` is a thin facade. Its options become one immutable
:class:`~bucket_logging._config.SenderConfig`; the parts each live in a module of
their own and talk through small public interfaces:

* :mod:`~bucket_logging._queue` -- the batch queue: inbox, batches, bounds, dedupe;
* :mod:`~bucket_logging._ledger` -- the one place that counts and tells a flush
  what is pending;
* :mod:`~bucket_logging._delivery` and :mod:`~bucket_logging._retry` -- one batch
  to the endpoint (retries, bisection) and the retry policy;
* :mod:`~bucket_logging._spool` -- the optional on-disk spool;
* :mod:`~bucket_logging._process` -- the shared senders, the exit and fork hooks.

This module runs the sender's one daemon thread: an asyncio loop with an
:class:`httpx.AsyncClient` that takes batches off the queue when one is full, on
the flush interval, or when a flush or the close asks, and delivers them with at
most ``max_concurrent_requests`` requests at once (through the spool when there
is one). The sender knows nothing about logging; its diagnostics go to the
``bucket_logging`` logger, its HTTP client's records are silenced on its thread,
and the tracking key appears in no message or ``repr``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import selectors
import ssl
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, Final

import anyio  # noqa: F401 - imported now, not lazily on the sender's thread
import httpcore  # noqa: F401 - (a fork during an import leaves a partial module)
import httpx

from . import _diagnostics, _process
from ._config import (
    DEFAULT_BASE_URL,
    DEFAULT_SPOOL_MAX_AGE,
    DEFAULT_SPOOL_MAX_BYTES,
    SenderConfig,
    resolve_key,
    resolve_url,
)
from ._delivery import Delivery, Outcome, Pace, Post
from ._diagnostics import report
from ._exceptions import DeliveryError
from ._items import Item
from ._ledger import DropReason, Ledger, Mark, SenderStats, Ticket
from ._queue import Batch, BatchQueue
from ._spool import Spool
from ._version import __version__

__all__ = [
    "DEFAULT_BASE_URL",
    "BulkSender",
    "SenderStats",
    "aflush",
    "flush",
    "get_sender",
]

_USER_AGENT: Final = f"bucket-logging/{__version__}"

#: The senders not closed yet (see :mod:`bucket_logging._process`).
_live_senders: Final = _process.state.live


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The sender thread's event loop (the one place a sender's loop is made)."""
    return asyncio.SelectorEventLoop(selectors.DefaultSelector())


class _ConfigValue:
    """A read-only attribute of the sender that reads its config."""

    def __init__(self, read: Callable[[SenderConfig], Any]) -> None:
        self._read = read

    def __get__(self, sender: BulkSender | None, owner: type | None = None) -> Any:
        if sender is None:
            return self
        return self._read(sender.config)


class BulkSender:
    """Ships :class:`~bucket_logging.Item` objects to Bucket's bulk endpoint in the background.

    Most applications never build one: :class:`~bucket_logging.BucketHandler` and
    :class:`~bucket_logging.BucketProcessor` get the shared sender for their key
    through :func:`get_sender`. Build one directly to send items yourself::

        sender = BulkSender("my-tracking-key")
        sender.enqueue(Item.event("Sent message", user_id=42))
        sender.flush(timeout=5)

    Args:
        tracking_key: the app's tracking key; else env ``BUCKET_TRACKING_KEY``.
        base_url: the API's base URL; else env ``BUCKET_TRACKING_URL``, else
            ``https://tracking.bucket.co``.
        offline: validate and count items, send nothing (no key needed).
        flush_interval: seconds between sends of a partial batch.
        max_batch_items: items per request at most (bodies also stay at or under
            2,000,000 bytes, which bounds a batch of typical events first).
        max_queue_items: items held in memory at most; more are dropped and counted.
        max_queue_bytes: encoded bytes held in memory at most (same).
        max_concurrent_requests: bulk requests in flight at once.
        request_timeout: seconds for one HTTP request.
        retry_budget: seconds a batch is retried before it is dropped.
        backoff_base: first retry delay in seconds (doubles each time, with jitter).
        backoff_max: the cap of one retry delay in seconds.
        dedupe_window: seconds within which identical user/company updates are
            sent once; 0 turns it off.
        shutdown_timeout: seconds the exit hook (and :meth:`close`) may spend
            delivering what is queued.
        transport: an httpx async transport (e.g. ``httpx.MockTransport``) for tests.
        verify: TLS certificate verification (httpx's ``verify``).
        on_error: called on the sender's thread with a
            :class:`~bucket_logging.DeliveryError` whenever items are dropped.
        spool_dir: a directory for the on-disk spool (else env ``BUCKET_SPOOL_DIR``;
            off by default): batches are written there before they are sent and
            deleted once delivered, so that a crash, a deploy or an outage longer
            than ``retry_budget`` loses nothing; a later sender with the same
            directory delivers them. Several processes may share one directory.
            See :mod:`bucket_logging._spool`.
        spool_max_bytes: the spool's size limit in bytes (256 MiB); the oldest
            batches are dropped (counted, reported) to stay under it.
        spool_max_age: seconds a batch is kept in the spool (7 days); older ones are
            dropped (counted, reported).

    Memory is bounded by ``max_queue_bytes`` of encoded items (plus about 40 bytes of
    bookkeeping per item, at most ``max_queue_items`` of them), the trackers' inbox
    (at most 4,096 entries of at most 4 KiB, not yet counted) and
    ``max_concurrent_requests`` bodies of at most 2,000,000 bytes in flight: about
    64 MiB + 8 MB + 16 MiB + 8 MB with the defaults.
    """

    base_url: str = _ConfigValue(lambda c: c.base_url)  # type: ignore[assignment]
    offline: bool = _ConfigValue(lambda c: c.offline)  # type: ignore[assignment]
    flush_interval: float = _ConfigValue(lambda c: c.flush_interval)  # type: ignore[assignment]
    max_batch_items: int = _ConfigValue(lambda c: c.max_batch_items)  # type: ignore[assignment]
    max_queue_items: int = _ConfigValue(lambda c: c.max_queue_items)  # type: ignore[assignment]
    max_queue_bytes: int = _ConfigValue(lambda c: c.max_queue_bytes)  # type: ignore[assignment]
    max_concurrent_requests: int = _ConfigValue(  # type: ignore[assignment]
        lambda c: c.max_concurrent_requests
    )
    request_timeout: float = _ConfigValue(lambda c: c.request_timeout)  # type: ignore[assignment]
    retry_budget: float = _ConfigValue(lambda c: c.retry.budget)  # type: ignore[assignment]
    backoff_base: float = _ConfigValue(lambda c: c.retry.base)  # type: ignore[assignment]
    backoff_max: float = _ConfigValue(lambda c: c.retry.cap)  # type: ignore[assignment]
    dedupe_window: float = _ConfigValue(lambda c: c.dedupe_window)  # type: ignore[assignment]
    shutdown_timeout: float = _ConfigValue(  # type: ignore[assignment]
        lambda c: c.shutdown_timeout
    )
    spool_dir: str | None = _ConfigValue(  # type: ignore[assignment]
        lambda c: c.spool.directory if c.spool else None
    )

    def __init__(
        self,
        tracking_key: str | None = None,
        *,
        base_url: str | None = None,
        offline: bool = False,
        flush_interval: float = 1.0,
        max_batch_items: int = 15_000,
        max_queue_items: int = 200_000,
        max_queue_bytes: int = 64 * 1024 * 1024,
        max_concurrent_requests: int = 4,
        request_timeout: float = 10.0,
        retry_budget: float = 300.0,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        dedupe_window: float = 60.0,
        shutdown_timeout: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
        verify: bool | str | ssl.SSLContext = True,
        on_error: Callable[[DeliveryError], object] | None = None,
        spool_dir: str | os.PathLike[str] | None = None,
        spool_max_bytes: int = DEFAULT_SPOOL_MAX_BYTES,
        spool_max_age: float = DEFAULT_SPOOL_MAX_AGE,
    ) -> None:
        #: The validated options.
        self.config: Final = SenderConfig.build(
            tracking_key,
            base_url=base_url,
            offline=offline,
            flush_interval=flush_interval,
            max_batch_items=max_batch_items,
            max_queue_items=max_queue_items,
            max_queue_bytes=max_queue_bytes,
            max_concurrent_requests=max_concurrent_requests,
            request_timeout=request_timeout,
            retry_budget=retry_budget,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            dedupe_window=dedupe_window,
            shutdown_timeout=shutdown_timeout,
            spool_dir=spool_dir,
            spool_max_bytes=spool_max_bytes,
            spool_max_age=spool_max_age,
        )
        _diagnostics.register_secret(self.config.tracking_key)
        self.on_error = on_error
        self._transport = transport
        self._verify = verify
        self._tls_context: ssl.SSLContext | None = None
        self._options: dict[str, Any] = {}  # as given to get_sender
        self._start_lock = threading.Lock()
        self._ledger = Ledger()
        self._queue = BatchQueue(
            self._ledger,
            max_batch_items=self.config.max_batch_items,
            max_queue_items=self.config.max_queue_items,
            max_queue_bytes=self.config.max_queue_bytes,
            dedupe_window=self.config.dedupe_window,
            wake=self._wake_soon,
            defer=self._put_later,
            not_running=self._put_slowly,
        )
        #: Queue one encoded bulk entry (an ``Item.body``, valid, not deduplicated);
        #: the trackers' fast path. Never blocks, never raises; False if dropped.
        self.put_encoded: Final = self._queue.put
        self._reset()
        _process.watch(self)
        if not offline:
            self._start()

    # ------------------------------------------------------------------ state

    def _reset(self) -> None:
        """(Re)create what belongs to one process: the thread, the loop, the spool."""
        self._closed = False
        self._started = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._thread_id: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: list[tuple[Mark, concurrent.futures.Future[bool]]] = []
        self._spool: Spool | None = None
        if self.config.spool is not None:
            self._spool = Spool(self.config, self)

    def after_fork_in_child(self) -> None:
        """In a forked child: an empty queue and a new thread on first use.

        The parent's queued items stay the parent's (it sends them).
        """
        self._start_lock = threading.Lock()
        if self._thread_id is not None:
            _diagnostics.internal_threads.discard(self._thread_id)
        self._queue.reset()
        self._ledger.reset()
        self._reset()

    def _start(self) -> None:
        """Start the sender thread without waiting for it.

        The caller must never wait for the new thread: ``logging.config.dictConfig``
        holds logging's module lock while it builds handlers, and the thread may
        need that lock as soon as anything on it logs. So everything the loop's
        callbacks touch is created here, before the thread runs.
        """
        _diagnostics.silence_http_client_logs()
        # The loop's constructor logs "Using selector" on asyncio's logger: for that
        # moment this thread counts as the sender's, so the record is filtered out.
        me = threading.get_ident()
        mine = me not in _diagnostics.internal_threads
        _diagnostics.internal_threads.add(me)
        try:
            loop = new_event_loop()
        finally:
            if mine:
                _diagnostics.internal_threads.discard(me)
        self._wake = asyncio.Event()
        self.pace = Pace(self._flush_waiting)
        self.slots = asyncio.Semaphore(self.config.max_concurrent_requests)
        self._tasks: set[asyncio.Task[None]] = set()
        # The client is built here, on the caller's thread, so that its imports and
        # set-up never run on the sender's thread (a fork during a half-done import
        # would leave the child a partial module). The TLS context is made once per
        # sender and reused by a forked child.
        self._client = httpx.AsyncClient(
            transport=self._transport,
            verify=self._tls(),
            timeout=self.config.request_timeout,
            headers={"Content-Type": "application/json", "User-Agent": _USER_AGENT},
            limits=httpx.Limits(max_connections=self.config.max_concurrent_requests + 1),
        )
        self.delivery = Delivery(
            self._client,
            self.config.endpoint,
            self._ledger,
            policy=self.config.retry,
            pace=self.pace,
            notify=self.notify,
        )
        self._loop = loop
        thread = threading.Thread(
            target=self._thread_main, args=(loop,), name="bucket_logging-sender", daemon=True
        )
        try:
            thread.start()
        except RuntimeError as exc:  # e.g. "can't create new thread at interpreter shutdown"
            self._closed = True
            self._loop = None
            loop.close()
            report("start", "bucket_logging: cannot start the sender thread (%s)", exc)
            return
        self._thread = thread
        self._started = True
        self._queue.running = not self._closed
        if self._spool is not None:
            self._call_soon(self._wake.set)  # open the spool and replay its backlog now

    def __repr__(self) -> str:
        return (
            f"<BulkSender {self.config.base_url} key=<redacted>"
            f"{' offline' if self.config.offline else ''} pending={self.pending}>"
        )

    # ------------------------------------------------------------------ caller side

    def enqueue(self, item: Item) -> bool:
        """Queue ``item`` for delivery; never blocks, never raises.

        Returns False when the item was dropped (queue full, sender closed), which is
        counted in :attr:`stats`. A user or company update identical to one queued
        within ``dedupe_window`` seconds is skipped (counted as ``deduplicated``).
        """
        body = item.body
        if type(body) is not bytes:  # an Item built by hand
            try:
                body = bytes(body)
            except Exception:  # e.g. a str: never raise from a log call
                self._ledger.count_dropped("invalid", 1, pending=False)
                report(
                    "drop-invalid",
                    "bucket_logging: dropped an item whose body is %s, not bytes",
                    type(body).__name__,
                )
                return False
        key = item.dedupe_key
        queue = self._queue
        if key is not None and self.config.dedupe_window > 0 and queue.running:
            return queue.put_once(body, key)
        return queue.put_locked(body)

    def _put_slowly(self, body: bytes) -> bool:
        """A put while the queue is not running: offline, closed, or a forked child."""
        if self.config.offline:
            self._ledger.count_offline()
            if _diagnostics.logger.isEnabledFor(logging.DEBUG):
                _diagnostics.logger.debug("offline: %s", body.decode("utf-8", "replace"))
            return True
        if not self._started and not self._closed:
            # First use in a forked child: concurrent first calls wait for one start.
            with self._start_lock:
                if not self._started and not self._closed:
                    try:
                        self._start()
                    except Exception as exc:  # e.g. no file descriptor left
                        self._closed = True
                        report("start", "bucket_logging: cannot start the sender (%r)", exc)
        if self._queue.running:
            return self._queue.put_locked(body)
        self._ledger.count_dropped("closed", 1, pending=False)
        self._queue.report_drop(body, "closed")
        return False

    def _put_later(self, body: bytes) -> bool:
        """Queue ``body`` from the sender's thread (a put re-entered by a signal handler)."""
        return self._call_soon(self.put_encoded, body)

    def _wake_soon(self) -> None:
        self._call_soon(self._wake.set)

    def _call_soon(self, callback: Callable[..., Any], *args: Any) -> bool:
        loop = self._loop
        if loop is None:
            return False
        try:
            loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop is closed
            return False
        return True

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` ran (or the sender thread could not start)."""
        return self._closed

    @property
    def pending(self) -> int:
        """Items queued or in flight, not yet delivered or dropped."""
        self._queue.drain()
        return self._ledger.pending

    @property
    def stats(self) -> SenderStats:
        """A snapshot of the counters; cheap, readable at any time from any thread."""
        self._queue.drain()
        return self._ledger.stats()

    def flush(self, timeout: float | None = None) -> bool:
        """Deliver everything queued so far; wait at most ``timeout`` seconds.

        Returns True when every item queued before the call was delivered or dropped
        (and counted), False on time-out. Retry back-offs are cut short: a flush does
        not sit out a long delay. Safe to call from any thread; from the sender's own
        thread it returns False at once instead of deadlocking.
        """
        future = self._request_flush()
        if future is None:
            return True
        if threading.get_ident() == self._thread_id:
            future.cancel()
            return False
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()  # a flush that gave up no longer cuts the back-offs short
            return False

    async def aflush(self, timeout: float | None = None) -> bool:
        """:meth:`flush` for asyncio applications: awaits without blocking their loop."""
        future = self._request_flush()
        if future is None:
            return True
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        except asyncio.TimeoutError:
            return False

    def _request_flush(self) -> concurrent.futures.Future[bool] | None:
        if self.config.offline or not self._started or self._closed:
            return None  # (a closed sender has counted what it could not deliver)
        self._queue.drain()  # what was logged before this call is counted in
        mark = self._ledger.mark()
        if self._ledger.reached(mark):
            return None
        future: concurrent.futures.Future[bool] = concurrent.futures.Future()
        if not self._call_soon(self._add_waiter, mark, future):
            return None
        return future

    def start_closing(self, deadline: float) -> None:
        """Hurry: the close deadline is ``deadline`` (``time.monotonic()``); back-offs
        are cut short and what cannot be delivered by then is given up (or spooled)."""
        self._call_soon(self._set_closing, deadline)

    def close(self, timeout: float | None = None) -> None:
        """Deliver what is queued (within ``timeout``, default ``shutdown_timeout``), then stop.

        Items still undelivered then are counted as dropped (``shutdown``) and
        reported. Later :meth:`enqueue` calls drop their items (``closed``).
        Idempotent.
        """
        if self._closed or self.config.offline:
            self._closed = True
            self._queue.running = False
            return
        timeout = self.config.shutdown_timeout if timeout is None else max(0.0, timeout)
        deadline = time.monotonic() + timeout
        self.start_closing(deadline)
        self.flush(timeout)
        with self._queue.lock:
            self._queue.drain()  # logged during the flush: counted below as not delivered
            self._closed = True
            self._queue.running = False
        self._call_soon(self._stop)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.1, min(1.0, deadline - time.monotonic())))
            spool = self._spool
            if thread.is_alive() and spool is not None and not spool.failed:
                # The thread is still writing what is left to the spool (e.g. waiting
                # for another process's write lock): that wrap-up counts it as spooled.
                _process.state.forget(self)
                return
        self._queue.drain()  # (an entry logged while closing: counted as closed)
        lost = self._ledger.pending
        if lost:
            self.drop("shutdown", lost, None, "not delivered before the shutdown deadline")
        _process.state.forget(self)

    # ------------------------------------------------------------------ sender thread

    def _tls(self) -> ssl.SSLContext | bool | str:
        if self._transport is not None or self._verify is False:
            return self._verify
        if self._tls_context is None:
            verify = self._verify
            create = getattr(httpx, "create_ssl_context", None)
            if isinstance(verify, ssl.SSLContext):
                self._tls_context = verify
            elif callable(create):
                self._tls_context = create(verify=verify)
            else:  # pragma: no cover - httpx before 0.28
                return verify
        return self._tls_context

    def _thread_main(self, loop: asyncio.AbstractEventLoop) -> None:
        ident = self._thread_id = threading.get_ident()
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
        client = self._client
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
                await self._pump(partial)
        finally:
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            if self._spool is not None:
                await self._spool.close()
            await client.aclose()
            self.check_waiters()
            for _, future in self._waiters:  # never left waiting on a stopped sender
                if not future.done():
                    future.set_result(False)
            self._waiters = []

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

    def _flush_waiting(self) -> bool:
        return any(not f.done() for _, f in self._waiters)

    def _add_waiter(self, mark: Mark, future: concurrent.futures.Future[bool]) -> None:
        self._waiters.append((mark, future))
        self._hurry()
        self.check_waiters()

    def check_waiters(self) -> None:
        """Answer the flushes whose items are all finished."""
        if not self._waiters:
            return
        keep = []
        for mark, future in self._waiters:
            if self._ledger.reached(mark):
                if not future.done():
                    with contextlib.suppress(concurrent.futures.InvalidStateError):
                        future.set_result(True)  # unless cancelled meanwhile
            elif not future.done():
                keep.append((mark, future))
        self._waiters = keep

    async def _pump(self, partial: bool) -> None:
        """Take batches off the queue while a request slot is free, and send them.

        With ``partial`` False only sealed (full) batches are taken.
        """
        if partial:
            # what is queued now goes; what comes while this pump awaits waits for a
            # full batch or the next tick (else batches shrink to a few items)
            self._queue.seal()
        if self._spool is not None and await self._spool.pump():
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
            self.spawn(self.deliver(*taken))

    # ------------------------------------------------------------------ the spool's host

    @property
    def stopping(self) -> bool:
        """Whether the sender thread is stopping (no new delivery starts)."""
        return self._stopping

    @property
    def ledger(self) -> Ledger:
        """The sender's counts."""
        return self._ledger

    @property
    def queue(self) -> BatchQueue:
        """The sender's batch queue."""
        return self._queue

    def wake(self) -> None:
        """Pump again soon (on the sender's loop: a request slot is free)."""
        self._wake.set()

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run a delivery task on the sender's loop (cancelled at the stop)."""
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
            self.drop("retries_exhausted", len(batch), None, f"unexpected error: {exc!r}")
        finally:
            self.finished(ticket)
            self.slots.release()

    def finished(self, ticket: Ticket) -> None:
        """A batch is no longer in flight: answer the flushes that waited for it."""
        self._ledger.release(ticket)
        self.check_waiters()

    def drop(self, reason: DropReason, count: int, status: int | None, detail: str) -> None:
        """Count and report queued items that will not be delivered (they are done)."""
        self._ledger.count_dropped(reason, count)
        error = DeliveryError(reason, count, status, _diagnostics.redact(detail))
        report("drop-" + reason, "bucket_logging: %s", error)
        self.notify(error)

    def notify(self, error: DeliveryError) -> None:
        """Pass ``error`` to ``on_error`` (its exceptions are reported, not raised)."""
        if self.on_error is None:
            return
        try:
            self.on_error(error)
        except Exception as exc:
            report("on_error", "bucket_logging: on_error callback raised %r", exc)


# ---------------------------------------------------------------------- process-wide


def get_sender(
    tracking_key: str | None = None, *, base_url: str | None = None, **options: Any
) -> BulkSender:
    """The process's shared sender for a key and URL, created on first use.

    Handlers and processors with the same key and URL share one queue, one thread
    and one connection pool. ``options`` are :class:`BulkSender` keywords; they apply
    when the sender is created (a later call with other options gets the existing
    sender, and a warning says so).
    """
    offline = bool(options.get("offline", False))
    registry_key = (resolve_key(tracking_key), resolve_url(base_url), offline)
    state = _process.state
    with state.registry_lock:
        sender = state.registry.get(registry_key)
        if isinstance(sender, BulkSender) and not sender.closed:
            if options and sender._options != options:
                report(
                    "options",
                    "bucket_logging: a sender for this key and URL exists already; "
                    "its options are kept and the new ones ignored",
                )
            return sender
        sender = BulkSender(tracking_key, base_url=base_url, **options)
        sender._options = options
        state.registry[registry_key] = sender
        return sender


def flush(timeout: float | None = None) -> bool:
    """Flush every sender in the process; for scripts and serverless handlers.

    Waits at most ``timeout`` seconds in all; returns True when everything queued
    was delivered (or dropped and counted).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    ok = True
    for sender in list(_process.state.live):
        if isinstance(sender, BulkSender):
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            ok = sender.flush(remaining) and ok
    return ok


async def aflush(timeout: float | None = None) -> bool:
    """:func:`flush` for asyncio applications: awaits without blocking their loop."""
    deadline = None if timeout is None else time.monotonic() + timeout
    ok = True
    for sender in list(_process.state.live):
        if isinstance(sender, BulkSender):
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            ok = await sender.aflush(remaining) and ok
    return ok


#: The exit hook (see :func:`bucket_logging._process.shutdown_all`).
_shutdown_all: Final = _process.shutdown_all
