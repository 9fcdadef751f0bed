"""The sender's counts as ``prometheus_client`` metrics (Counter, Gauge, Histogram).

Real metric objects, moved on the senders' threads: right in prometheus_client's
multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, gunicorn, the relay's ``--workers``),
where custom collectors are not allowed. Counters add up over the processes; the queue's
gauges are summed over the live processes (``livesum``); the spool's are the file's,
which the processes share (``livemax``).

Names (``prefix`` is ``bucket_logging`` for an application, ``bucket_relay`` for the
relay): see :data:`NAMES`.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import TYPE_CHECKING, Final, Literal

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from .._sender.ledger import DROP_REASONS, REFUSAL_REASONS
from .._sender.observe import Counts, Levels
from .._version import __version__

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["DURATION_BUCKETS", "ITEMS_BUCKETS", "NAMES", "PrometheusObserver", "observer_for"]

_Mode = Literal["livesum", "livemax"]

#: Seconds: a bulk request's duration.
DURATION_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: Items in one bulk request.
ITEMS_BUCKETS: Final = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500)

#: Every metric (after the prefix and ``_``), with its help text.
NAMES: Final = {
    "items_queued": "Items accepted into the sender's queue",
    "items_sent": "Items the API accepted (2xx)",
    "items_dropped": "Items dropped for good, by reason (rejected: a 400 from the API)",
    "calls_refused": "Tracking calls of log records refused before the queue, by reason",
    "items_spooled": "Items left in the spool for a later delivery (not dropped)",
    "items_replayed": "Items taken from the spool's backlog",
    "items_redelivered": "Items sent again that a request may already have delivered",
    "bulk_requests": "Bulk requests made (retries and bisection included)",
    "bulk_request_failures": "Requests failed in a retryable way (network, 429, 5xx)",
    "bulk_request_retries": "Requests retried after a retryable failure",
    "queue_size_items": "Items in the in-memory queue",
    "queue_size_bytes": "Encoded bytes in the in-memory queue",
    "queue_capacity_items": "The queue's bound in items (max_queue_items)",
    "queue_capacity_bytes": "The queue's bound in bytes (max_queue_bytes)",
    "spool_size_bytes": "Bytes of the spool's database pages in use",
    "spool_capacity_bytes": "The spool's bound in bytes (spool_max_bytes)",
    "spool_items": "Items of this destination in the spool",
    "spool_oldest_age_seconds": "Age of the oldest item in the spool",
    "destination_failing_seconds": "How long the API has failed without an answer (0: fine)",
    "bulk_request_duration_seconds": "Duration of one bulk request",
    "bulk_request_items": "Items in one bulk request",
    "build_info": "The library's version (always 1)",
}

#: prometheus_client refuses a second metric of a name on one registry: the ones made
#: for a registry are reused by a later call (the registry holds them for its life).
_made: weakref.WeakKeyDictionary[CollectorRegistry, dict[str, PrometheusObserver]] = (
    weakref.WeakKeyDictionary()
)
_made_lock = threading.Lock()


def observer_for(
    registry: CollectorRegistry | None = None, prefix: str = "bucket_logging"
) -> PrometheusObserver:
    """The observer with ``prefix``'s metrics on ``registry`` (made on first use)."""
    registry = REGISTRY if registry is None else registry
    with _made_lock:
        made = _made.setdefault(registry, {})
        if prefix not in made:
            made[prefix] = PrometheusObserver(registry, prefix)
        return made[prefix]


class PrometheusObserver:
    """Sender counts as metrics named ``<prefix>_...`` on ``registry``.

    Args:
        registry: where the metrics are registered.
        prefix: the metrics' name prefix.
    """

    def __init__(self, registry: CollectorRegistry, prefix: str) -> None:
        self.registry = registry
        self.prefix = prefix
        self._lock = threading.Lock()
        self._levels: dict[int, Levels] = {}
        self._pid = os.getpid()

        def counter(name: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(f"{prefix}_{name}", NAMES[name], labels, registry=registry)

        def gauge(
            name: str, mode: Literal["livesum", "livemax"], labels: tuple[str, ...] = ()
        ) -> Gauge:
            return Gauge(
                f"{prefix}_{name}", NAMES[name], labels, registry=registry, multiprocess_mode=mode
            )

        self.queued = counter("items_queued")
        self.sent = counter("items_sent")
        self.dropped = counter("items_dropped", ("reason",))
        self.refused = counter("calls_refused", ("reason",))
        for reason in ("rejected", *DROP_REASONS):  # 0 from the start: increase() works
            self.dropped.labels(reason)
        for refusal in REFUSAL_REASONS:
            self.refused.labels(refusal)
        self.spooled = counter("items_spooled")
        self.replayed = counter("items_replayed")
        self.redelivered = counter("items_redelivered")
        self.requests = counter("bulk_requests")
        self.failures = counter("bulk_request_failures")
        self.retries = counter("bulk_request_retries")
        self.gauges: dict[str, Gauge] = {
            name: gauge(name, "livesum")
            for name in (
                "queue_size_items",
                "queue_size_bytes",
                "queue_capacity_items",
                "queue_capacity_bytes",
            )
        }
        for name in (
            "spool_size_bytes",
            "spool_capacity_bytes",
            "spool_items",
            "spool_oldest_age_seconds",
            "destination_failing_seconds",
        ):
            self.gauges[name] = gauge(name, "livemax")
        self.duration = Histogram(
            f"{prefix}_bulk_request_duration_seconds",
            NAMES["bulk_request_duration_seconds"],
            registry=registry,
            buckets=DURATION_BUCKETS,
        )
        self.items = Histogram(
            f"{prefix}_bulk_request_items",
            NAMES["bulk_request_items"],
            registry=registry,
            buckets=ITEMS_BUCKETS,
        )
        info = gauge("build_info", "livemax", ("version",))
        info.labels(__version__).set(1)

    # -- the Observer interface (on a sender's thread) --------------------------------

    def counted(self, sender: int, counts: Counts, levels: Levels | None) -> None:
        """Move the counters by ``counts``; set the gauges from every sender's levels."""
        pairs: tuple[tuple[Counter, int], ...] = (
            (self.queued, counts.queued),
            (self.sent, counts.sent),
            (self.spooled, counts.spooled),
            (self.replayed, counts.replayed),
            (self.redelivered, counts.redelivered),
            (self.requests, counts.requests),
            (self.failures, counts.failed),
            (self.retries, counts.retried),
        )
        for metric, value in pairs:
            if value > 0:
                metric.inc(value)
        for reason, value in counts.dropped.items():
            if value > 0:
                self.dropped.labels(reason).inc(value)
        for reason, value in counts.refused.items():
            if value > 0:
                self.refused.labels(reason).inc(value)
        with self._lock:
            if self._pid != os.getpid():  # a forked child: the parent's senders are not ours
                self._pid = os.getpid()
                self._levels.clear()
            if levels is None:
                self._levels.pop(sender, None)
            else:
                self._levels[sender] = levels
            self._set_gauges(list(self._levels.values()))

    def requested(self, seconds: float, items: int) -> None:
        """One bulk request's duration and items."""
        self.duration.observe(seconds)
        self.items.observe(items)

    def _set_gauges(self, every: list[Levels]) -> None:
        def total(get: Callable[[Levels], float]) -> float:
            return sum(get(levels) for levels in every)

        spools = [levels.spool for levels in every if levels.spool is not None]
        gauges = self.gauges
        gauges["queue_size_items"].set(total(lambda v: v.queue_items))
        gauges["queue_size_bytes"].set(total(lambda v: v.queue_bytes))
        gauges["queue_capacity_items"].set(total(lambda v: v.capacity_items))
        gauges["queue_capacity_bytes"].set(total(lambda v: v.capacity_bytes))
        gauges["destination_failing_seconds"].set(
            max((v.failing_seconds for v in every), default=0.0)
        )
        gauges["spool_size_bytes"].set(max((s.used_bytes for s in spools), default=0))
        gauges["spool_capacity_bytes"].set(max((s.max_bytes for s in spools), default=0))
        gauges["spool_items"].set(max((s.items for s in spools), default=0))
        gauges["spool_oldest_age_seconds"].set(max((s.oldest_seconds for s in spools), default=0.0))
