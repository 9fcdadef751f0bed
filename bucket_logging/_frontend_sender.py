"""What a front end needs from a sender, and how it gets one.

A front end takes ``sender=`` (anything with ``enqueue(item)`` and
``flush(timeout)``: :class:`Sender`) or the tracking key and sender options, and
:func:`resolve_sender` gives it the shared :class:`~bucket_logging.BulkSender`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from ._exceptions import ConfigurationError
from ._items import Item
from ._shared import get_sender

__all__ = ["Sender", "check_field", "resolve_sender"]


class Sender(Protocol):
    """What a front end needs from a sender (see :mod:`bucket_logging._sender`)."""

    def enqueue(self, item: Item) -> bool:
        """Queue ``item`` without blocking; False when it was dropped."""

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued was delivered; True when it was."""


def resolve_sender(
    sender: Any,
    tracking_key: str | None,
    base_url: str | None,
    options: Mapping[str, Any],
) -> Sender:
    """The sender a front end uses: ``sender`` as given, or the shared one for the key."""
    if sender is not None:
        if tracking_key is not None or base_url is not None or options:
            raise ConfigurationError(
                "pass either sender= or the tracking key and sender options, not both"
            )
        if not callable(getattr(sender, "enqueue", None)) or not callable(
            getattr(sender, "flush", None)
        ):
            raise ConfigurationError(
                f"sender must have enqueue() and flush() methods, got {type(sender).__name__}"
            )
        return sender  # type: ignore[no-any-return]
    return get_sender(tracking_key, base_url=base_url, **options)


def check_field(name: str, value: object) -> str:
    """``value`` if it is a non-empty string (a field name), else ConfigurationError."""
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{name} must be a non-empty string, got {value!r:.60}")
    return value
