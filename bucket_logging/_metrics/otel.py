"""The sender's counts as OpenTelemetry metrics: observable instruments on a MeterProvider.

The senders report to :class:`OtelObserver` on their own threads; it keeps the totals,
and the provider's reader collects them through the observable instruments' callbacks
(on the reader's thread). The bulk requests' durations and sizes are histograms
recorded as each request ends (on the sender's thread).

Names follow OpenTelemetry's conventions: ``bucket_logging.items.sent`` and so on
(see :data:`COUNTERS` and :data:`GAUGES`), units in UCUM (``s``, ``By``, ``{item}``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from typing import Final

from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

from .._sender.observe import Counts, Levels
from .._version import __version__

__all__ = ["COUNTERS", "GAUGES", "OtelObserver"]

#: Monotonic counters: name after ``bucket_logging.``, unit, description, the field of
#: :class:`~bucket_logging._sender.observe.Counts`.
COUNTERS: Final = {
    "items.queued": ("{item}", "Items accepted into the sender's queue", "queued"),
    "items.sent": ("{item}", "Items the API accepted (2xx)", "sent"),
    "items.spooled": ("{item}", "Items left in the spool for a later delivery", "spooled"),
    "items.replayed": ("{item}", "Items taken from the spool's backlog", "replayed"),
    "bulk_requests": ("{request}", "Bulk requests made", "requests"),
    "bulk_requests.failed": ("{request}", "Requests failed in a retryable way", "failed"),
    "bulk_requests.retried": ("{request}", "Requests retried", "retried"),
}

#: Gauges: name after ``bucket_logging.``, unit, description.
GAUGES: Final = {
    "queue.size": ("{item}", "Items in the in-memory queue"),
    "queue.size_bytes": ("By", "Encoded bytes in the in-memory queue"),
    "queue.capacity": ("{item}", "The queue's bound in items"),
    "queue.capacity_bytes": ("By", "The queue's bound in bytes"),
    "spool.size_bytes": ("By", "Bytes of the spool's pages in use"),
    "spool.items": ("{item}", "Items of this destination in the spool"),
    "spool.oldest_age": ("s", "Age of the oldest item in the spool"),
    "destination.failing": ("s", "How long the API has failed (0: fine)"),
}


def _gauge_values(every: list[Levels]) -> dict[str, float]:
    spools = [v.spool for v in every if v.spool is not None]
    return {
        "queue.size": sum(v.queue_items for v in every),
        "queue.size_bytes": sum(v.queue_bytes for v in every),
        "queue.capacity": sum(v.capacity_items for v in every),
        "queue.capacity_bytes": sum(v.capacity_bytes for v in every),
        "spool.size_bytes": max((s.used_bytes for s in spools), default=0),
        "spool.items": max((s.items for s in spools), default=0),
        "spool.oldest_age": max((s.oldest_seconds for s in spools), default=0.0),
        "destination.failing": max((v.failing_seconds for v in every), default=0.0),
    }


class OtelObserver:
    """Sender counts as instruments of a meter of ``provider`` (``bucket_logging``).

    Args:
        provider: the MeterProvider the instruments are made on.
    """

    def __init__(self, provider: MeterProvider) -> None:
        self.provider = provider
        self._lock = threading.Lock()
        self._totals: dict[str, int] = {field: 0 for _, _, field in COUNTERS.values()}
        self._dropped: dict[str, int] = {}
        self._refused: dict[str, int] = {}
        self._levels: dict[int, Levels] = {}
        self._pid = os.getpid()
        meter = provider.get_meter("bucket_logging", __version__)
        for name, (unit, description, field) in COUNTERS.items():
            meter.create_observable_counter(
                "bucket_logging." + name, [self._total(field)], unit, description
            )
        meter.create_observable_counter(
            "bucket_logging.items.dropped",
            [self._by_reason(self._dropped)],
            "{item}",
            "Items dropped for good, by reason (rejected: a 400 from the API)",
        )
        meter.create_observable_counter(
            "bucket_logging.calls.refused",
            [self._by_reason(self._refused)],
            "{call}",
            "Tracking calls of log records refused before the queue, by reason",
        )
        for name, (unit, description) in GAUGES.items():
            meter.create_observable_gauge(
                "bucket_logging." + name, [self._gauge(name)], unit, description
            )
        self._duration = meter.create_histogram(
            "bucket_logging.bulk_request.duration", "s", "Duration of one bulk request"
        )
        self._items = meter.create_histogram(
            "bucket_logging.bulk_request.items", "{item}", "Items in one bulk request"
        )

    # -- the Observer interface (on a sender's thread) --------------------------------

    def counted(self, sender: int, counts: Counts, levels: Levels | None) -> None:
        """Add ``counts`` to the totals; keep the sender's levels (None: it stopped)."""
        with self._lock:
            totals = self._totals
            for field in totals:
                totals[field] += getattr(counts, field)
            for into, more in ((self._dropped, counts.dropped), (self._refused, counts.refused)):
                for reason, value in more.items():
                    into[reason] = into.get(reason, 0) + value
            if self._pid != os.getpid():  # a forked child: the parent's senders are not ours
                self._pid = os.getpid()
                self._levels.clear()
            if levels is None:
                self._levels.pop(sender, None)
            else:
                self._levels[sender] = levels

    def requested(self, seconds: float, items: int) -> None:
        """One bulk request's duration and items."""
        self._duration.record(seconds)
        self._items.record(items)

    # -- the callbacks (on the reader's thread) ----------------------------------------

    def _total(self, field: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            with self._lock:
                return [Observation(self._totals[field])]

        return observe

    def _by_reason(
        self, counts: dict[str, int]
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            with self._lock:
                return [Observation(v, {"reason": k}) for k, v in counts.items()]

        return observe

    def _gauge(self, name: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            with self._lock:
                every = list(self._levels.values())
            if not every:
                return []
            return [Observation(_gauge_values(every)[name])]

        return observe
