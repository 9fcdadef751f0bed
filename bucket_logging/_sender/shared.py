"""The process's shared senders: :func:`get_sender`, and :func:`flush` / :func:`aflush`.

Handlers, processors and sinks with the same key, API, URL and options share one
:class:`~bucket_logging.BulkSender` (one queue, one thread, one connection pool); the
registry lives on :data:`bucket_logging._runtime.state.state` with the rest of the process's
state.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Final

from .. import _options
from .._runtime import state as _process
from .._runtime.diagnostics import info
from .config import api_of, resolve_key, resolve_offline, resolve_url
from .sender import BulkSender

__all__ = ["aflush", "flush", "get_sender"]


def get_sender(
    tracking_key: str | None = None, *, base_url: str | None = None, **options: Any
) -> BulkSender:
    """The process's shared sender for a key, URL and options, created on first use.

    Handlers and processors with the same key, URL and options share one queue, one
    thread and one connection pool. ``options`` are :class:`BulkSender` keywords
    (those left at their defaults count as not given). A call that gives options
    other than an existing sender's, a ``before_send`` above all, gets a sender of its
    own: an option is never silently ignored. A call that gives none gets the first
    live sender for the key and URL (whatever its options), or a new one.
    """
    offline = resolve_offline(options.get("offline", False))
    key = resolve_key(tracking_key)
    api = api_of(key, options.get("api"))
    where = (key, api, resolve_url(base_url, api), offline)
    chosen = _fingerprint(options)
    state = _process.state
    with state.registry_lock:
        live = {
            registry_key[4]: sender
            for registry_key, sender in state.registry.items()
            if registry_key[:4] == where and isinstance(sender, BulkSender) and not sender.closed
        }
        if chosen in live:
            return live[chosen]
        if not chosen and live:
            return next(iter(live.values()))
        sender = BulkSender(tracking_key, base_url=base_url, **options)
        if live:
            info(
                "a sender of its own for this key and URL: its options (%s) differ from "
                "the existing sender's",
                ", ".join(name for name, _ in chosen) or "none given",
            )
        entry = (*where, chosen)
        state.registry[entry] = sender
        return sender


def _fingerprint(options: Mapping[str, Any]) -> tuple[tuple[str, object], ...]:
    """The options given, as a registry key: plain values as they are, objects (a
    callable, a transport, an SSL context) by identity (the sender holds them, so an
    identity is not reused while it lives)."""
    return tuple(
        sorted((name, _identity(value)) for name, value in _options.given(options).items())
    )


def _identity(value: object) -> object:
    if value is None or isinstance(value, (str, int, float, bool)):
        return (type(value).__name__, value)
    if isinstance(value, os.PathLike):
        return ("path", os.fspath(value))
    return ("object", id(value))


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
