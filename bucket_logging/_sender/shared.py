"""The process's shared senders: :func:`get_sender`, and :func:`flush` / :func:`aflush`.

Handlers, processors and sinks with the same key, API and URL share one
:class:`~bucket_logging.BulkSender` (one queue, one thread, one connection pool); the
registry lives on :data:`bucket_logging._runtime.state.state` with the rest of the process's
state.
"""

from __future__ import annotations

from typing import Any, Final

from .._runtime import state as _process
from .._runtime.diagnostics import report
from .config import api_of, resolve_key, resolve_offline, resolve_url
from .sender import BulkSender

__all__ = ["aflush", "flush", "get_sender"]


def get_sender(
    tracking_key: str | None = None, *, base_url: str | None = None, **options: Any
) -> BulkSender:
    """The process's shared sender for a key and URL, created on first use.

    Handlers and processors with the same key and URL share one queue, one thread
    and one connection pool. ``options`` are :class:`BulkSender` keywords; they apply
    when the sender is created (a later call with other options gets the existing
    sender, and a warning says so).
    """
    offline = resolve_offline(options.get("offline", False))
    key = resolve_key(tracking_key)
    api = api_of(key, options.get("api"))
    registry_key = (key, api, resolve_url(base_url, api), offline)
    state = _process.state
    with state.registry_lock:
        sender = state.registry.get(registry_key)
        if isinstance(sender, BulkSender) and not sender.closed:
            if options and state.shared_options.get(sender) != options:
                report(
                    "options",
                    "bucket_logging: a sender for this key and URL exists already; "
                    "its options are kept and the new ones ignored",
                )
            return sender
        sender = BulkSender(tracking_key, base_url=base_url, **options)
        state.shared_options[sender] = options
        state.registry[registry_key] = sender
        return sender


flush: Final = _process.flush_all
"""``flush(timeout=None) -> bool``: flush every sender of the process.

For scripts and serverless handlers (and a process that ends with ``os._exit``):
waits at most ``timeout`` seconds in all, and returns True when everything queued was
delivered (or dropped and counted).
"""

aflush: Final = _process.aflush_all
"""``await aflush(timeout=None) -> bool``: :func:`flush` for asyncio applications.

Awaits without blocking the event loop, e.g. in an ASGI app's lifespan shutdown.
"""
