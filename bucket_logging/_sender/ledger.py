"""The ledger: the one place that counts items and tells a flush what is pending.

Every part of the sender reports what happened to its items here, and nowhere
else: the batch queue (:meth:`Ledger.queued`, refusals), delivery (requests,
retries, sent, rejected), the spool (spooled, replayed, evicted). An item is
*pending* from the moment it is queued (or replayed from the spool) until it is
finished: sent, rejected, dropped, or left in the spool.

A flush waits for a :class:`Mark`: the items queued before it and the backlog
batches being replayed when it started. Batches leave the queue in order, each
with a :class:`Ticket` that remembers the sequence number of its first item; the
flush is answered once no batch holding an item before its mark is in flight.

Thread-safe: counts come from logging threads, the sender's loop and its spool.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Final, Literal

__all__ = [
    "DROP_REASONS",
    "REFUSAL_REASONS",
    "DropReason",
    "Ledger",
    "Mark",
    "RefusalReason",
    "SenderStats",
    "Ticket",
]

DropReason = Literal[
    "queue_full",
    "closed",
    "invalid",
    "retries_exhausted",
    "client_error",
    "shutdown",
    "spool_full",
    "spool_expired",
    "spool_error",
    "internal_error",
    "before_send",
    "before_send_error",
]

#: Why items are dropped (``SenderStats.dropped`` keys); each drop is also reported on
#: the ``bucket_logging`` logger and passed to ``on_error``.
DROP_REASONS: Final[dict[DropReason, str]] = {
    "queue_full": "the in-memory queue was full (the endpoint is slow or down)",
    "closed": "the sender was closed, or its thread could not start",
    "invalid": "an Item built by hand whose body is not bytes",
    "retries_exhausted": "retried for retry_budget seconds without success",
    "client_error": "a 4xx other than a rejected item (e.g. a wrong key or URL)",
    "shutdown": "not delivered before the shutdown deadline",
    "spool_full": "the spool reached spool_max_bytes (oldest first)",
    "spool_expired": "older than spool_max_age in the spool",
    "spool_error": "the spool failed and the batch could not be read back",
    "internal_error": "an unexpected error while delivering (a bug: please report it)",
    "before_send": "the before_send hook returned None (dropped by the application)",
    "before_send_error": "the before_send hook raised, or returned no valid item (reported)",
}

RefusalReason = Literal[
    "orphan_tags", "missing_id", "invalid_tag", "invalid_item", "unknown_tag", "plan_violation"
]

#: Why a record's tracking call was not sent (``SenderStats.refused`` keys); each is
#: also reported on the ``bucket_logging`` logger and passed to ``on_error`` as a
#: :class:`~bucket_logging.RefusedCallError`.
REFUSAL_REASONS: Final[dict[RefusalReason, str]] = {
    "orphan_tags": "bucket_attributes/bucket_active without a call tag or a rule",
    "missing_id": "no user id (or company id) for the call",
    "invalid_tag": "a tag's value is not what the call needs (e.g. an empty event name)",
    "invalid_item": "the call breaks the API's rules (a value, a size)",
    "unknown_tag": "a misspelled bucket_* key (e.g. bucket_events): it was ignored",
    "plan_violation": "the call breaks the tracking plan, whose action is drop",
}


@dataclass(frozen=True)
class SenderStats:
    """A snapshot of a sender's counters (see :attr:`BulkSender.stats`).

    Attributes:
        queued: items accepted into the queue since the sender started.
        sent: items the server accepted.
        pending: items queued or in flight right now.
        requests: HTTP requests made (including retries and bisection).
        retried: requests that were retried after a retryable failure.
        failed: requests that failed in a retryable way (a network error, a timeout,
            429, 5xx), retried or not.
        deduplicated: user/company updates skipped as identical within the window.
        rejected: items the server rejected with a 400 (dropped, reported).
        dropped: items dropped for another reason, by reason (see
            :data:`bucket_logging._sender.ledger.DROP_REASONS`: ``queue_full``,
            ``retries_exhausted``, ``client_error``, ``shutdown``, ``closed``,
            ``invalid``, ``internal_error``, and with a spool ``spool_full``,
            ``spool_expired`` and ``spool_error``).
        offline: items validated but not sent because the sender is offline.
        spooled: items not delivered yet that this sender left in its spool (retries
            exhausted, another 4xx, the shutdown deadline) for a later delivery;
            not counted as dropped.
        replayed: items this sender took from its spool's backlog (left there by an
            earlier process, another one, or itself); counted in ``sent`` once
            delivered, but not in ``queued``.
        redelivered: items that a request may already have delivered before (a
            process died, or a request ended without an answer and was sent
            again): possible duplicates.
        refused: tracking calls of log records that were never queued because the
            record's tags or values were wrong, by reason (see
            :data:`bucket_logging._sender.ledger.REFUSAL_REASONS`); not counted in ``queued``.
        plan_violations: calls that break the tracking plan, by kind of violation
            (``unplanned_event``, ``missing_attribute``, ``wrong_type``,
            ``invalid_value``, ``unexpected_attribute``, ``unplanned_user_attribute``,
            ``unplanned_company_attribute``, ``unplanned_feedback``).
    """

    queued: int = 0
    sent: int = 0
    pending: int = 0
    requests: int = 0
    retried: int = 0
    failed: int = 0
    deduplicated: int = 0
    rejected: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    offline: int = 0
    spooled: int = 0
    replayed: int = 0
    redelivered: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    plan_violations: dict[str, int] = field(default_factory=dict)

    @property
    def dropped_total(self) -> int:
        """All items dropped for any reason, rejected ones included."""
        return self.rejected + sum(self.dropped.values())


class Ticket:
    """A batch in flight: its item count and the sequence number of its first item
    (None for a batch replayed from the spool)."""

    __slots__ = ("count", "first", "number")

    def __init__(self, number: int, first: int | None, count: int) -> None:
        self.number = number
        self.first = first
        self.count = count


@dataclass(frozen=True)
class Mark:
    """What a flush waits for: items before ``items``, replays up to ticket ``ticket``."""

    items: int
    ticket: int


class Ledger:
    """Counts every item once and knows which batches are in flight."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Zero every count (a forked child starts afresh)."""
        # Re-entrant: a signal handler may read the stats while this thread counts.
        self._lock = threading.RLock()
        self._queued = 0  # items ever queued: the next one's sequence number
        self._taken = 0  # items ever taken off the queue
        self._done = 0  # items finished, of the queued and the replayed ones
        self._tickets = 0
        self._inflight: dict[int, Ticket] = {}
        self.sent = 0
        self.requests = 0
        self.retried = 0
        self.failed = 0
        self.deduplicated = 0
        self.rejected = 0
        self.offline = 0
        self.spooled = 0
        self.replayed = 0
        self.redelivered = 0
        self._dropped: dict[str, int] = {}
        self._refused: dict[str, int] = {}
        self._plan: dict[str, int] = {}

    # -- the queue -------------------------------------------------------------------

    def queued(self, count: int) -> None:
        """``count`` items joined the queue (they are pending)."""
        with self._lock:
            self._queued += count

    def take(self, count: int) -> Ticket:
        """A batch of the next ``count`` queued items is in flight from now on."""
        with self._lock:
            self._tickets += 1
            ticket = Ticket(self._tickets, self._taken, count)
            self._taken += count
            self._inflight[ticket.number] = ticket
            return ticket

    def replay(self, count: int, redelivered: bool) -> Ticket:
        """A batch of ``count`` items from the spool's backlog is in flight (pending)."""
        with self._lock:
            self._tickets += 1
            ticket = Ticket(self._tickets, None, count)
            self._inflight[ticket.number] = ticket
            self.replayed += count  # pending until finished, as queued items are
            if redelivered:
                self.redelivered += count
            return ticket

    def release(self, ticket: Ticket) -> None:
        """The batch is no longer in flight (every item of it was counted as finished)."""
        with self._lock:
            self._inflight.pop(ticket.number, None)

    # -- outcomes (each finishes its items) ------------------------------------------

    def count_sent(self, count: int) -> None:
        with self._lock:
            self.sent += count
            self._done += count

    def count_rejected(self, count: int) -> None:
        with self._lock:
            self.rejected += count
            self._done += count

    def count_spooled(self, count: int) -> None:
        """Items left in the spool for a later sender (finished for this one)."""
        with self._lock:
            self.spooled += count
            self._done += count

    def count_dropped(self, reason: DropReason, count: int, *, pending: bool = True) -> None:
        """Items dropped; ``pending`` False for items refused before they were queued."""
        with self._lock:
            self._dropped[reason] = self._dropped.get(reason, 0) + count
            if pending:
                self._done += count

    def count_evicted(self, reason: DropReason, count: int, finished: int) -> None:
        """Spool rows deleted for a limit: ``count`` items, ``finished`` of them pending."""
        with self._lock:
            self._dropped[reason] = self._dropped.get(reason, 0) + count
            self._done += finished

    # -- other counts ------------------------------------------------------------------

    def count_request(self) -> None:
        with self._lock:
            self.requests += 1

    def count_retry(self) -> None:
        with self._lock:
            self.retried += 1

    def count_failed(self) -> None:
        with self._lock:
            self.failed += 1

    def count_redelivered(self, count: int) -> None:
        with self._lock:
            self.redelivered += count

    def count_deduplicated(self) -> None:
        with self._lock:
            self.deduplicated += 1

    def count_plan(self, kind: str) -> None:
        """A call that breaks the tracking plan (sent or not: counted apart)."""
        with self._lock:
            self._plan[kind] = self._plan.get(kind, 0) + 1

    def count_refused(self, reason: RefusalReason) -> None:
        """A record's call refused before it was queued (never pending)."""
        with self._lock:
            self._refused[reason] = self._refused.get(reason, 0) + 1

    def count_offline(self) -> None:
        with self._lock:
            self.offline += 1

    # -- what is pending -----------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Items queued or in flight, not finished."""
        with self._lock:
            return self._queued + self.replayed - self._done

    @property
    def queued_now(self) -> int:
        """Items queued and not yet taken off the queue."""
        with self._lock:
            return self._queued - self._taken

    def mark(self) -> Mark:
        """What a flush starting now waits for."""
        with self._lock:
            return Mark(self._queued, self._tickets)

    def reached(self, mark: Mark) -> bool:
        """Whether everything a flush's mark waits for is finished."""
        with self._lock:
            finished = self._taken
            for ticket in self._inflight.values():
                if ticket.first is None:
                    if ticket.number <= mark.ticket:
                        return False
                elif ticket.first < finished:
                    finished = ticket.first
            return finished >= mark.items

    def stats(self) -> SenderStats:
        """A snapshot of the counters."""
        with self._lock:
            return SenderStats(
                queued=self._queued,
                sent=self.sent,
                pending=self._queued + self.replayed - self._done,
                requests=self.requests,
                retried=self.retried,
                failed=self.failed,
                deduplicated=self.deduplicated,
                rejected=self.rejected,
                dropped={k: v for k, v in self._dropped.items() if v},
                offline=self.offline,
                spooled=self.spooled,
                replayed=self.replayed,
                redelivered=self.redelivered,
                refused=dict(self._refused),
                plan_violations=dict(self._plan),
            )
