"""Process-wide state, in one place: every mutable thing the process shares.

Like structlog's ``_Configuration``, everything the process shares lives on one
object, :data:`state` (:meth:`State.reset` is the one reset, for tests): the
registry of shared senders (:func:`~bucket_logging.get_sender`),
the live senders that :func:`shutdown_all` closes at exit and the module
``flush``/``aflush`` flush, and the callbacks of the process's ONE
``os.register_at_fork`` hook. Modules with per-process state (the spool's
connections, the trackers' re-entry guard, the diagnostics' lock) register their
fork callbacks here with :func:`at_fork`; they run in registration order
(``before`` ones in reverse, as ``os.register_at_fork`` does).

The hot paths read some of these containers under a module-level name of their own
(``_busy = state.busy`` in :mod:`bucket_logging._tracking.tracker`): the very same
object, one global load instead of two look-ups. So a container here is never
replaced, only changed in place (:meth:`State.reset` clears them).

This module imports nothing of the package: every other module may import it.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, Protocol

__all__ = [
    "LiveSender",
    "State",
    "aflush_all",
    "after_fork_in_child",
    "after_fork_in_parent",
    "at_fork",
    "before_fork",
    "flush_all",
    "state",
    "watch",
]


class LiveSender(Protocol):
    """What the process needs from a sender: closing it at exit, rebuilding it after a fork."""

    @property
    def closed(self) -> bool:
        """Whether the sender was closed."""

    @property
    def shutdown_timeout(self) -> float:
        """Seconds the exit may spend delivering what it holds."""

    def start_closing(self, deadline: float) -> None:
        """Hurry: cut back-offs short, the close deadline is ``deadline`` (monotonic)."""

    def close(self, timeout: float | None = None) -> None:
        """Deliver what is queued within ``timeout``, then stop."""

    def after_fork_in_child(self) -> None:
        """Rebuild the per-process parts in a forked child."""

    def flush(self, timeout: float | None = None) -> bool:
        """Deliver what is queued; True when it was (or was dropped and counted)."""

    async def aflush(self, timeout: float | None = None) -> bool:
        """:meth:`flush` without blocking an event loop."""


class State:
    """Everything the process shares (one instance: :data:`state`)."""

    def __init__(self) -> None:
        #: shared senders by (tracking key, API, base URL, offline, the options given:
        #: see :func:`bucket_logging._sender.shared.get_sender`)
        self.registry: dict[tuple[Any, ...], LiveSender] = {}
        self.registry_lock = threading.Lock()
        #: every sender not closed yet (flushed by flush(), closed at exit)
        self.live: weakref.WeakSet[LiveSender] = weakref.WeakSet()
        # the exit paths (see bucket_logging._runtime.shutdown)
        self.exit_hook_installed = False
        self.sigterm_installed = False
        #: the main thread was asked to install the SIGTERM handler (a first sender
        #: built on another thread)
        self.sigterm_requested: object = None
        #: the first sender said where tracking goes (once per process)
        self.announced = False
        self.in_sigterm = False
        self.pool_pid = 0  # the process whose pool finalizers hold ours
        # the spool (see bucket_logging._spool.store and _spool):
        #: tokens of this process's spool owners (an owner id with our pid and another
        #: token is an earlier process's)
        self.spool_tokens: set[str] = set()
        self.spool_stores: weakref.WeakSet[Any] = weakref.WeakSet()
        #: connections inherited through fork(): never used nor closed in the child
        self.inherited_connections: list[Any] = []
        self.spool_executors: weakref.WeakSet[Any] = weakref.WeakSet()
        #: the spool workers' locks a fork holds until it is done
        self.spool_held_for_fork: list[threading.Lock] = []
        #: a spool operation ran through a fork's wait: SQLite is unsafe in the child
        self.spool_busy_at_fork = False
        self.forked_while_busy = False
        # the library's own voice (see bucket_logging._runtime.diagnostics)
        #: per topic: when a message last passed, how many were suppressed since, and
        #: that message (for the summary at exit)
        self.reports: dict[str, tuple[float, int, str]] = {}
        #: per topic: the items the suppressed messages were about (report(items=...))
        self.suppressed_items: dict[str, int] = {}
        #: topics of the messages said once per process
        self.warned: set[str] = set()
        self.reports_lock = threading.Lock()
        #: every registered key, in the forms it takes (redacted from every message)
        self.secrets: set[str] = set()
        #: thread ids of the library's own threads; their records are never tracked
        self.internal_threads: set[int] = set()
        #: whether a logger name is the library's own, by name (a bounded cache)
        self.internal_names: dict[object, bool] = {}
        # the tracking path (see bucket_logging._tracking)
        #: the threads inside Tracker.track (the re-entry guard)
        self.busy: set[int] = set()
        #: the threads inside a sender's before_send hook (what it logs is not tracked)
        self.filtering: set[int] = set()
        #: not empty once a processor claimed an event (see bucket_logging._tracking.claims)
        self.claiming: set[bool] = set()
        #: the templates (log statements) whose records were checked for misspelled tags
        self.checked_templates: dict[object, None] = {}
        #: calls refused since the last read (the relay's per-request count)
        self.rejected_calls = 0
        #: the capture blocks of bucket_logging.testing that are active, and how many
        #: trackers the process built (see bucket_logging._tracking.capture)
        self.captures: list[list[dict[str, Any]]] = []
        self.trackers_built = 0
        #: the metrics observers every sender reports to, on its own thread (see
        #: bucket_logging._sender.observe)
        self.observers: list[Any] = []
        #: what checks the calls of each capture block at its end (the pytest plugin's
        #: tracking plan; owned by the plugin, so not cleared by reset())
        self.capture_checks: list[Any] = []
        #: tracking plans loaded, by path: (the file's mtime, the compiled plan)
        self.plans: dict[str, tuple[int, Any]] = {}
        # the front ends
        self.loguru_hook_installed = False
        self.loguru_hook_lock = threading.Lock()
        self.before_fork: list[Callable[[], None]] = []
        self.after_fork_in_parent: list[Callable[[], None]] = []
        self.after_fork_in_child: list[Callable[[], None]] = []

    def reset(self) -> None:
        """Forget what the process has said and seen (for tests; senders are untouched).

        Every diagnostic is shown again, the templates are checked again, the counts of
        refused calls and of trackers built start from zero, no metrics observer is left.
        """
        with self.reports_lock:
            self.reports.clear()
            self.suppressed_items.clear()
            self.warned.clear()
        self.internal_names.clear()
        self.checked_templates.clear()
        self.claiming.clear()
        self.observers.clear()
        self.announced = False
        self.rejected_calls = 0
        self.trackers_built = 0
        self.plans.clear()

    def forget(self, sender: LiveSender) -> None:
        """A closed sender is neither flushed nor shared any more."""
        self.live.discard(sender)
        for registry_key, shared in list(self.registry.items()):
            if shared is sender:
                del self.registry[registry_key]


state = State()


def watch(sender: LiveSender) -> None:
    """Count ``sender`` among the live ones: flushed by flush(), closed at exit (the exit
    paths call :func:`shutdown_all`: see :mod:`bucket_logging._runtime.shutdown`)."""
    state.live.add(sender)


def flush_all(timeout: float | None = None) -> bool:
    """Flush every sender in the process; for scripts and serverless handlers.

    Waits at most ``timeout`` seconds in all; returns True when everything queued
    was delivered (or dropped and counted).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    ok = True
    for sender in list(state.live):
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        ok = sender.flush(remaining) and ok
    return ok


async def aflush_all(timeout: float | None = None) -> bool:
    """:func:`flush_all` for asyncio applications: awaits without blocking their loop."""
    deadline = None if timeout is None else time.monotonic() + timeout
    ok = True
    for sender in list(state.live):
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        ok = await sender.aflush(remaining) and ok
    return ok


def at_fork(
    *,
    before: Callable[[], None] | None = None,
    after_in_parent: Callable[[], None] | None = None,
    after_in_child: Callable[[], None] | None = None,
) -> None:
    """Register callbacks of the process's fork hook."""
    if before is not None:
        state.before_fork.insert(0, before)
    if after_in_parent is not None:
        state.after_fork_in_parent.append(after_in_parent)
    if after_in_child is not None:
        state.after_fork_in_child.append(after_in_child)


def before_fork() -> None:
    """The fork hook's ``before`` part."""
    for callback in list(state.before_fork):
        callback()


def after_fork_in_parent() -> None:
    """The fork hook's ``after_in_parent`` part."""
    for callback in list(state.after_fork_in_parent):
        callback()


def after_fork_in_child() -> None:
    """The fork hook's ``after_in_child`` part: fresh locks, callbacks, senders rebuilt."""
    state.registry_lock = threading.Lock()  # another thread may have held it
    state.reports_lock = threading.Lock()
    state.loguru_hook_lock = threading.Lock()
    state.busy.clear()  # the threads that were busy do not exist in the child
    state.filtering.clear()
    for callback in list(state.after_fork_in_child):
        callback()
    for sender in list(state.live):
        sender.after_fork_in_child()  # the parent's queued items stay the parent's


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=before_fork,
        after_in_parent=after_fork_in_parent,
        after_in_child=after_fork_in_child,
    )
