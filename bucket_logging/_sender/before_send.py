"""``before_send``: the application's last look at each item; and where tracking goes.

:class:`BeforeSend` runs a sender's ``before_send`` hook on an item's entry (decoded,
changed or dropped by the hook, validated and encoded again); it counts what the hook
drops in the sender's ledger. :func:`announce` is the first sender's one line at INFO:
the API, the host, the spool and what delivers at exit (never the key), or
that tracking is off for want of a key (at WARNING).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any, Final

import httpx
import orjson

from .._items.item import Item, dumps, encode, kind_of
from .._runtime import diagnostics as _diagnostics
from .._runtime import state as _process
from .._runtime import uvicorn_stop as _uvicorn_stop
from .._runtime.diagnostics import report
from .config import ENV_KEY, ENV_OFFLINE, ENV_REFLAG_KEY, ENV_REQUIRE_KEY, SenderConfig
from .ledger import Ledger

__all__ = ["BeforeSend", "announce"]

#: The threads inside a ``before_send`` hook: what the hook logs is not tracked.
_filtering: Final = _process.state.filtering


class BeforeSend:
    """A sender's ``before_send`` hook (or None), counting in the sender's ``ledger``."""

    def __init__(
        self, hook: Callable[[dict[str, Any]], dict[str, Any] | None] | None, ledger: Ledger
    ) -> None:
        self._hook = hook
        self._ledger = ledger

    def apply(self, entry: dict[str, Any]) -> dict[str, Any] | None:
        """``entry`` as the hook returns it (None: dropped); counts nothing."""
        if self._hook is None:
            return entry
        item = self.filter(dumps(entry), count=False)
        return None if item is None else item.to_dict()

    def filter(self, body: bytes, *, count: bool = True) -> Item | None:
        """The entry ``body`` through ``before_send``: the item to queue, or None (dropped:
        by the hook, counted as ``before_send``; a hook that raised or returned something
        that is not a valid item: reported, counted as ``before_send_error``)."""
        hook = self._hook
        me = threading.get_ident()
        if hook is None or me in _filtering:  # (an item logged by the hook itself: not tracked)
            return None if hook is not None else Item(kind_of(body), body)
        _filtering.add(me)
        kind = kind_of(body)
        try:
            entry = orjson.loads(body)
            result = hook(entry)
            if result is None:
                if count:
                    self._ledger.count_dropped("before_send", 1, pending=False)
                return None
            if not isinstance(result, dict):
                raise TypeError(f"before_send returned {type(result).__name__}, not a dict")
            wire = dict(result)
            timestamp = wire.pop("timestamp", None)
            return encode(wire, timestamp if isinstance(timestamp, str) else None)
        except Exception as exc:
            if count:
                self._ledger.count_dropped("before_send_error", 1, pending=False)
            report(
                "before-send",
                "bucket_logging: before_send failed on a %s item (%s: %s); the item was dropped",
                kind,
                type(exc).__name__,
                exc,
            )
            return None
        finally:
            _filtering.discard(me)


def announce(config: SenderConfig) -> None:
    """Say once per process, at INFO on ``bucket_logging``, where tracking goes: the API,
    the host, the spool, and what delivers the queue at exit (never the key). Without a
    key, say at WARNING that tracking is off. Inside ``dictConfig``, the line waits for
    the configuration to end (it would go nowhere before)."""
    state = _process.state
    if config.keyless:
        line = (
            f"no key ({ENV_REFLAG_KEY} or {ENV_KEY}, or tracking_key=...): tracking is off; "
            f"calls are validated and counted, none is sent ({ENV_OFFLINE}=1 says it is on "
            f"purpose, {ENV_REQUIRE_KEY}=1 makes a missing key an error)"
        )
        state.announced = True
        _diagnostics.when_logging_is_configured(
            lambda: _diagnostics.warn_once("no-key", "bucket_logging: %s", line)
        )
        return
    if state.announced:
        return
    state.announced = True
    line = _startup_line(config)
    _diagnostics.when_logging_is_configured(lambda: _diagnostics.info("%s", line))


def _startup_line(config: SenderConfig) -> str:
    if config.offline:
        return "bucket_logging: offline: tracking calls are validated and counted, none is sent"
    state = _process.state
    if _uvicorn_stop.capturing_server(_sigterm_handler()) is not None:
        sigterm = "uvicorn's shutdown delivers the queue before the process ends"
    elif state.sigterm_installed:
        sigterm = "a SIGTERM handler delivers the queue before the process ends"
    elif not config.handle_sigterm:
        sigterm = "no SIGTERM handler (handle_sigterm is off)"
    elif state.sigterm_requested is not None:  # (built off the main thread)
        sigterm = (
            "the main thread is asked to install a SIGTERM handler that delivers the queue "
            "(the first sender was built off the main thread)"
        )
    elif threading.current_thread() is not threading.main_thread():
        sigterm = "no SIGTERM handler (the first sender was built off the main thread)"
    else:
        sigterm = "no SIGTERM handler (the application handles SIGTERM itself)"
    api = "Reflag's Runtime API" if config.runtime else "Bucket's tracking API"
    host = httpx.URL(config.base_url)
    where = f"{host.scheme}://{host.host}" + (f":{host.port}" if host.port else "")
    spool = f"spool at {config.spool.directory}" if config.spool else "no spool"
    return f"bucket_logging: tracking to {api} at {where}; {spool}; {sigterm}"


def _sigterm_handler() -> object:
    try:
        return signal.getsignal(signal.SIGTERM)
    except (ValueError, OSError, AttributeError):  # pragma: no cover - no SIGTERM
        return None
