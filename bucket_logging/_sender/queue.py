"""The batch queue: an inbox, batches with bounds, and the dedupe window. No asyncio.

Callers only copy an item's encoded bytes into the batch being filled (O(1), never
blocking on the network, never raising). The trackers' everyday events first go to
a small lock-free inbox (:meth:`BatchQueue.put`) that is moved into the batches a
batch's worth at a time, or when anything counts (:meth:`BatchQueue.drain`).

A batch is a request body built as items come (``[``, then each entry and a
comma); it is sealed when it is full by item count or by bytes (every body ≤
2,000,000 bytes). :meth:`BatchQueue.take` hands the sender the oldest sealed batch,
or the one being filled when a timer, a flush or a close asks for it.

Bounds: at most ``max_queue_items`` items and ``max_queue_bytes`` encoded bytes;
beyond, an item is dropped (``queue_full``), counted in the ledger and reported.
Identical user and company updates within ``dedupe_window`` seconds are queued once
(the window remembers at most :data:`DEDUPE_MAX_KEYS` updates, oldest out first).
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from typing import Final

from .._items.item import MAX_BODY_BYTES, kind_of
from .._runtime.diagnostics import report
from .._spool.journal import Journal
from .ledger import DropReason, Ledger, Ticket

__all__ = ["DEDUPE_MAX_KEYS", "INBOX_ITEMS", "INBOX_ITEM_BYTES", "Batch", "BatchQueue"]

#: The inbox holds at most this many entries of at most this many bytes each:
#: 16 MiB at the most beyond the queue's own bounds.
INBOX_ITEMS: Final = 4096
INBOX_ITEM_BYTES: Final = 4096

#: The dedupe window holds at most this many keys (about 180 bytes each: 9 MB); past
#: it, expired keys leave first, then the oldest live ones (their next update is sent
#: again rather than skipped).
DEDUPE_MAX_KEYS: Final = 50_000

_PLUS_ONE: Final = (1).__add__
_monotonic = time.monotonic  # the dedupe window's clock


def _acquire_contended(lock: threading.RLock) -> None:
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

    __slots__ = ("buf", "ends", "mark")

    def __init__(self, buf: bytearray, ends: list[int], mark: int = 0) -> None:
        self.buf = buf
        self.ends = ends
        #: entries that had left the queue (into this or an earlier batch, or dropped)
        #: when it was sealed: once it is stored, the journal is settled up to here
        self.mark = mark

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


class BatchQueue:
    """Encoded entries waiting to be sent, in batches.

    Args:
        ledger: where queued and dropped items are counted.
        max_batch_items, max_queue_items, max_queue_bytes, dedupe_window: the
            sender's options of these names.
        wake: called (outside the lock) when a batch was sealed and the sender
            should send it; at most once until :meth:`take` runs.
        defer: queues an entry from the sender's own thread later (a signal handler
            or finaliser that logs while this thread is inside the queue); False
            when it cannot.
        not_running: handles :meth:`put` while the queue is not :attr:`running`
            (offline, closed, first use in a forked child); returns what put returns.
    """

    def __init__(
        self,
        ledger: Ledger,
        *,
        max_batch_items: int,
        max_queue_items: int,
        max_queue_bytes: int,
        dedupe_window: float,
        wake: Callable[[], object],
        defer: Callable[[bytes], bool],
        not_running: Callable[[bytes], bool],
    ) -> None:
        self.ledger = ledger
        self.max_batch_items = max_batch_items
        self.max_queue_items = max_queue_items
        self.max_queue_bytes = max_queue_bytes
        self.dedupe_window = dedupe_window
        self._wake = wake
        self._defer = defer
        self._not_running = not_running
        # the inbox is moved into the batches when it holds a batch's worth
        self._inbox_limit = min(INBOX_ITEMS, max_batch_items)
        #: With a spool: this process's journal (see :meth:`put_journaled`).
        self.journal: Journal | None = None
        self.reset()

    def reset(self) -> None:
        """Empty, not running, with a new lock (a forked child starts afresh, and opens
        a journal of its own: the parent's is let go of, untouched)."""
        if self.journal is not None:
            self.journal.abandon()
            self.journal = None
        #: Whether entries are accepted: started, not closed, not offline.
        self.running = False
        #: The lock guarding the batches. Re-entrant: a signal handler or a finaliser
        #: that counts or logs while this thread holds it must not wait for itself.
        self.lock = threading.RLock()
        # Sealed batches, oldest first, then the open one. Entries are copied into the
        # open batch's body as they come: no object per item is kept.
        self._sealed: collections.deque[Batch] = collections.deque()
        self._open = bytearray(b"[")
        self._open_ends: list[int] = []  # where each entry of the open batch ends
        self._items = 0  # entries in the batches
        self._left = 0  # entries that left the inbox: into a batch, or dropped
        self._accepted = True  # what the last journaled put_locked did
        self._bytes = 0  # their encoded bytes
        # entries not yet counted nor copied into a batch (see put), oldest first
        self._inbox: collections.deque[bytes] = collections.deque()
        self._changing = False  # this thread is changing the batches (see drain)
        self._wake_requested = False
        self._parked = False  # the sender leaves sealed batches queued (see park)
        # dedupe key -> when it was queued, oldest first (expired keys leave from the front)
        self._dedupe: collections.OrderedDict[bytes, float] = collections.OrderedDict()

    # -- putting -----------------------------------------------------------------------

    def put(self, body: bytes) -> bool:
        """Queue one encoded bulk entry (an ``Item.body``): the trackers' fast path.

        The entry must be valid, as every :class:`~bucket_logging.Item` is, and it is
        not deduplicated. A small entry is appended to the inbox (a deque: no lock);
        the inbox is moved into the batches under the lock when it holds a batch's
        worth, by the sender on its timer, and by anything that counts. An entry
        dropped then (queue full) is counted and reported, but this call has
        already returned True. Never blocks, never raises.
        """
        if not self.running:
            return self._not_running(body)
        if len(body) > INBOX_ITEM_BYTES:
            return self.put_locked(body)
        inbox = self._inbox
        inbox.append(b"".join((body, b"")))  # right-sized: see _items.dumps
        if len(inbox) < self._inbox_limit and self.running:
            return True
        # a batch's worth: into the batches, and send; or close() ran meanwhile (it
        # drains after it stops running): this call counts and reports the entry
        return self.put_locked(None) and self.running

    def put_journaled(self, body: bytes) -> bool:
        """:meth:`put` with a journal: the entry is written to it first, on this thread
        (in the same lock, so the journal and the queue hold entries in one order)."""
        journal = self.journal
        if journal is None or not self.running or len(body) > INBOX_ITEM_BYTES:
            return self.put(body)
        inbox = self._inbox
        if not journal.append(b"".join((body, b"")), inbox.append):
            return self._put_reentrant(body)  # a signal handler inside the journal's lock
        if len(inbox) < self._inbox_limit and self.running:
            return True
        return self.put_locked(None) and self.running

    def put_locked(self, body: bytes | None) -> bool:
        """Queue ``body`` under the lock (the inbox first): False if it was dropped.

        The path of ``enqueue``, where the answer and the dedupe need to be exact;
        with None, only moves the inbox into the batches.
        """
        if body is not None and not self.running:
            return self._not_running(body)
        lock = self.lock
        if not lock.acquire(False):
            _acquire_contended(lock)
        try:
            if self._changing:  # re-entered by a signal handler or finaliser
                return True if body is None else self._put_reentrant(body)
            self._drain_locked()
            reason: DropReason | None = None
            if body is not None:
                journal = self.journal
                if journal is not None and not journal.failed:
                    # journaled in the queue's order: what other threads journaled
                    # meanwhile (into the inbox) goes first
                    with journal.lock:
                        if journal.append(body, self._put_after_journal):
                            return self._accepted
                    return self._put_reentrant(body)
                reason = self._queue_locked(body)
            wake = reason is None and self._sealed and self._may_wake()
            if wake:
                self._wake_requested = True
        finally:
            lock.release()
        if reason is not None and body is not None:
            self.report_drop(body, reason)
            return False
        if wake:
            self._wake()
        return True

    def _put_after_journal(self, body: bytes) -> None:
        """The rest of :meth:`put_locked` once ``body`` is journaled (both locks held)."""
        self._drain_locked()
        reason = self._queue_locked(body)
        wake = reason is None and self._sealed and self._may_wake()
        if wake:
            self._wake_requested = True
            self._wake()
        self._accepted = reason is None
        if reason is not None:
            self.report_drop(body, reason)

    def _queue_locked(self, body: bytes) -> DropReason | None:
        """Copy ``body`` into the batches and count it (the lock is held, the inbox
        drained): None, or why it was dropped."""
        self._changing = True
        try:
            reason = self._append_locked(body)
            if reason is None:
                self.ledger.queued(1)
        finally:
            self._changing = False
        return reason

    def put_once(self, body: bytes, key: bytes) -> bool:
        """:meth:`put_locked`, unless an entry with the same dedupe key was queued lately.

        The key is recorded once the entry is queued: an update dropped (queue full)
        leaves no key behind, and two identical updates racing may both be sent.
        """
        now = _monotonic()
        window = self.dedupe_window
        with self.lock:
            seen = self._dedupe.get(key)
            if seen is not None and now - seen < window:
                self.ledger.count_deduplicated()
                return True
        if not self.put_locked(body):
            return False
        with self.lock:
            dedupe = self._dedupe
            dedupe[key] = now
            dedupe.move_to_end(key)
            if len(dedupe) > DEDUPE_MAX_KEYS:
                while dedupe:  # expired keys leave, oldest first (each once: O(1) a key)
                    if now - next(iter(dedupe.values())) < window:
                        break
                    dedupe.popitem(last=False)
                while len(dedupe) > DEDUPE_MAX_KEYS:  # the cap: the oldest live key goes
                    dedupe.popitem(last=False)  # (its next update is sent again)
        return True

    def dedupe_keys(self) -> list[bytes]:
        """The keys of the dedupe window, oldest first."""
        with self.lock:
            return list(self._dedupe)

    def _put_reentrant(self, body: bytes) -> bool:
        """A put while this thread is changing the queue: queued from the sender's thread."""
        if self._defer(body):
            return True
        self.ledger.count_dropped("closed", 1, pending=False)
        return False

    def _append_locked(self, body: bytes) -> DropReason | None:
        """Copy ``body`` into the open batch (the lock is held): None or why it was dropped."""
        size = len(body)
        self._left += 1
        if (
            self._items >= self.max_queue_items
            or self._bytes + size > self.max_queue_bytes
            or not self.running  # re-checked: close() may have run meanwhile
        ):
            reason: DropReason = "queue_full" if self.running else "closed"
            self.ledger.count_dropped(reason, 1, pending=False)
            return reason
        buf = self._open
        ends = self._open_ends
        if ends and len(buf) + size >= MAX_BODY_BYTES:
            self._left -= 1  # (this entry is the next one's)
            self._seal_locked()  # full by bytes: the entry goes into the next one
            self._left += 1
            buf = self._open
            ends = self._open_ends
        buf.extend(body)  # (extend: four times faster than +=)
        ends.append(len(buf))
        buf.append(0x2C)  # ","
        if len(ends) >= self.max_batch_items:
            self._seal_locked()  # full by count
        self._bytes += size
        self._items += 1
        return None

    def _seal_locked(self) -> None:
        """Close the open batch (not empty) and start a new one; the lock is held."""
        self._sealed.append(Batch(self._open, self._open_ends, self._left))
        self._open = bytearray(b"[")
        self._open_ends = []

    def report_drop(self, body: bytes, reason: DropReason) -> None:
        """Report (rate-limited) an entry dropped as full or closed."""
        kind = kind_of(body)
        report(
            "drop-" + reason,
            "bucket_logging: dropped %s %s item: %s",
            "an" if kind == "event" else "a",  # (a user, a company, a feedback)
            kind,
            "the queue is full (the endpoint is slow or down)"
            if reason == "queue_full"
            else "the sender is closed",
            items=1,
        )

    # -- counting and taking -------------------------------------------------------------

    def drain(self) -> None:
        """Move the inbox into the batches, so that the ledger counts every entry."""
        with self.lock:
            self._drain_locked()

    def _drain_locked(self) -> None:
        """Move the inbox into the batches (the lock is held); drops are counted.

        Not while this thread is already changing the queue: a signal handler or a
        finaliser that reads the stats or flushes in the middle of it finds the
        inbox as it is.
        """
        inbox = self._inbox
        if not inbox or self._changing:
            return
        self._changing = True
        dropped: tuple[bytes, DropReason] | None = None
        queued = 0
        try:
            pop = inbox.popleft
            append = self._append_locked
            n = len(inbox)  # (what other threads append meanwhile waits)
            while n and inbox:
                n -= 1
                body = pop()
                reason = append(body)
                if reason is None:
                    queued += 1
                elif dropped is None:
                    dropped = (body, reason)
        finally:
            self._changing = False
            if queued:
                self.ledger.queued(queued)
        if dropped is not None:  # counted; reported at most once per 10 s per reason
            self.report_drop(*dropped)

    def woken(self) -> None:
        """The sender woke up: the next sealed batch may call ``wake`` again."""
        with self.lock:
            self._wake_requested = self._parked = False

    def park(self) -> None:
        """The sender leaves the sealed batches queued for now (its request slots are
        busy): no entry wakes it again until the queue is :meth:`filling`."""
        with self.lock:
            self._wake_requested = self._parked = True

    def filling(self) -> bool:
        """Whether the batches hold a quarter of the queue's bounds or more."""
        with self.lock:
            return self._filling_locked()

    def _filling_locked(self) -> bool:
        return self._items * 4 >= self.max_queue_items or self._bytes * 4 >= self.max_queue_bytes

    def _may_wake(self) -> bool:
        """Whether a sealed batch wakes the sender now (the lock is held)."""
        if not self._wake_requested:
            return True
        if self._parked and self._filling_locked():
            self._parked = False  # once: the sender stores the batches then
            return True
        return False

    def has_queued(self) -> bool:
        """Whether any entry waits, in the batches or the inbox."""
        with self.lock:
            return self._items > 0 or bool(self._inbox)

    def has_full_batch(self) -> bool:
        """Whether a sealed (full) batch waits (after moving the inbox)."""
        with self.lock:
            self._drain_locked()
            return bool(self._sealed)

    def seal(self) -> None:
        """Seal the batch being filled (if any): the next takes include it, and only it
        of what is queued until then (a timer's or a flush's send)."""
        with self.lock:
            self._drain_locked()
            if self._open_ends:
                self._seal_locked()

    def take(self, partial: bool = True) -> tuple[Batch, Ticket] | None:
        """Take the oldest batch: a sealed one, else (when ``partial``) the one being
        filled; None when there is none. The batch is in flight in the ledger.

        Batches are filled (and sealed by count and bytes) as items are queued, so
        the sender does no work per item here: its CPU is GIL time taken from the
        threads that log.
        """
        with self.lock:
            self._drain_locked()
            if not self._sealed:
                if not self._open_ends or not partial:
                    return None
                self._seal_locked()
            batch = self._sealed.popleft()
            count = len(batch.ends)
            self._bytes -= batch.entry_bytes()
            self._items -= count
            # in flight from now on: a flush must not see these items as finished
            return batch, self.ledger.take(count)

    def held(self) -> tuple[int, int]:
        """(items, encoded bytes) in the batches now (the inbox not counted)."""
        with self.lock:
            return self._items, self._bytes

    def sizes(self) -> tuple[int, list[int]]:
        """(entries in the inbox, items of each batch oldest first): for tests and tools."""
        with self.lock:
            return len(self._inbox), [*map(len, self._sealed), len(self._open_ends)]
