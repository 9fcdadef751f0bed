"""The bulk sender: the facade over the parts that ship items to Bucket.

A :class:`BulkSender` is a thin facade. Its options become one immutable
:class:`~bucket_logging._sender.config.SenderConfig`; the parts each live in a module of
their own and talk through small public interfaces:

* :mod:`~bucket_logging._sender.queue` -- the batch queue: inbox, batches, bounds, dedupe;
* :mod:`~bucket_logging._sender.ledger` -- the one place that counts and tells a flush
  what is pending;
* :mod:`~bucket_logging._sender.delivery` and :mod:`~bucket_logging._sender.retry` -- one batch
  to the endpoint (retries, bisection) and the retry policy;
* :mod:`~bucket_logging._sender.spooling` -- the optional on-disk spool;
* :mod:`~bucket_logging._runtime.state` -- the shared senders, the exit and fork hooks.

* :mod:`~bucket_logging._sender.engine` -- the sender's thread and asyncio loop.

The sender knows nothing about logging; its diagnostics go to the
``bucket_logging`` logger, its HTTP client's records are silenced on its thread,
and the tracking key appears in no message or ``repr``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import math
import os
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any, Final

import httpx

from .. import _options
from .._exceptions import DeliveryError, RefusedCallError
from .._items.item import Item
from .._runtime import diagnostics as _diagnostics
from .._runtime import shutdown as _shutdown
from .._runtime import state as _process
from .._runtime import uvicorn_stop as _uvicorn_stop
from .._runtime.diagnostics import report
from .before_send import BeforeSend, announce
from .config import DEFAULT_BASE_URL, ConfigValue, SenderConfig
from .engine import SenderLoop
from .http_stack import tls_verify
from .ledger import Ledger, RefusalReason, SenderStats
from .queue import BatchQueue

__all__ = [
    "DEFAULT_BASE_URL",
    "BulkSender",
    "SenderStats",
]

#: The longest wait a flush or close takes (a year): longer ones (``1e10``, ``inf``)
#: are cut to it, where the thread primitives would raise OverflowError.
LONGEST_WAIT: Final = 366 * 86400.0


def bounded_wait(timeout: float | None) -> float:
    """``timeout`` in ``[0, LONGEST_WAIT]`` (None, and NaN: the longest)."""
    if timeout is None or math.isnan(timeout):
        return LONGEST_WAIT
    return min(max(0.0, float(timeout)), LONGEST_WAIT)


class BulkSender:
    """Ships :class:`~bucket_logging.Item` objects to Bucket's bulk endpoint in the background.

    Most applications never build one: :class:`~bucket_logging.BucketHandler` and
    :class:`~bucket_logging.BucketProcessor` get the shared sender for their key
    through :func:`get_sender`. Build one directly to send items yourself::

        sender = BulkSender("my-tracking-key")
        sender.enqueue(Item.event("Sent message", user_id=42))
        sender.flush(timeout=5)

    Every option can also be set by a ``BUCKET_*`` environment variable: the argument,
    else the variable, else Reflag's variable, else the default (:mod:`bucket_logging._options`).

    Args:
        tracking_key: the app's Bucket tracking key or Reflag key (``sec_...`` or
            ``pub_...``: Reflag's Runtime API); else env ``BUCKET_TRACKING_KEY``,
            else ``REFLAG_SECRET_KEY``.
        base_url: the API's base URL; by default the API's host (EU data residency:
            ``bucket_logging.REFLAG_EU_BASE_URL``).
        api: ``"tracking"`` (the key in the path) or ``"runtime"`` (Reflag's Runtime
            API, the key in a Bearer header); by default chosen by the key's prefix.
        offline: validate and count items, send nothing (no key needed); also when
            env ``BUCKET_OFFLINE`` (or ``REFLAG_OFFLINE``) is ``1``/``true``/``on``/``yes``.
        require_key: without a key, raise ConfigurationError (else: offline, said once).
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
        dedupe_window: seconds within which identical user/company updates are sent
            once (0: off).
        shutdown_timeout: seconds the exit hook (and :meth:`close`) may spend
            delivering what is queued.
        transport: an httpx async transport (e.g. ``httpx.MockTransport``) for tests.
        verify: TLS certificate verification (httpx's ``verify``).
        on_error: called on the sender's thread with a
            :class:`~bucket_logging.DeliveryError` whenever items are dropped.
        before_send: called with each item (the dict that would be sent) before it is
            queued: return it (changed or not) or None to drop it (counted as
            ``before_send``); an exception in it is reported, never raised.
        attributes: added to every event the front ends track (an event's own win);
            env ``BUCKET_ATTRIBUTES`` (JSON) and ``BUCKET_ATTRIBUTES_<NAME>=value``.
        debug: log each request's summary (items, bytes, status; never the key) at
            INFO on the ``bucket_logging`` logger.
        spool_dir: a directory for the on-disk spool (off by default): nothing is lost
            across crashes, deploys and long outages (see the docs' "The spool").
        spool_max_bytes: the spool's size limit in bytes (256 MiB); the oldest
            batches are dropped (counted, reported) to stay under it.
        spool_max_age: seconds a batch is kept in the spool (7 days); older ones are
            dropped (counted, reported).
        handle_sigterm: deliver the queue on SIGTERM when it has its default
            disposition, then end by SIGTERM (see the docs' "When the process ends").

    Memory is bounded: about 105 MB with the defaults (the docs' "Delivery guarantees").
    """

    base_url = ConfigValue(lambda c: c.base_url)
    api = ConfigValue(lambda c: c.api)
    offline = ConfigValue(lambda c: c.offline)
    flush_interval = ConfigValue(lambda c: c.flush_interval)
    max_batch_items = ConfigValue(lambda c: c.max_batch_items)
    max_queue_items = ConfigValue(lambda c: c.max_queue_items)
    max_queue_bytes = ConfigValue(lambda c: c.max_queue_bytes)
    max_concurrent_requests = ConfigValue(lambda c: c.max_concurrent_requests)
    request_timeout = ConfigValue(lambda c: c.request_timeout)
    retry_budget = ConfigValue(lambda c: c.retry.budget)
    backoff_base = ConfigValue(lambda c: c.retry.base)
    backoff_max = ConfigValue(lambda c: c.retry.cap)
    dedupe_window = ConfigValue(lambda c: c.dedupe_window)
    shutdown_timeout = ConfigValue(lambda c: c.shutdown_timeout)
    spool_dir = ConfigValue(lambda c: c.spool.directory if c.spool else None)

    def __init__(
        self,
        tracking_key: str | None = None,
        *,
        base_url: str | None = None,
        offline: bool = False,
        require_key: bool = False,
        api: str | None = None,
        flush_interval: float = _options.FLUSH_INTERVAL,
        max_batch_items: int = _options.MAX_BATCH_ITEMS,
        max_queue_items: int = _options.MAX_QUEUE_ITEMS,
        max_queue_bytes: int = _options.MAX_QUEUE_BYTES,
        max_concurrent_requests: int = _options.MAX_CONCURRENT_REQUESTS,
        request_timeout: float = _options.REQUEST_TIMEOUT,
        retry_budget: float = _options.RETRY_BUDGET,
        backoff_base: float = _options.BACKOFF_BASE,
        backoff_max: float = _options.BACKOFF_MAX,
        dedupe_window: float = _options.DEDUPE_WINDOW,
        shutdown_timeout: float = _options.SHUTDOWN_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
        verify: bool | str | ssl.SSLContext = True,
        on_error: Callable[[DeliveryError], object] | None = None,
        before_send: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None,
        attributes: dict[str, Any] | None = None,
        debug: bool = False,
        spool_dir: str | os.PathLike[str] | None = None,
        spool_max_bytes: int = _options.SPOOL_MAX_BYTES,
        spool_max_age: float = _options.SPOOL_MAX_AGE,
        handle_sigterm: bool = True,
    ) -> None:
        #: The validated options.
        self.config: Final = SenderConfig.build(
            {name: value for name, value in locals().items() if name in _options.BY_NAME}
        )
        _diagnostics.register_secret(self.config.tracking_key)
        if not self.config.offline and transport is None:
            _diagnostics.warn_if_insecure(self.config.base_url, verify)
        self.on_error = on_error
        self._transport = transport
        # (a TLS context made once: a forked child's engine reuses it)
        self._verify = verify if self.config.offline else tls_verify(verify, transport)
        self._start_lock = threading.Lock()
        self._ledger = Ledger()
        self.plan_violation: Final = self._ledger.count_plan  # (stats.plan_violations)
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
        #: the fast path (journaled with a spool; with ``before_send``, filtered first).
        self._before_send = BeforeSend(self.config.before_send, self._ledger)
        self._put = self._queue.put if self.config.spool is None else self._queue.put_journaled
        self.put_encoded: Final = (
            self._put if self.config.before_send is None else self._put_filtered
        )
        self._reset()
        _process.watch(self)
        _shutdown.install(sigterm=self.config.handle_sigterm)
        announce(self.config)
        if not self.config.offline:
            self._start()

    # ------------------------------------------------------------------ state

    def _reset(self) -> None:
        """Forget what belongs to one process: the engine (thread, loop, spool)."""
        self._closed = False
        self._engine: SenderLoop | None = None

    def after_fork_in_child(self) -> None:
        """In a forked child: an empty queue and a new thread on first use.

        The parent's queued items stay the parent's (it sends them).
        """
        self._start_lock = threading.Lock()
        engine = self._engine
        if engine is not None and engine.thread_id is not None:
            _diagnostics.internal_threads.discard(engine.thread_id)
        self._queue.reset()
        self._ledger.reset()
        self._reset()

    def _start(self) -> None:
        """Start the sender's engine and thread without waiting for the thread."""
        engine = SenderLoop(
            self.config,
            self._ledger,
            self._queue,
            verify=self._verify,
            transport=self._transport,
            on_error=lambda: self.on_error,
        )
        self._engine = engine
        if not engine.start():
            self._closed = True
            return
        self._queue.running = not self._closed
        _shutdown.watch_pool_exit()  # a forked pool child leaves with os._exit
        _uvicorn_stop.watch()  # a uvicorn server holding SIGTERM: deliver at its shutdown

    @property
    def engine(self) -> SenderLoop | None:
        """The thread, loop and spool of this process (None before the first start)."""
        return self._engine

    @property
    def thread(self) -> threading.Thread | None:
        """The sender's background thread, once started."""
        engine = self._engine
        return None if engine is None else engine.thread

    def __repr__(self) -> str:
        return (
            f"<BulkSender {self.config.api} {self.config.base_url} key=<redacted>"
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
        if self.config.before_send is not None:
            filtered = self._before_send.filter(body)
            if filtered is None:
                return False
            body, key = filtered.body, filtered.dedupe_key
        queue = self._queue
        if key is not None and self.config.dedupe_window > 0 and queue.running:
            return queue.put_once(body, key)
        return queue.put_locked(body)

    def _put_filtered(self, body: bytes) -> bool:
        """:attr:`put_encoded` with ``before_send``: the entry as the hook returns it."""
        item = self._before_send.filter(body)
        if item is None:
            return False
        if item.dedupe_key is not None and self.config.dedupe_window > 0 and self._queue.running:
            return self._queue.put_once(item.body, item.dedupe_key)
        return self._put(item.body)

    def apply_before_send(self, entry: dict[str, Any]) -> dict[str, Any] | None:
        """``entry`` (a decoded item) as ``before_send`` returns it, or None when it is
        dropped (by the hook, or because it raised or returned an invalid item: reported).

        Without ``before_send``, ``entry`` itself. Never raises. Counts nothing (the
        test captures use it; :meth:`enqueue` counts).
        """
        return self._before_send.apply(entry)

    def _put_slowly(self, body: bytes) -> bool:
        """A put while the queue is not running: offline, closed, or a forked child."""
        if self.config.offline:
            self._ledger.count_offline()
            if _diagnostics.logger.isEnabledFor(logging.DEBUG):
                _diagnostics.logger.debug("offline: %s", body.decode("utf-8", "replace"))
            return True
        if not self._queue.running and not self._closed:
            # First use in a forked child: concurrent first calls wait for one start.
            with self._start_lock:
                if not self._queue.running and not self._closed:
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
        engine = self._engine
        return engine is not None and engine.call_soon(self.put_encoded, body)

    def _wake_soon(self) -> None:
        engine = self._engine
        if engine is not None:
            engine.wake_soon()

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

    def refused(self, reason: RefusalReason, kind: str, detail: str) -> None:
        """Count a record's refused call; pass a :class:`RefusedCallError` to ``on_error``."""
        self._ledger.count_refused(reason)
        error = RefusedCallError(reason, kind, detail)
        engine = self._engine
        if self.on_error and (engine is None or not engine.call_soon(engine.notify, error)):
            with contextlib.suppress(Exception):
                self.on_error(error)

    def flush(self, timeout: float | None = None) -> bool:
        """Deliver everything queued so far; wait at most ``timeout`` seconds.

        Returns True when every item queued before the call was delivered or dropped (and
        counted), False on time-out. Retry back-offs are cut short: a flush does not sit
        out a long delay. Safe from any thread; from the sender's own it returns False.
        """
        future = self._request_flush()
        if future is None:
            return True
        engine = self._engine
        if engine is not None and threading.get_ident() == engine.thread_id:
            future.cancel()
            return False
        try:
            return future.result(bounded_wait(timeout))
        except concurrent.futures.TimeoutError:
            future.cancel()  # a flush that gave up no longer cuts the back-offs short
            return False

    async def aflush(self, timeout: float | None = None) -> bool:
        """:meth:`flush` for asyncio applications: awaits without blocking their loop."""
        future = self._request_flush()
        if future is None:
            return True
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), bounded_wait(timeout))
        except asyncio.TimeoutError:
            return False

    def _request_flush(self) -> concurrent.futures.Future[bool] | None:
        engine = self._engine
        if engine is None or engine.thread is None or self._closed:
            return None  # (a closed sender has counted what it could not deliver)
        self._queue.drain()  # what was logged before this call is counted in
        mark = self._ledger.mark()
        if self._ledger.reached(mark):
            return None
        future = engine.request_flush(mark)
        if future is None:  # the thread is gone: what it held is not delivered
            future = concurrent.futures.Future()
            future.set_result(False)
        return future

    def start_closing(self, deadline: float) -> None:
        """Hurry: the close deadline is ``deadline`` (``time.monotonic()``); back-offs
        are cut short and what cannot be delivered by then is given up (or spooled)."""
        if self._engine is not None:
            self._engine.start_closing(deadline)

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
        timeout = bounded_wait(self.config.shutdown_timeout if timeout is None else timeout)
        deadline = time.monotonic() + timeout
        self.start_closing(deadline)
        if self.flush(timeout):
            _deliver_backlog(self._engine, deadline)
        with self._queue.lock:
            self._queue.drain()  # logged during the flush: counted below as not delivered
            self._closed = True
            self._queue.running = False
        engine = self._engine
        if engine is None:  # pragma: no cover - a running sender has one
            return
        engine.stop()
        thread = engine.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.1, min(1.0, deadline - time.monotonic())))
            spool = engine.spool
            if thread.is_alive() and spool is not None and not spool.failed:
                # The thread is still writing what is left to the spool (e.g. waiting
                # for another process's write lock): that wrap-up counts it as spooled.
                _still_spooling(self._ledger.pending, spool.path)
                _process.state.forget(self)
                return
        self._queue.drain()  # (an entry logged while closing: counted as closed)
        lost = self._ledger.pending
        if lost:
            engine.drop("shutdown", lost, None, engine.delivery.shutdown_loss())
        _process.state.forget(self)


def _deliver_backlog(engine: SenderLoop | None, deadline: float) -> None:
    """At the close, once its own items are delivered: the spool's backlog too, until
    ``deadline`` (a short-lived process, a cron job or a CLI, delivers it as well)."""
    if engine is None or engine.spool is None or threading.get_ident() == engine.thread_id:
        return  # (on the sender's own thread nothing could answer it)
    backlog = engine.request_backlog()
    if backlog is not None:
        with contextlib.suppress(concurrent.futures.TimeoutError):
            backlog.result(max(0.0, deadline - time.monotonic()))


def _still_spooling(items: int, path: object) -> None:
    report(
        "spool-close",
        "bucket_logging: the sender is still writing %d item(s) to the spool at %s as "
        "close() returns; the next sender with this spool_dir delivers them",
        items,
        path,
    )
