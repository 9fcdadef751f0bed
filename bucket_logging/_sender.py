"""The bulk sender: the one component that talks HTTP.

A :class:`BulkSender` owns a bounded in-memory queue and one daemon thread running
an asyncio loop with an :class:`httpx.AsyncClient`. Callers only copy an item's
encoded bytes into the batch being filled (O(1), never blocking on the network,
never raising); the trackers' everyday events first go to a small lock-free inbox
that is moved into the batches a batch's worth at a time. A batch is a request body
built as items come (``[``, then each entry and a comma); it is sealed when it is
full by item count or by bytes (every body ≤ 2,000,000 bytes), or when the flush
interval or a flush asks for it, and the thread delivers sealed batches with
retries:

* 5xx, 408, 429 and network errors are retried with exponential backoff, jitter and a
  cap, honouring ``Retry-After``, for at most ``retry_budget`` seconds per batch;
* a 400 is not retried as is: the batch is bisected to isolate the items the server
  rejects; those are dropped and reported, every other item is delivered;
* identical user and company updates within ``dedupe_window`` are sent once.

The sender knows nothing about logging: it takes :class:`~bucket_logging.Item` objects
(and, from the trackers, the encoded bytes of the everyday event).
Its diagnostics go to the ``bucket_logging`` logger, its HTTP client's records are
silenced on its own thread, and the tracking key appears in no message or ``repr``.

Senders are shared per (tracking key, base URL) through :func:`get_sender`, flushed
at interpreter exit within ``shutdown_timeout``, and rebuilt in a forked child
(items queued before the fork are sent by the parent only).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import email.utils
import logging
import os
import random
import ssl
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import anyio  # noqa: F401 - imported now, not lazily on the sender's thread
import httpcore  # noqa: F401 - (a fork during an import leaves a partial module)
import httpx

from . import _diagnostics, _shutdown, _spool
from ._diagnostics import report
from ._exceptions import ConfigurationError, DeliveryError
from ._items import MAX_BODY_BYTES, Item, bulk_body, kind_of
from ._loop import SenderLoop

__all__ = [
    "DEFAULT_BASE_URL",
    "BulkSender",
    "SenderStats",
    "aflush",
    "flush",
    "get_sender",
]

#: Where items go unless ``base_url`` or ``BUCKET_TRACKING_URL`` says otherwise.
DEFAULT_BASE_URL: Final = "https://tracking.bucket.co"

ENV_KEY: Final = "BUCKET_TRACKING_KEY"
ENV_URL: Final = "BUCKET_TRACKING_URL"

#: The inbox (see BulkSender._put) holds at most this many entries of at most this
#: many bytes each: 16 MiB at the most beyond the queue's own bounds.
_INBOX_ITEMS: Final = 4096
_INBOX_ITEM_BYTES: Final = 4096

#: Past this many dedupe keys, expired ones are dropped (oldest first) as keys come.
_DEDUPE_MAX_KEYS: Final = 50_000
_PLUS_ONE: Final = (1).__add__

_RETRY_STATUSES: Final = frozenset({408, 429})

#: While a flush waits, a back-off (not a server's Retry-After) lasts at most this long.
_FLUSH_RETRY_DELAY: Final = 0.2
_USER_AGENT: Final = "bucket-logging/0.1.0"


def _acquire_contended(lock: Any) -> None:
    """Take the queue's lock from a logging thread when another holds it.

    Waits with the GIL released between attempts, never inside ``acquire()``: a
    thread blocked there is handed the lock before it has the GIL back, and then
    every other logging thread blocks behind it in turn, a convoy that costs a
    context switch per log call (4 logging threads ran 3x slower).
    """
    while not lock.acquire(False):
        time.sleep(0)  # releases the GIL: the thread holding the lock runs


class Batch:
    """A sealed batch of the queue: one bulk body, and where each of its entries ends.

    The body is built as items are queued: ``[``, then each encoded entry followed
    by a comma; the last comma becomes the closing ``]`` when the body is sent.
    """

    __slots__ = ("buf", "ends")

    def __init__(self, buf: bytearray, ends: list[int]) -> None:
        self.buf = buf
        self.ends = ends

    def __len__(self) -> int:
        return len(self.ends)

    def body(self) -> bytes:
        """The request body: a JSON array of the entries."""
        buf = self.buf
        buf[-1] = 0x5D  # the last entry's comma becomes "]"
        return bytes(buf)

    def entries(self) -> list[bytes]:
        """The encoded entries (to bisect a rejected batch, or to spool it)."""
        buf = bytes(self.buf)
        ends = self.ends
        starts = [1, *map(_PLUS_ONE, ends[:-1])]  # after "[" or the previous ","
        return list(map(buf.__getitem__, map(slice, starts, ends)))

    def entry_bytes(self) -> int:
        """The entries' encoded bytes (without the brackets and commas)."""
        return len(self.buf) - 1 - len(self.ends)


def _entries(batch: Batch | list[bytes]) -> list[bytes]:
    return batch.entries() if isinstance(batch, Batch) else batch


@dataclass(frozen=True)
class SenderStats:
    """A snapshot of a sender's counters (see :attr:`BulkSender.stats`).

    Attributes:
        queued: items accepted into the queue since the sender started.
        sent: items the server accepted.
        pending: items queued or in flight right now.
        requests: HTTP requests made (including retries and bisection).
        retried: requests that were retried after a retryable failure.
        deduplicated: user/company updates skipped as identical within the window.
        rejected: items the server rejected with a 400 (dropped, reported).
        dropped: items dropped for another reason, by reason (``queue_full``,
            ``retries_exhausted``, ``client_error``, ``shutdown``, ``closed`` (also when the sender
            thread could not start), ``invalid`` (an ``Item`` built by hand whose body is
            not bytes), ``internal_error`` (an unexpected error while delivering: a
            bug); with a spool also ``spool_full``, ``spool_expired`` and ``spool_error``).
        offline: items validated but not sent because the sender is offline.
        spooled: items not delivered yet that this sender left in its spool (retries
            exhausted, another 4xx, the shutdown deadline) for a later delivery;
            not counted as dropped.
        replayed: items this sender took from its spool's backlog (left there by an
            earlier process, another one, or itself); counted in ``sent`` once
            delivered, but not in ``queued``.
        redelivered: of the replayed items, those a request may already have
            delivered (a process died, or a request ended without an answer):
            possible duplicates.
    """

    queued: int = 0
    sent: int = 0
    pending: int = 0
    requests: int = 0
    retried: int = 0
    deduplicated: int = 0
    rejected: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    offline: int = 0
    spooled: int = 0
    replayed: int = 0
    redelivered: int = 0

    @property
    def dropped_total(self) -> int:
        """All items dropped for any reason, rejected ones included."""
        return self.rejected + sum(self.dropped.values())


class _Retry(Exception):
    """A retryable failure of one request."""

    def __init__(self, detail: str, status: int | None = None, delay: float | None = None):
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.delay = delay


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _error_message(response: httpx.Response) -> tuple[str, str]:
    """The (code, readable message) of an error answer, per the API's error body."""
    try:
        data = response.json()
        error = data.get("error") or {}
        code = str(error.get("code") or "")
        message = str(error.get("message") or "")
        details = [
            str(v.get("message"))
            for v in error.get("validationErrors") or ()
            if isinstance(v, dict) and v.get("message")
        ]
        if details:
            message = (message + ": " if message else "") + "; ".join(details)
        return code, message or response.text[:300]
    except Exception:
        return "", response.text[:300]


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
        handle_sigterm: install a SIGTERM handler that delivers the queue before the
            process ends by SIGTERM, when SIGTERM has its default disposition (see
            :mod:`bucket_logging._shutdown`); ``False`` or env ``BUCKET_HANDLE_SIGTERM=0``
            installs none.

    Memory is bounded by ``max_queue_bytes`` of encoded items (plus about 40 bytes of
    bookkeeping per item, at most ``max_queue_items`` of them), the trackers' inbox
    (at most 4,096 entries of at most 4 KiB, not yet counted) and
    ``max_concurrent_requests`` bodies of at most 2,000,000 bytes in flight: about
    64 MiB + 8 MB + 16 MiB + 8 MB with the defaults.
    """

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
        spool_max_bytes: int = _spool.DEFAULT_SPOOL_MAX_BYTES,
        spool_max_age: float = _spool.DEFAULT_SPOOL_MAX_AGE,
        handle_sigterm: bool = True,
    ) -> None:
        key = tracking_key if tracking_key is not None else os.environ.get(ENV_KEY, "")
        if not offline and not key:
            raise ConfigurationError(
                "no Bucket tracking key: pass tracking_key=... or set the "
                f"{ENV_KEY} environment variable (or use offline=True)"
            )
        url = (base_url or os.environ.get(ENV_URL) or DEFAULT_BASE_URL).rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise ConfigurationError(f"base_url must be an http(s) URL, got {url!r}")
        for name, value in (
            ("flush_interval", flush_interval),
            ("max_batch_items", max_batch_items),
            ("max_queue_items", max_queue_items),
            ("max_queue_bytes", max_queue_bytes),
            ("max_concurrent_requests", max_concurrent_requests),
            ("request_timeout", request_timeout),
            ("spool_max_bytes", spool_max_bytes),
            ("spool_max_age", spool_max_age),
        ):
            if not value > 0:
                raise ConfigurationError(f"{name} must be positive, got {value!r}")
        _diagnostics.register_secret(key)
        self._key = key
        self.base_url = url
        self.offline = offline
        self._endpoint = f"{url}/{key}/bulk"
        self.flush_interval = float(flush_interval)
        self.max_batch_items = int(max_batch_items)
        # the inbox is moved into the batches when it holds a batch's worth
        self._inbox_limit = min(_INBOX_ITEMS, self.max_batch_items)
        self.max_queue_items = int(max_queue_items)
        self.max_queue_bytes = int(max_queue_bytes)
        self.max_concurrent_requests = int(max_concurrent_requests)
        self.request_timeout = float(request_timeout)
        self.retry_budget = float(retry_budget)
        self.backoff_base = float(backoff_base)
        self.backoff_max = float(backoff_max)
        self.dedupe_window = float(dedupe_window)
        self.shutdown_timeout = float(shutdown_timeout)
        self._transport = transport
        self._verify = verify
        self._tls_context: ssl.SSLContext | None = None
        self.on_error = on_error
        if spool_dir is None:
            spool_dir = os.environ.get(_spool.ENV_SPOOL_DIR) or None
        self.spool_dir = os.fspath(spool_dir) if spool_dir else None
        self.spool_max_bytes = int(spool_max_bytes)
        self.spool_max_age = float(spool_max_age)
        self._options: dict[str, Any] = {}
        self._start_lock = threading.Lock()
        self._init_state()
        _live_senders.add(self)
        _shutdown.install(_shutdown_all, sigterm=_shutdown.sigterm_enabled(handle_sigterm))
        if not offline:
            self._start()

    # ------------------------------------------------------------------ state

    def _init_state(self) -> None:
        """(Re)create everything that belongs to one process: queue, lock, thread."""
        # An RLock for its owner check: a signal handler or a finaliser that logs a
        # tracked event while this thread is inside _put must not wait for itself.
        self._lock = threading.RLock()
        # The queue: sealed batches, oldest first, then the open one. Entries (encoded
        # items) are copied into the open batch's body as they come ("[", then each
        # entry and a comma): no object per item is kept, and a batch is sent as is.
        self._sealed: collections.deque[Batch] = collections.deque()
        self._open = bytearray(b"[")
        self._open_ends: list[int] = []  # where each entry of the open batch ends
        self._queue_bytes = 0  # the queued entries' encoded bytes
        # entries not yet counted nor copied into a batch (see _put), oldest first
        self._inbox: collections.deque[bytes] = collections.deque()
        self._in_queue = False  # this thread is changing the batches (see _drain_locked)
        self._enqueued = 0  # items ever queued (their sequence numbers)
        self._done = 0  # items sent, rejected, deduplicated or dropped after queueing
        self._drained = 0  # items ever taken off the queue (queued now: the difference)
        self._inflight: dict[int, int] = {}  # batch id -> first sequence number
        self._batch_ids = 0
        self._wake_requested = False
        self._closed = False
        self._started = False
        self._running = False  # started, not closed, not offline: enqueue's fast path
        self._thread: threading.Thread | None = None
        self._thread_id: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: list[tuple[int, concurrent.futures.Future[bool]]] = []
        # dedupe key -> when it was queued, oldest first (expired keys leave from the front)
        self._dedupe: collections.OrderedDict[bytes, float] = collections.OrderedDict()
        self._closing_deadline: float | None = None
        self._stopping = False
        self._counts: dict[str, int] = collections.defaultdict(int)
        self._dropped: dict[str, int] = collections.defaultdict(int)
        self._spool: _spool.Spool | None = None
        if self.spool_dir and not self.offline:
            self._spool = _spool.Spool(
                self, self.spool_dir, self.spool_max_bytes, self.spool_max_age
            )

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
            loop = SenderLoop()  # its resolver thread starts now, never at exit
        except RuntimeError as exc:  # "can't create new thread at interpreter shutdown"
            self._cannot_start(exc)
            return
        finally:
            if mine:
                _diagnostics.internal_threads.discard(me)
        self._wake = asyncio.Event()
        self._hurry = asyncio.Event()
        self._slots = asyncio.Semaphore(self.max_concurrent_requests)
        self._tasks: set[asyncio.Task[None]] = set()
        # The client is built here, on the caller's thread, so that its imports and
        # set-up never run on the sender's thread (a fork during a half-done import
        # would leave the child a partial module). The TLS context is made once per
        # sender and reused by a forked child.
        self._client = httpx.AsyncClient(
            transport=self._transport,
            verify=self._tls(),
            timeout=self.request_timeout,
            headers={"Content-Type": "application/json", "User-Agent": _USER_AGENT},
            limits=httpx.Limits(max_connections=self.max_concurrent_requests + 1),
        )
        self._loop = loop
        thread = threading.Thread(
            target=self._thread_main, args=(loop,), name="bucket_logging-sender", daemon=True
        )
        try:
            thread.start()
        except RuntimeError as exc:  # e.g. "can't create new thread at interpreter shutdown"
            self._loop = None
            loop.close()
            self._cannot_start(exc)
            return
        self._thread = thread
        self._started = True
        self._running = not self._closed
        _shutdown.watch_pool_exit()  # a forked pool child leaves with os._exit
        if self._spool is not None:
            self._call_soon(self._wake_now)  # open the spool and replay its backlog now

    def _cannot_start(self, exc: BaseException) -> None:
        self._closed = True
        self._running = False
        report("start", "bucket_logging: cannot start the sender thread (%s)", exc)

    def _after_fork_in_child(self) -> None:
        if self._thread_id is not None:
            _diagnostics.internal_threads.discard(self._thread_id)
        self._init_state()  # the parent's queued items stay the parent's

    def __repr__(self) -> str:
        return (
            f"<BulkSender {self.base_url} key=<redacted>"
            f"{' offline' if self.offline else ''} pending={self.pending}>"
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
                with self._lock:
                    self._dropped["invalid"] += 1
                report(
                    "drop-invalid",
                    "bucket_logging: dropped an item whose body is %s, not bytes",
                    type(body).__name__,
                )
                return False
        key = item.dedupe_key
        if key is not None and self.dedupe_window > 0 and self._running:
            return self._put_once(body, key)
        return self._put_locked(body)

    def _put(self, body: bytes) -> bool:
        """Queue one encoded bulk entry (an ``Item.body``): the trackers' fast path.

        The entry must be valid, as every :class:`Item` is, and it is not deduplicated.
        A small entry is appended to the inbox (a deque: no lock); the inbox is moved
        into the batches under the lock when it holds a batch's worth, by the sender on
        its timer, and by anything that counts (``flush``, ``stats``, ``pending``,
        ``close``). An entry dropped then (queue full) is counted and reported, but this
        call has already returned True. Never blocks, never raises.
        """
        if not self._running:  # offline, closed, or first use in a forked child
            return self._put_slowly(body)
        if len(body) > _INBOX_ITEM_BYTES:
            return self._put_locked(body)
        inbox = self._inbox
        inbox.append(b"".join((body, b"")))  # right-sized: see _items.dumps
        if len(inbox) < self._inbox_limit and self._running:
            return True
        # a batch's worth: into the batches, and send; or close() ran meanwhile (it
        # drains after it stops running): this call counts and reports the entry
        return self._put_locked(None) and self._running

    def _put_locked(self, body: bytes | None) -> bool:
        """Queue ``body`` under the queue's lock (the inbox first): False if dropped.

        :meth:`enqueue`'s path, where the answer and the dedupe need to be exact.
        """
        if body is not None and not self._running:
            return self._put_slowly(body)
        lock = self._lock
        if lock._is_owned():  # type: ignore[attr-defined]
            return True if body is None else self._put_reentrant(body)
        if not lock.acquire(False):
            _acquire_contended(lock)
        try:
            self._drain_locked()
            reason = ""
            if body is not None:
                self._in_queue = True
                try:
                    reason = self._append_locked(body)
                finally:
                    self._in_queue = False
            wake = not reason and self._sealed and not self._wake_requested
            if wake:
                self._wake_requested = True
        finally:
            lock.release()
        if reason and body is not None:
            self._report_drop(body, reason)
            return False
        if wake:
            self._call_soon(self._wake_now)
        return True

    def _drain_locked(self) -> None:
        """Move the inbox into the batches (the lock is held); drops are counted.

        Not while this thread is already changing the queue: a signal handler or a
        finaliser that reads ``stats`` or flushes in the middle of it finds the
        inbox as it is (the lock, an RLock, lets it in).
        """
        inbox = self._inbox
        if not inbox or self._in_queue:
            return
        self._in_queue = True
        dropped: tuple[bytes, str] | None = None
        try:
            pop = inbox.popleft
            append = self._append_locked
            n = len(inbox)  # (what other threads append meanwhile waits)
            while n and inbox:
                n -= 1
                body = pop()
                reason = append(body)
                if reason and dropped is None:
                    dropped = (body, reason)
        finally:
            self._in_queue = False
        if dropped is not None:  # counted; reported at most once per 10 s per reason
            self._report_drop(*dropped)

    def _append_locked(self, body: bytes) -> str:
        """Copy ``body`` into the open batch (the lock is held): "" or why it was dropped."""
        size = len(body)
        if (
            self._enqueued - self._drained >= self.max_queue_items
            or self._queue_bytes + size > self.max_queue_bytes
            or not self._running  # re-checked: close() may have run meanwhile
        ):
            reason = "queue_full" if self._running else "closed"
            self._dropped[reason] += 1
            return reason
        buf = self._open
        ends = self._open_ends
        if ends and len(buf) + size >= MAX_BODY_BYTES:
            self._seal_locked()  # full by bytes: the entry goes into the next one
            buf = self._open
            ends = self._open_ends
        buf.extend(body)  # (extend: four times faster than +=)
        ends.append(len(buf))
        buf.append(0x2C)  # ","
        if len(ends) >= self.max_batch_items:
            self._seal_locked()  # full by count
        self._queue_bytes += size
        self._enqueued += 1
        return ""

    def _put_reentrant(self, body: bytes) -> bool:
        """:meth:`_put` called while this thread is inside it (the lock is held).

        A signal handler or a finaliser that runs in the middle of a put and logs a
        tracked event lands here: the entry is queued from the sender's thread.
        """
        if self._call_soon(self._put, body):
            return True
        with self._lock:
            self._dropped["closed"] += 1
        return False

    def _put_once(self, body: bytes, key: bytes) -> bool:
        """:meth:`_put`, unless an entry with the same dedupe key was queued lately.

        The key is recorded once the entry is queued: an update dropped (queue full)
        leaves no key behind, and two identical updates racing may both be sent.
        """
        now = time.monotonic()
        window = self.dedupe_window
        with self._lock:
            dedupe = self._dedupe
            seen = dedupe.get(key)
            if seen is not None and now - seen < window:
                self._counts["deduplicated"] += 1
                return True
        if not self._put_locked(body):
            return False
        with self._lock:
            dedupe = self._dedupe
            dedupe[key] = now
            dedupe.move_to_end(key)
            if len(dedupe) > _DEDUPE_MAX_KEYS:
                while dedupe:  # expired keys leave, oldest first (each once: O(1) a key)
                    if now - next(iter(dedupe.values())) < window:
                        break
                    dedupe.popitem(last=False)
        return True

    def _report_drop(self, body: bytes, reason: str) -> None:
        report(
            "drop-" + reason,
            "bucket_logging: dropped a %s item: %s",
            kind_of(body),
            "the queue is full (the endpoint is slow or down)"
            if reason == "queue_full"
            else "the sender is closed",
        )

    def _put_slowly(self, body: bytes) -> bool:
        if self.offline:
            with self._lock:
                self._counts["offline"] += 1
            if _diagnostics.logger.isEnabledFor(logging.DEBUG):
                _diagnostics.logger.debug("offline: %s", body.decode("utf-8", "replace"))
            return True
        if not self._running and not self._closed:
            # First use in a forked child: concurrent first calls wait for one start.
            with self._start_lock:
                if not self._running and not self._closed:
                    try:
                        self._start()
                    except Exception as exc:  # e.g. no file descriptor left
                        self._closed = True
                        report("start", "bucket_logging: cannot start the sender (%r)", exc)
        if self._running:
            return self._put_locked(body)
        with self._lock:
            self._dropped["closed"] += 1
        self._report_drop(body, "closed")
        return False

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
    def pending(self) -> int:
        """Items queued or in flight, not yet delivered or dropped."""
        with self._lock:
            self._drain_locked()
            return self._enqueued - self._done

    def _finished_locked(self) -> int:
        """Every item with a sequence number below this one is finished."""
        return min(self._inflight.values()) if self._inflight else self._drained

    @property
    def stats(self) -> SenderStats:
        """A snapshot of the counters; cheap, readable at any time from any thread."""
        with self._lock:
            self._drain_locked()
            c = self._counts
            return SenderStats(
                queued=self._enqueued,
                sent=c["sent"],
                pending=self._enqueued - self._done,
                requests=c["requests"],
                retried=c["retried"],
                deduplicated=c["deduplicated"],
                rejected=c["rejected"],
                dropped={k: v for k, v in self._dropped.items() if v},
                offline=c["offline"],
                spooled=c["spooled"],
                replayed=c["replayed"],
                redelivered=c["redelivered"],
            )

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
        if self.offline or not self._started or self._closed:
            return None  # (a closed sender has counted what it could not deliver)
        with self._lock:
            self._drain_locked()  # what was logged before this call is counted in
            target = self._enqueued
            if self._finished_locked() >= target:
                return None
        future: concurrent.futures.Future[bool] = concurrent.futures.Future()
        if not self._call_soon(self._add_waiter, target, future):
            return None
        return future

    def close(self, timeout: float | None = None) -> None:
        """Deliver what is queued (within ``timeout``, default ``shutdown_timeout``), then stop.

        Items still undelivered then are counted as dropped (``shutdown``) and
        reported. Later :meth:`enqueue` calls drop their items (``closed``).
        Idempotent.
        """
        if self._closed or self.offline:
            self._closed = True
            self._running = False
            return
        timeout = self.shutdown_timeout if timeout is None else max(0.0, timeout)
        deadline = time.monotonic() + timeout
        self._call_soon(self._set_closing, deadline)
        self.flush(timeout)
        with self._lock:
            self._drain_locked()  # logged during the flush: counted below as not delivered
            self._closed = True
            self._running = False
        self._call_soon(self._stop)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.1, min(1.0, deadline - time.monotonic())))
            spool = self._spool
            if thread.is_alive() and spool is not None and not spool.failed:
                # The thread is still writing what is left to the spool (e.g. waiting
                # for another process's write lock): that wrap-up counts it as spooled.
                self._forget()
                return
        with self._lock:
            self._drain_locked()  # (an entry logged while closing: counted as closed)
            lost = self._enqueued - self._done
        if lost:
            self._drop("shutdown", lost, None, "not delivered before the shutdown deadline")
        self._forget()

    def _forget(self) -> None:
        """Leave the process-wide lists: a closed sender is neither flushed nor shared."""
        _live_senders.discard(self)
        for registry_key, sender in list(_registry.items()):
            if sender is self:
                del _registry[registry_key]

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
        try:
            while not self._stopping:
                timed_out = False
                if not self._wake.is_set():
                    try:
                        await asyncio.wait_for(self._wake.wait(), self.flush_interval)
                    except asyncio.TimeoutError:
                        timed_out = True
                self._wake.clear()
                with self._lock:
                    self._wake_requested = False
                # Woken for a full batch, send the full ones; the batch being filled
                # goes on the timer, for a flush, or at the close.
                partial = timed_out or bool(self._waiters) or self._closing_deadline is not None
                await self._pump(partial)
        finally:
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            if self._spool is not None:
                await self._spool.close()
            await client.aclose()
            self._check_waiters()
            for _, future in self._waiters:  # never left waiting on a stopped sender
                if not future.done():
                    future.set_result(False)
            self._waiters = []

    def _wake_now(self) -> None:
        self._wake.set()

    def _set_closing(self, deadline: float) -> None:
        self._closing_deadline = deadline
        self._hurry_up()

    def _stop(self) -> None:
        self._stopping = True
        self._wake.set()
        for task in list(self._tasks):
            task.cancel()

    def _hurry_up(self) -> None:
        """Wake every retry back-off now (a flush or shutdown is waiting)."""
        self._hurry.set()
        self._hurry = asyncio.Event()
        self._wake.set()

    def _add_waiter(self, target: int, future: concurrent.futures.Future[bool]) -> None:
        self._waiters.append((target, future))
        self._hurry_up()
        self._check_waiters()

    def _check_waiters(self) -> None:
        if not self._waiters:
            return
        with self._lock:
            done = self._finished_locked()
        keep = []
        for target, future in self._waiters:
            if done >= target:
                if not future.done():
                    with contextlib.suppress(concurrent.futures.InvalidStateError):
                        future.set_result(True)  # unless cancelled meanwhile
            elif not future.done():
                keep.append((target, future))
        self._waiters = keep

    async def _pump(self, partial: bool = True) -> None:
        """Take batches off the queue while a request slot is free, and send them.

        With ``partial`` False only sealed (full) batches are taken.
        """
        if self._spool is not None and await self._spool.pump():
            return  # the spool persisted the queue and started what slots allow
        while not self._stopping:
            if not self._has_queued():
                break
            await self._slots.acquire()
            batch, batch_id = self._take_batch(partial)
            if batch is None:  # nothing queued after all
                self._slots.release()
                self._check_waiters()
                break
            task = asyncio.get_running_loop().create_task(self._deliver(batch, batch_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _seal_locked(self) -> None:
        """Close the open batch (not empty) and start a new one; the lock is held."""
        self._sealed.append(Batch(self._open, self._open_ends))
        self._open = bytearray(b"[")
        self._open_ends = []

    def _has_queued(self) -> bool:
        with self._lock:
            return self._enqueued > self._drained or bool(self._inbox)

    def _take_batch(self, partial: bool = True) -> tuple[Batch | None, int]:
        """Take the oldest batch off the queue: a sealed one, else (when ``partial``)
        the one being filled.

        Batches are filled (and sealed by count and bytes) as items are queued, so
        the sender does no work per item here: its CPU is GIL time taken from the
        threads that log.
        """
        with self._lock:
            self._drain_locked()
            self._in_queue = True
            try:
                if not self._sealed:
                    if not self._open_ends or not partial:
                        return None, 0
                    self._seal_locked()
                batch = self._sealed.popleft()
                n = len(batch.ends)
                self._queue_bytes -= batch.entry_bytes()
                # in flight from now on: a flush must not see these items as finished
                batch_id = self._batch_ids = self._batch_ids + 1
                self._inflight[batch_id] = self._drained
                self._drained += n
            finally:
                self._in_queue = False
        return batch, batch_id

    def _take_entries(self) -> tuple[list[bytes], int]:
        """:meth:`_take_batch` as a list of entries (for the spool)."""
        batch, batch_id = self._take_batch()
        return ([] if batch is None else batch.entries()), batch_id

    async def _deliver(self, batch: Batch | list[bytes], batch_id: int) -> None:
        try:
            await self._send(batch)
            if self._spool is not None:
                await self._spool.settle()  # delete it from the spool (or keep the rest)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # pragma: no cover - defensive: never kill the loop
            self._drop("internal_error", len(batch), None, f"unexpected error: {exc!r}")
        finally:
            with self._lock:
                self._inflight.pop(batch_id, None)
            self._slots.release()
            self._check_waiters()

    async def _send(self, batch: Batch | list[bytes]) -> None:
        """Deliver one batch: retry what is retryable, bisect on 400."""
        body = batch.body() if isinstance(batch, Batch) else bulk_body(batch)
        started = time.monotonic()
        attempt = 0
        while True:
            try:
                if self._spool is None:
                    response = await self._post(body)
                else:  # the spool records whether the request may have reached the server
                    response = await self._spool.post(body)
            except _Retry as failure:
                attempt += 1
                delay = self._backoff(attempt, failure.delay)
                if failure.delay is None and any(not f.done() for _, f in self._waiters):
                    delay = min(delay, _FLUSH_RETRY_DELAY)  # a flush waits: no long back-off
                now = time.monotonic()
                closing = self._closing_deadline
                if now + delay - started > self.retry_budget or (
                    closing is not None and now >= closing
                ):
                    reason = "retries_exhausted" if closing is None else "shutdown"
                    if self._spool is None or not self._spool.keep(
                        _entries(batch), reason, failure.status, failure.detail
                    ):
                        self._drop(reason, len(batch), failure.status, failure.detail)
                    return
                with self._lock:
                    self._counts["retried"] += 1
                if closing is not None:
                    delay = min(delay, 0.2, max(0.0, closing - now))
                await self._sleep(delay)
                continue
            status = response.status_code
            if 200 <= status < 300:
                with self._lock:
                    self._counts["sent"] += len(batch)
                    self._done += len(batch)
                return
            code, message = _error_message(response)
            if status in (400, 413) and code != "INVALID_API_KEY":
                batch = _entries(batch)
                if len(batch) == 1:
                    with self._lock:
                        self._counts["rejected"] += 1
                        self._done += 1
                    self._notify(DeliveryError("rejected", 1, status, _diagnostics.redact(message)))
                    report(
                        "rejected",
                        "bucket_logging: the server rejected an item (%s; HTTP %d: %s): %.300s",
                        kind_of(batch[0]),
                        status,
                        message,
                        batch[0].decode("utf-8", "replace"),
                    )
                    return
                half = len(batch) // 2
                await self._send(batch[:half])
                await self._send(batch[half:])
                return
            hint = (
                " (check the tracking key and base_url)" if status in (400, 401, 403, 404) else ""
            )
            detail = f"{code or message}{hint}"
            if self._spool is None or not self._spool.keep(
                _entries(batch), "client_error", status, detail
            ):
                self._drop("client_error", len(batch), status, detail)
            return

    async def _post(self, body: bytes) -> httpx.Response:
        with self._lock:
            self._counts["requests"] += 1
        try:
            response = await self._client.post(self._endpoint, content=body)
        except httpx.TransportError as exc:
            raise _Retry(f"{type(exc).__name__}: {exc}") from None
        status = response.status_code
        if status >= 500 or status in _RETRY_STATUSES:
            raise _Retry(
                f"HTTP {status}", status, _retry_after(response.headers.get("Retry-After"))
            )
        return response

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:  # the server's ask is honoured, even by a flush
            return min(retry_after, self.retry_budget)
        delay = min(self.backoff_max, self.backoff_base * 2.0 ** (attempt - 1))
        jitter: float = random.uniform(0.5, 1.0)
        return delay * jitter

    async def _sleep(self, delay: float) -> None:
        """Sleep ``delay`` seconds, or until a flush or shutdown hurries everyone."""
        if delay <= 0:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._hurry.wait(), delay)

    def _drop(self, reason: str, count: int, status: int | None, detail: str) -> None:
        """Count and report queued items that will not be delivered (they are done)."""
        with self._lock:
            self._dropped[reason] += count
            self._done += count
        error = DeliveryError(reason, count, status, _diagnostics.redact(detail))
        report("drop-" + reason, "bucket_logging: %s", error)
        self._notify(error)

    def _notify(self, error: DeliveryError) -> None:
        if self.on_error is None:
            return
        try:
            self.on_error(error)
        except Exception as exc:
            report("on_error", "bucket_logging: on_error callback raised %r", exc)


# ---------------------------------------------------------------------- process-wide

_registry: dict[tuple[str, str, bool], BulkSender] = {}
_registry_lock = threading.Lock()
_live_senders: weakref.WeakSet[BulkSender] = weakref.WeakSet()


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
    key = tracking_key if tracking_key is not None else os.environ.get(ENV_KEY, "")
    url = (base_url or os.environ.get(ENV_URL) or DEFAULT_BASE_URL).rstrip("/")
    registry_key = (key, url, offline)
    with _registry_lock:
        sender = _registry.get(registry_key)
        if sender is not None and not sender._closed:
            if options and sender._options != options:
                report(
                    "options",
                    "bucket_logging: a sender for this key and URL exists already; "
                    "its options are kept and the new ones ignored",
                )
            return sender
        sender = BulkSender(tracking_key, base_url=base_url, **options)
        sender._options = options
        _registry[registry_key] = sender
        return sender


def flush(timeout: float | None = None) -> bool:
    """Flush every sender in the process; for scripts and serverless handlers.

    Waits at most ``timeout`` seconds in all; returns True when everything queued
    was delivered (or dropped and counted).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    ok = True
    for sender in list(_live_senders):
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        ok = sender.flush(remaining) and ok
    return ok


async def aflush(timeout: float | None = None) -> bool:
    """:func:`flush` for asyncio applications: awaits without blocking their loop."""
    deadline = None if timeout is None else time.monotonic() + timeout
    ok = True
    for sender in list(_live_senders):
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        ok = await sender.aflush(remaining) and ok
    return ok


def _shutdown_all() -> None:
    """The exit hook: deliver what is queued, within each sender's deadline."""
    senders = [s for s in list(_live_senders) if not s._closed]
    if not senders:
        return
    deadline = time.monotonic() + max(s.shutdown_timeout for s in senders)
    for sender in senders:  # every sender hurries at once, then each is closed
        sender._call_soon(sender._set_closing, time.monotonic() + sender.shutdown_timeout)
    for sender in senders:
        remaining = max(0.0, min(sender.shutdown_timeout, deadline - time.monotonic()))
        try:
            sender.close(remaining)
        except Exception as exc:  # pragma: no cover - exit must go on
            report("exit", "bucket_logging: error at exit: %r", exc)


def _after_fork_in_child() -> None:
    global _registry_lock
    _registry_lock = threading.Lock()
    _diagnostics.after_fork_in_child()
    _shutdown.after_fork_in_child()
    for sender in list(_live_senders):
        sender._start_lock = threading.Lock()
        sender._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
