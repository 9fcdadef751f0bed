"""What a sender tells the observers of the process (metrics), on its own thread only.

An observer (the Prometheus and OpenTelemetry adapters of :mod:`bucket_logging._metrics`,
the relay's metrics) is registered process-wide in ``state.observers``. The sender never
calls one on the thread of a log call: the log call still only counts in the
:class:`~bucket_logging._sender.ledger.Ledger` (its cost does not change), and the
sender's engine, on its own thread, turns the ledger's counts into increments since the
last time (:class:`Publisher`) and hands them over with the levels of the moment (queue,
spool, destination). Each bulk request's duration and items are passed as it ends.

With no observer registered, a :class:`Publisher` does nothing (one truth test).

Imports: the ledger and the process state only.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Final, Protocol

from .._runtime.diagnostics import report
from .._runtime.state import state
from .ledger import Ledger, SenderStats

__all__ = ["Counts", "Levels", "Observer", "Publisher", "SpoolLevels", "observers"]

#: The observers of the process (the very list of ``state.observers``, changed in place).
observers: Final[list[Observer]] = state.observers

_numbers = itertools.count(1)


@dataclass(frozen=True)
class SpoolLevels:
    """A spool's file as last measured.

    Attributes:
        used_bytes: bytes of database pages in use.
        max_bytes: the spool's ``spool_max_bytes``.
        items: items of this destination in the file (every process's).
        oldest_seconds: age of the oldest of them (0 when there is none).
        failed: the spool cannot be used (unwritable, broken): the sender went on in memory.
    """

    used_bytes: int = 0
    max_bytes: int = 0
    items: int = 0
    oldest_seconds: float = 0.0
    failed: bool = False

    @property
    def full(self) -> bool:
        """At 95 % of ``spool_max_bytes`` or more: the next batches evict the oldest."""
        return self.max_bytes > 0 and self.used_bytes >= self.max_bytes * 0.95


@dataclass(frozen=True)
class Levels:
    """A sender's levels at one moment (gauges).

    Attributes:
        queue_items, queue_bytes: what the in-memory queue holds.
        capacity_items, capacity_bytes: its bounds (``max_queue_items``, ``max_queue_bytes``).
        failing_seconds: how long the destination has failed (0 when it answers).
        spool: the spool's levels, or None without a spool.
    """

    queue_items: int = 0
    queue_bytes: int = 0
    capacity_items: int = 0
    capacity_bytes: int = 0
    failing_seconds: float = 0.0
    spool: SpoolLevels | None = None


@dataclass(frozen=True)
class Counts:
    """Increments of a sender's counts since its last report (see :class:`SenderStats`).

    ``dropped`` holds every item dropped for good by reason, the items the API rejected
    with a 400 under ``"rejected"``; ``refused`` the log records' calls refused.
    """

    queued: int = 0
    sent: int = 0
    requests: int = 0
    failed: int = 0
    retried: int = 0
    spooled: int = 0
    replayed: int = 0
    redelivered: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)


class Observer(Protocol):
    """What a sender reports to; called on a sender's thread, never a log call's."""

    def counted(self, sender: int, counts: Counts, levels: Levels | None) -> None:
        """Sender number ``sender`` counted ``counts`` since its last report; its levels
        now (None: the sender stopped, its levels are gone)."""

    def requested(self, seconds: float, items: int) -> None:
        """A bulk request of ``items`` items took ``seconds`` (answered or failed)."""


def _dropped(stats: SenderStats) -> dict[str, int]:
    dropped = dict(stats.dropped)
    if stats.rejected:
        dropped["rejected"] = stats.rejected
    return dropped


def _minus(now: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in now.items() if v != before.get(k, 0)}


class Publisher:
    """One sender engine's reports: increments since the last one, from its ledger.

    Built per engine (a forked child's engine starts from its reset ledger).
    """

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self.number = next(_numbers)
        self._last = SenderStats()

    def publish(self, levels: Levels | None) -> None:
        """Report what was counted since the last call (on the sender's thread)."""
        if not observers:
            return
        stats = self._ledger.stats()
        last, self._last = self._last, stats
        counts = Counts(
            queued=stats.queued - last.queued,
            sent=stats.sent - last.sent,
            requests=stats.requests - last.requests,
            failed=stats.failed - last.failed,
            retried=stats.retried - last.retried,
            spooled=stats.spooled - last.spooled,
            replayed=stats.replayed - last.replayed,
            redelivered=stats.redelivered - last.redelivered,
            dropped=_minus(_dropped(stats), _dropped(last)),
            refused=_minus(stats.refused, last.refused),
        )
        for observer in list(observers):
            try:
                observer.counted(self.number, counts, levels)
            except Exception as exc:  # an observer's bug never stops the sender
                report("observer", "bucket_logging: a metrics observer raised %r", exc)

    @staticmethod
    def requested(seconds: float, items: int) -> None:
        """A bulk request ended (on the sender's thread)."""
        for observer in list(observers):
            try:
                observer.requested(seconds, items)
            except Exception as exc:
                report("observer", "bucket_logging: a metrics observer raised %r", exc)
