"""The sender's event loop: a selector loop that never needs a new thread once started.

asyncio runs blocking calls such as ``socket.getaddrinfo`` (name resolution, so every
connection to a host name like ``tracking.bucket.co`` or ``localhost``) in the loop's
default executor, a :class:`concurrent.futures.ThreadPoolExecutor`. That executor stops
taking work once the interpreter begins to shut down (``threading._shutdown`` runs before
the ``atexit`` hooks), and at that point no new thread can be started either. A sender
that delivers its queue at exit, or after its connections idled out, then failed with
``can't register atexit after shutdown`` or ``cannot schedule new futures after
shutdown``, losing every item of a short script.

:class:`ResolvingLoop` runs those calls on one worker thread of its own instead, started
with the loop (on the thread that builds the sender, never lazily) and stopped when
the loop is closed. It is a daemon thread, like the sender's: the exit hooks wait for
the sender, not the interpreter.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import selectors
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from .._runtime.shutdown import start_thread

__all__ = ["ResolvingLoop"]

_T = TypeVar("_T")

_Job = tuple[concurrent.futures.Future[Any], Callable[..., Any], tuple[Any, ...]]


class _Worker:
    """One daemon thread running blocking calls in order (name look-ups)."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        thread = threading.Thread(target=self._run, name=name, daemon=True)
        start_thread(thread)  # may raise RuntimeError at interpreter shutdown

    def _run(self) -> None:
        jobs = self._jobs
        while (job := jobs.get()) is not None:
            future, fn, args = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args)
            except BaseException as exc:  # handed to the awaiting task
                future.set_exception(exc)
            else:
                future.set_result(result)

    def submit(self, fn: Callable[..., _T], *args: Any) -> concurrent.futures.Future[_T]:
        future: concurrent.futures.Future[_T] = concurrent.futures.Future()
        self._jobs.put((future, fn, args))
        return future

    def stop(self) -> None:
        self._jobs.put(None)


class ResolvingLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose default executor is one thread started with it.

    ``run_in_executor(None, ...)`` (``getaddrinfo``, ``getnameinfo``) runs on that
    thread, so name resolution works at interpreter exit. Building the loop raises
    :class:`RuntimeError` where no thread can be started.
    """

    def __init__(self) -> None:
        super().__init__(selectors.DefaultSelector())
        try:
            self._worker = _Worker("bucket_logging-resolver")
        except BaseException:
            super().close()
            raise

    def run_in_executor(  # type: ignore[override]
        self, executor: concurrent.futures.Executor | None, func: Callable[..., _T], *args: Any
    ) -> asyncio.Future[_T]:
        if executor is not None:
            return super().run_in_executor(executor, func, *args)
        if self.is_closed():
            raise RuntimeError("Event loop is closed")
        return asyncio.wrap_future(self._worker.submit(func, *args), loop=self)

    def close(self) -> None:
        if not self.is_closed():
            self._worker.stop()
        super().close()
