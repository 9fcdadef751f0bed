"""Deliver when a uvicorn server that holds SIGTERM shuts down (no line of the app's).

uvicorn 0.29 and later run ``Server.serve()`` inside ``Server.capture_signals()``: SIGTERM
and SIGINT go to the server's ``handle_exit``; after its graceful shutdown the server puts
back the handlers it found and raises the captured signal again. When the app (so the
first sender) was imported before that (``uvicorn app:app`` in one process, gunicorn's
``UvicornWorker`` without ``--preload``), the handler it finds is the library's, which
delivers. When the app is imported *inside* the capture (``uvicorn --workers N`` and
``--reload``: each worker process imports it in ``Server.serve()``), or before a fork
that the server's capture follows (gunicorn ``--preload`` with ``UvicornWorker``), the
handler it finds and puts back is the default one: the re-raised SIGTERM kills the
worker with the queue, no handler of the library can run.

So when a sender starts and finds SIGTERM held by a uvicorn server (a bound
``handle_exit`` of a ``uvicorn.server.Server``), it hooks that server's ``shutdown()``,
the public coroutine method (stable since uvicorn's early releases) that closes the
listeners, waits for the last requests and runs the lifespan shutdown. When it returns,
what is queued is delivered; the senders stay open (the process may go on, and then its
exit delivers the rest). Only when that delivery does not finish within
``shutdown_timeout`` are the senders closed at once, so that the loss is counted and
reported before the signal ends the process. The hook is set from any thread, once per
server. Where it cannot be set, one warning names the fix: the lifespan line.
"""

from __future__ import annotations

import inspect
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any, Final

from . import state as _process
from .diagnostics import report, warn_once
from .shutdown import shutdown_all

__all__ = ["LIFESPAN_LINE", "capturing_server", "deliver", "hook", "watch"]

#: The fix where the hook cannot be set (and harmless where it can).
LIFESPAN_LINE: Final = "await bucket_logging.aflush(5) at the end of the app's lifespan"

#: Marks the hooked ``shutdown`` (a server is hooked once).
_MARK: Final = "_bucket_logging_delivers"


def capturing_server(handler: object) -> Any | None:
    """The uvicorn server whose ``handle_exit`` is ``handler``, or None."""
    module = sys.modules.get("uvicorn.server")
    server_class = getattr(module, "Server", None)
    owner = getattr(handler, "__self__", None)
    if not isinstance(server_class, type) or not isinstance(owner, server_class):
        return None
    return owner if getattr(handler, "__name__", None) == "handle_exit" else None


def watch() -> None:
    """Hook the uvicorn server that holds SIGTERM, if one does. Cheap; any thread;
    never raises (called whenever a sender starts)."""
    try:
        handler = signal.getsignal(signal.SIGTERM)
    except (ValueError, OSError, AttributeError):  # pragma: no cover - no SIGTERM
        return
    server = capturing_server(handler)
    if server is not None:
        hook(server)


def hook(server: Any) -> bool:
    """Deliver when ``server.shutdown()`` returns; False (and one warning) if impossible."""
    try:
        shutdown = server.shutdown
        if getattr(shutdown, _MARK, False):
            return True
        if not inspect.iscoroutinefunction(shutdown):
            raise TypeError("its shutdown() is not a coroutine method")
        server.shutdown = _then_deliver(shutdown)
    except Exception as exc:
        _cannot(server, exc)
        return False
    return True


def _then_deliver(shutdown: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def shutdown_then_deliver(*args: Any, **kwargs: Any) -> Any:
        try:
            return await shutdown(*args, **kwargs)
        finally:
            await deliver()

    setattr(shutdown_then_deliver, _MARK, True)
    return shutdown_then_deliver


async def deliver() -> None:
    """Deliver what every live sender holds within the longest ``shutdown_timeout``,
    without blocking the loop; past it, close them (the loss counted and reported)."""
    try:
        senders = [s for s in list(_process.state.live) if not s.closed]
        if not senders:
            return
        if await _process.aflush_all(max(s.shutdown_timeout for s in senders)):
            return
        shutdown_all(limit=0.0)
    except Exception as exc:  # pragma: no cover - the server's exit must go on
        report("exit", "bucket_logging: error while delivering at uvicorn's shutdown: %r", exc)


def _cannot(server: Any, exc: BaseException) -> None:
    version = getattr(sys.modules.get("uvicorn"), "__version__", "?")
    warn_once(
        "uvicorn-hook",
        "bucket_logging: cannot deliver at the shutdown of this %s (uvicorn %s: %s); what "
        "is queued when SIGTERM ends this worker may be lost. Fix: %s",
        type(server).__name__,
        version,
        exc,
        LIFESPAN_LINE,
    )
