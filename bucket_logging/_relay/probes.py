"""The relay's probes: ``/livez`` (is the process alive) and ``/readyz`` (send it traffic?).

* ``GET /livez``: 200 while the event loop answers and the sender's thread runs; it
  never looks at the destination (a failing API must not get the relay restarted).
* ``GET /readyz``: 503, with the reason, while

  - the relay drains (SIGTERM);
  - without a spool, the sender holds more than ``high_water`` of ``--max-pending``
    items (the queue is over its high-water mark: new batches would soon get 503);
  - the spool cannot be written (the sender went on in memory) or is full (95 % of
    ``spool_max_bytes``: the next batches evict the oldest);
  - the destination has failed for longer than ``failing_for`` seconds and there is
    nowhere left to put items (no spool, or a spool that is full or failed);

  200 otherwise. ``GET /health`` is an alias of ``/readyz``.

The levels come from the sender's engine, on its own thread, through the observer
interface (:class:`LevelsWatch`): at most a flush interval old, and the spool's
measured at most once a second.

May import: the sender's observer interface.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Final

from .._sender.observe import Counts, Levels, observers

__all__ = ["HIGH_WATER", "READY_PATHS", "LevelsWatch", "Probes"]

#: The share of ``--max-pending`` over which a relay without a spool is not ready.
HIGH_WATER: Final = 0.8

#: The probes' paths.
READY_PATHS: Final = ("/livez", "/readyz", "/health")


class LevelsWatch:
    """Keeps the latest levels of the process's senders (an observer of the sender)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._levels: dict[int, Levels] = {}

    def counted(self, sender: int, counts: Counts, levels: Levels | None) -> None:
        """Keep ``levels`` (on the sender's thread)."""
        with self._lock:
            if levels is None:
                self._levels.pop(sender, None)
            else:
                self._levels[sender] = levels

    def requested(self, seconds: float, items: int) -> None:
        """(Bulk requests do not matter here.)"""

    def latest(self) -> list[Levels]:
        """Every running sender's latest levels."""
        with self._lock:
            return list(self._levels.values())


class Probes:
    """Answers ``/livez``, ``/readyz`` and ``/health``.

    Args:
        pending: the items the relay's sender holds now.
        max_pending: the relay's ``--max-pending``.
        stopping: whether the relay drains.
        alive: whether the sender's thread runs.
        failing_for: seconds the destination may fail before the relay with nowhere to
            put items is not ready.
        high_water: see :data:`HIGH_WATER`.
    """

    def __init__(
        self,
        *,
        pending: Callable[[], int],
        max_pending: int,
        stopping: Callable[[], bool],
        alive: Callable[[], bool] = lambda: True,
        failing_for: float = 60.0,
        high_water: float = HIGH_WATER,
    ) -> None:
        self.pending = pending
        self.max_pending = max_pending
        self.stopping = stopping
        self.alive = alive
        self.failing_for = failing_for
        self.high_water = high_water
        self.watch = LevelsWatch()
        observers.append(self.watch)

    def close(self) -> None:
        """Stop watching the sender."""
        if self.watch in observers:
            observers.remove(self.watch)

    def live(self) -> tuple[int, dict[str, Any]]:
        """``/livez``: (status, body)."""
        if not self.alive():
            return 503, {"live": False, "reason": "the sender's thread is not running"}
        return 200, {"live": True}

    def ready(self) -> tuple[int, dict[str, Any]]:
        """``/readyz``: (status, body) with the reasons when not ready."""
        reasons = self.not_ready()
        if reasons:
            return 503, {"ready": False, "reasons": reasons}
        return 200, {"ready": True}

    def not_ready(self) -> list[str]:
        """Why the relay should get no traffic now (empty: ready)."""
        if self.stopping():
            return ["draining"]
        reasons = []
        every = self.watch.latest()
        spools = [levels.spool for levels in every if levels.spool is not None]
        spooled = bool(spools) and all(not s.failed and not s.full for s in spools)
        if not spools and self.pending() > self.high_water * self.max_pending:
            reasons.append(
                f"the queue is over its high-water mark ({self.high_water:.0%} of "
                f"{self.max_pending} items) and there is no spool"
            )
        for spool in spools:
            if spool.failed:
                reasons.append("the spool cannot be written")
            elif spool.full:
                reasons.append("the spool is full")
        failing = max((levels.failing_seconds for levels in every), default=0.0)
        if failing > self.failing_for and not spooled:
            reasons.append(
                f"the destination has failed for {failing:.0f}s (over {self.failing_for:g}s) "
                "and there is nowhere to keep items"
            )
        return reasons
