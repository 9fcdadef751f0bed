"""The sender's event loop: a selector loop that never needs a new thread once started.

asyncio runs blocking calls such as ``socket.getaddrinfo`` (name resolution, so every
connection to a host name like ``tracking.bucket.co`` or ``localhost``) in the loop's
default executor, a :class:`concurrent.futures.ThreadPoolExecutor`. That executor stops
taking work once the interpreter begins to shut down (``threading._shutdown`` runs before
the ``atexit`` hooks), and at that point no new thread can be started either. A sender
that delivers its queue at exit, or after its connections idled out, then failed with
``can't register atexit after shutdown`` or ``cannot schedule new futures after
shutdown``, losing every item of a short script.

:class:`ResolvingLoop` runs those calls on one :class:`~bucket_logging._runtime.worker.Worker`
of its own instead, started
with the loop (on the thread that builds the sender, never lazily) and stopped when
the loop is closed. It is a daemon thread, like the sender's: the exit hooks wait for
the sender, not the interpreter.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import selectors
from collections.abc import Callable
from typing import Any, TypeVar

from .._runtime.worker import Worker

__all__ = ["ResolvingLoop"]

_T = TypeVar("_T")


class ResolvingLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose default executor is one thread started with it.

    ``run_in_executor(None, ...)`` (``getaddrinfo``, ``getnameinfo``) runs on that
    thread, so name resolution works at interpreter exit. Building the loop raises
    :class:`RuntimeError` where no thread can be started.
    """

    def __init__(self) -> None:
        super().__init__(selectors.DefaultSelector())
        try:
            self._worker = Worker("bucket_logging-resolver")
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
        return self._worker.future(self, func, *args)

    def close(self) -> None:
        if not self.is_closed():
            self._worker.stop()
        super().close()
