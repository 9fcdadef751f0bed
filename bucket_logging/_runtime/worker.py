"""The library's worker thread, and what a fork() must know about it.

A :class:`Worker` is one daemon thread running blocking calls in order: a sender's
name look-ups, a spool's SQLite calls (one each per sender), awaited by the sender's
event loop. For a spool's worker, a ``fork()`` waits (at most
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
    "Worker",
    "after_fork_in_child",
    "after_fork_in_parent",
    "before_fork",
]

_T = TypeVar("_T")

#: Seconds a fork() waits for a spool worker to finish its current operation.
FORK_WAIT_SECONDS: Final = 2.0


class Worker:
    """The library's one kind of worker: a daemon thread running blocking calls in order.

    The sender's loop resolves host names on one (:mod:`bucket_logging._sender.loop`),
    a spool runs its SQLite calls on another. Not a
    :class:`concurrent.futures.ThreadPoolExecutor`: its threads are joined and refuse
    new work before ``atexit`` hooks run, and the exit hook still resolves names and
    writes what is left to the spool. A job runs even if the task awaiting it is
    cancelled: a delete or release that was asked for always happens, in order.

    Args:
        name: the thread's name.
        wait_at_fork: a ``fork()`` waits (at most :data:`FORK_WAIT_SECONDS`) until this
            worker is between two jobs (the spool's: SQLite's mutexes must not be held
            in the child). Raises :class:`RuntimeError` where no thread can be started.
    """

    def __init__(self, name: str, *, wait_at_fork: bool = False) -> None:
        self.busy = threading.Lock()  # held while a job runs (see before_fork)
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread: Final = thread
        _shutdown.start_thread(thread)  # may raise RuntimeError at interpreter shutdown
        if wait_at_fork:
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

    def future(
        self, loop: asyncio.AbstractEventLoop, fn: Callable[..., _T], *args: Any
    ) -> asyncio.Future[_T]:
        """Run ``fn(*args)`` on the thread; its result as a future of ``loop``."""
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
        return future

    async def call(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run ``fn(*args)`` on the thread and await its result."""
        return await self.future(asyncio.get_running_loop(), fn, *args)

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
