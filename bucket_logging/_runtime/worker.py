"""The spool's worker thread, and what a fork() must know about it.

Every SQLite call of a spool runs on its :class:`SpoolExecutor`, one daemon thread
per sender, awaited by the sender's event loop. A ``fork()`` waits (at most
:data:`FORK_WAIT_SECONDS`) until no worker is inside SQLite: SQLite's own mutexes
would stay locked in the child otherwise; if one stays busy, the child's senders
do without a spool. The callbacks are registered with the process's one fork
hook (:func:`bucket_logging._runtime.state.at_fork`).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, Final, TypeVar

from . import diagnostics as _diagnostics
from . import shutdown as _shutdown
from . import state as _process

__all__ = [
    "FORK_WAIT_SECONDS",
    "SpoolExecutor",
    "after_fork_in_child",
    "after_fork_in_parent",
    "before_fork",
]

_T = TypeVar("_T")

#: Seconds a fork() waits for a spool worker to finish its current operation.
FORK_WAIT_SECONDS: Final = 2.0


class SpoolExecutor:
    """One daemon thread running spool operations in order, awaited from a loop.

    Not a :class:`concurrent.futures.ThreadPoolExecutor`: its threads are joined and
    refuse new work before ``atexit`` hooks run, and the exit hook still writes what
    is left to the spool. A job runs even if the task awaiting it is cancelled: a
    delete or release that was asked for always happens, in order.
    """

    def __init__(self) -> None:
        self.busy = threading.Lock()  # held while an operation runs (see _before_fork)
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        thread = threading.Thread(target=self._run, name="bucket_logging-spool", daemon=True)
        self.thread: Final = thread
        _shutdown.start_thread(thread)
        _process.state.spool_executors.add(self)

    def _run(self) -> None:
        ident = threading.get_ident()
        _diagnostics.internal_threads.add(ident)
        try:
            while True:
                job = self._jobs.get()
                if job is None:
                    return
                with self.busy:
                    job()
        finally:
            _diagnostics.internal_threads.discard(ident)

    def submit(self, job: Callable[[], object]) -> None:
        """Run ``job`` on the thread (fire and forget)."""
        self._jobs.put(job)  # type: ignore[arg-type]

    async def call(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run ``fn(*args)`` on the thread and await its result."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_T] = loop.create_future()

        def resolve(ok: bool, value: Any) -> None:
            if not future.done():
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

        def job() -> None:
            try:
                result: Any = fn(*args)
                ok = True
            except BaseException as exc:
                result, ok = exc, False
            with contextlib.suppress(RuntimeError):  # the loop is closed
                loop.call_soon_threadsafe(resolve, ok, result)

        self._jobs.put(job)
        return await future

    def stop(self) -> None:
        """End the thread after the jobs already submitted."""
        self._jobs.put(None)


# fork(): SQLite's own mutexes would stay locked in the child if a worker was inside
# SQLite at that moment: a fork waits (briefly) until every worker is between two
# operations; if one stays busy, the child's senders do without a spool.
def before_fork() -> None:
    """Wait (at most FORK_WAIT_SECONDS) until no spool worker is inside SQLite."""
    state = _process.state
    state.spool_busy_at_fork = False
    for executor in list(state.spool_executors):
        if executor.busy.acquire(timeout=FORK_WAIT_SECONDS):
            state.spool_held_for_fork.append(executor.busy)
        else:
            state.spool_busy_at_fork = True


def after_fork_in_parent() -> None:
    """Let the workers go on."""
    held = _process.state.spool_held_for_fork
    while held:
        held.pop().release()


def after_fork_in_child() -> None:
    """No worker here; the parent's connections are parked, never used nor closed."""
    state = _process.state
    state.spool_held_for_fork.clear()
    state.spool_executors.clear()
    state.forked_while_busy = state.spool_busy_at_fork
    state.spool_tokens.clear()
    for store in list(state.spool_stores):
        store.abandon()


_process.at_fork(
    before=before_fork,
    after_in_parent=after_fork_in_parent,
    after_in_child=after_fork_in_child,
)
