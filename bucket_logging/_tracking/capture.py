"""What :func:`bucket_logging.testing.capture_tracking` needs from the trackers.

The lists of the active capture blocks (every tracker hands its items to them instead
of its sender while there are any) and how many trackers the process has built (a
capture that caught nothing says so when there are none).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, Final

from .._runtime.state import state as _state

__all__ = ["active", "checked", "checks", "start", "stop", "tracker_built", "trackers_built"]

#: The lists of the active capture blocks. Changed in place, under the GIL, by
#: :func:`start` and :func:`stop`; readers copy it before iterating.
active: Final[list[list[dict[str, Any]]]] = _state.captures


#: What sees the calls of each capture block when it ends (the pytest plugin's check
#: against the tracking plan); registered and removed by their owner.
checks: Final[list[Callable[[list[dict[str, Any]]], None]]] = _state.capture_checks


def checked(calls: list[dict[str, Any]]) -> None:
    """Show a capture block's ``calls`` to every registered check; never raises."""
    for check in tuple(checks):
        with contextlib.suppress(Exception):  # a check's bug must not fail the test
            check(calls)


def tracker_built() -> None:
    """Count a tracker (called by each :class:`~bucket_logging._tracking.tracker.Tracker`)."""
    _state.trackers_built += 1


def trackers_built() -> int:
    """How many trackers (so front ends) this process has built."""
    return _state.trackers_built


def start(target: list[dict[str, Any]]) -> None:
    """Divert every item of every tracker to ``target`` (decoded) instead of the senders."""
    active.append(target)


def stop(target: list[dict[str, Any]]) -> None:
    """End a :func:`start` (only that block's list, wherever it is among the active)."""
    for i, held in enumerate(active):
        if held is target:
            del active[i]
            return
