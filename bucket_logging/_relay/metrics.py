"""The relay's metrics: ``GET /metrics`` in Prometheus' text format (``prometheus_client``).

Two kinds, all named ``bucket_relay_...`` (base units, counters ending in ``_total``):

* the relay's own, moved by the app as it answers (:class:`RelayMetrics`): requests by
  receiver (``ndjson``: a JSON array, NDJSON or one object on ``POST /``; ``otlp``:
  ``POST /v1/logs``; ``probe``, ``metrics``, ``other``) and status code; records
  received, accepted (tracked), and refused by reason; request durations;
* the sender's (items queued, sent, dropped for good by reason, failed attempts, the
  queue and the spool, bulk requests), from the adapter of
  :mod:`bucket_logging._metrics.prometheus` with the prefix ``bucket_relay``.

``--workers N``: the supervisor sets ``PROMETHEUS_MULTIPROC_DIR`` (an empty directory of
its own unless the environment names one) before any worker imports prometheus_client,
so one scrape, answered by any worker, sums the workers (:func:`multiprocess_dir`);
a worker that ended is marked dead (its live gauges leave, its counters stay).

``prometheus_client`` is imported when a :class:`RelayMetrics` is built (after the
directory is set); without it ``GET /metrics`` answers 404 and says so.

May import: the metrics adapters, the sender's observer interface, the process layer.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from typing import Any, Final

__all__ = ["RECEIVERS", "REFUSALS", "RelayMetrics", "mark_dead", "multiprocess_dir"]

#: What a request was for (the ``receiver`` label).
RECEIVERS: Final = ("ndjson", "otlp", "probe", "metrics", "other")

#: Why records of a request were not tracked (the ``reason`` label of
#: ``bucket_relay_records_refused_total``).
REFUSALS: Final = {
    "not_an_object": "a value of the body that is not a JSON object",
    "not_tracked": "a record with no tracking call, or whose tags were invalid",
    "queue_full": "the sender refused the item (its queue was full): the batch got 503",
    "no_room": "the batch did not fit beside what the sender holds: 503 before queueing",
}

#: Seconds: a request's duration (body read, decoded, tracked, answered).
_DURATION_BUCKETS: Final = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)

_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    """Before forking workers: the multiprocess directory, emptied (made when the
    environment names none); None when prometheus_client is imported already (too late)."""
    import sys  # noqa: PLC0415

    if "prometheus_client" in sys.modules and not os.environ.get(_ENV):
        return None
    directory = os.environ.get(_ENV)
    if directory:
        for name in os.listdir(directory):
            if name.endswith(".db"):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(directory, name))
        return directory
    directory = tempfile.mkdtemp(prefix="bucket-relay-metrics-")
    os.environ[_ENV] = directory
    return directory


def mark_dead(pid: int) -> None:
    """A worker ended: its live gauges leave the sums (its counters stay)."""
    if not os.environ.get(_ENV):
        return
    try:
        from prometheus_client import multiprocess  # noqa: PLC0415
    except ImportError:  # pragma: no cover - the relay extra has it
        return
    with contextlib.suppress(OSError):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def remove_dir(directory: str | None, made: bool) -> None:
    """Remove the directory the supervisor made (not one the environment named)."""
    if directory and made:
        shutil.rmtree(directory, ignore_errors=True)


class RelayMetrics:
    """The relay's own counters, and the sender's through the process's observers.

    Built once per serving process (after the fork). ``enabled`` is False without
    prometheus_client; every method is then a no-op.
    """

    def __init__(self) -> None:
        try:
            import prometheus_client as pc  # noqa: PLC0415 - after the multiprocess dir is set

            from .._metrics.prometheus import observer_for  # noqa: PLC0415
        except ImportError:
            self.enabled = False
            return
        from .._sender.observe import observers  # noqa: PLC0415

        self.enabled = True
        self._pc = pc
        self.multiprocess = bool(os.environ.get(_ENV))
        registry = self.registry = pc.CollectorRegistry()
        self.sender_metrics = observer_for(registry, "bucket_relay")
        if self.sender_metrics not in observers:
            observers.append(self.sender_metrics)
        self.requests = pc.Counter(
            "bucket_relay_requests",
            "Requests answered, by receiver and status code",
            ("receiver", "code"),
            registry=registry,
        )
        self.received = pc.Counter(
            "bucket_relay_records_received",
            "Records (JSON events, OTLP log records) read from request bodies",
            ("receiver",),
            registry=registry,
        )
        self.accepted = pc.Counter(
            "bucket_relay_records_accepted",
            "Records tracked (their calls queued on the sender)",
            ("receiver",),
            registry=registry,
        )
        self.refused = pc.Counter(
            "bucket_relay_records_refused",
            "Records not tracked, by reason",
            ("receiver", "reason"),
            registry=registry,
        )
        for receiver in ("ndjson", "otlp"):
            self.received.labels(receiver)
            self.accepted.labels(receiver)
            for reason in REFUSALS:
                self.refused.labels(receiver, reason)
        self.duration = pc.Histogram(
            "bucket_relay_request_duration_seconds",
            "Duration of a request, by receiver",
            ("receiver",),
            registry=registry,
            buckets=_DURATION_BUCKETS,
        )

    def disable(self) -> None:
        """No metrics (``--no-metrics``): nothing counted, ``/metrics`` answers 404."""
        if self.enabled:
            from .._sender.observe import observers  # noqa: PLC0415

            if self.sender_metrics in observers:
                observers.remove(self.sender_metrics)
        self.enabled = False

    def request(self, receiver: str, status: int, started: float) -> None:
        """A request was answered ``status``; it began at ``started`` (perf_counter)."""
        if not self.enabled:
            return
        self.requests.labels(receiver, str(status)).inc()
        self.duration.labels(receiver).observe(time.perf_counter() - started)

    def records(self, receiver: str, received: int, accepted: int, refused: dict[str, int]) -> None:
        """A body's records: how many were read, tracked and refused (by reason)."""
        if not self.enabled:
            return
        if received:
            self.received.labels(receiver).inc(received)
        if accepted:
            self.accepted.labels(receiver).inc(accepted)
        for reason, count in refused.items():
            if count:
                self.refused.labels(receiver, reason).inc(count)

    def exposition(self, accept: str) -> tuple[bytes, str]:
        """The scrape's body and content type (every worker's sum in multiprocess mode)."""
        pc: Any = self._pc
        registry = self.registry
        if self.multiprocess:
            from prometheus_client import multiprocess  # noqa: PLC0415

            registry = pc.CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        encoder, content_type = pc.exposition.choose_encoder(accept)
        return encoder(registry), content_type
