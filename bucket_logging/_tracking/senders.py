"""What a front end needs from a sender, and how it gets one.

A front end takes ``sender=`` (anything with ``enqueue(item)`` and
``flush(timeout)``: :class:`Sender`) or the tracking key and sender options, and
:func:`resolve_sender` gives it the shared :class:`~bucket_logging.BulkSender`.

The tracking layer's one port onto the sender layer: only this module knows the
concrete :class:`~bucket_logging.BulkSender`, and what more it offers than
:class:`Sender` (the everyday event's encoded bytes straight onto its queue:
:func:`encoded_put`; refusals counted in its stats: :func:`refusal_counter`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol

from .._exceptions import ConfigurationError
from .._items.item import Item
from .._runtime import diagnostics as _diagnostics
from .._sender.ledger import RefusalReason
from .._sender.sender import BulkSender
from .._sender.shared import get_sender

__all__ = [
    "Sender",
    "before_send_of",
    "check_field",
    "encoded_put",
    "every_event_attributes",
    "flush_sender",
    "plan_counter",
    "refusal_counter",
    "resolve_sender",
]

#: How long a front end's ``flush()`` waits by default when its sender has no
#: ``shutdown_timeout`` (a custom sender).
FLUSH_TIMEOUT: Final = 5.0


class Sender(Protocol):
    """What a front end needs from a sender (see :mod:`bucket_logging._sender.sender`)."""

    def enqueue(self, item: Item) -> bool:
        """Queue ``item`` without blocking; False when it was dropped."""

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued was delivered; True when it was."""


def encoded_put(sender: Sender) -> Callable[[bytes], bool] | None:
    """What puts an event's encoded bytes straight onto ``sender``'s queue, or None.

    None for any sender but a :class:`~bucket_logging.BulkSender` whose ``enqueue`` is
    its own (a subclass that overrides ``enqueue`` sees every item as an Item).
    """
    if isinstance(sender, BulkSender) and type(sender).enqueue is BulkSender.enqueue:
        return sender.put_encoded
    return None


def every_event_attributes(sender: Sender) -> dict[str, Any] | None:
    """The attributes ``sender`` adds to every event (its ``attributes`` option), or
    None (none, or a sender that is not a :class:`~bucket_logging.BulkSender`)."""
    return sender.config.attributes if isinstance(sender, BulkSender) else None


def before_send_of(
    sender: Sender,
) -> Callable[[dict[str, Any]], dict[str, Any] | None] | None:
    """``sender``'s ``before_send`` as the capture blocks apply it (a decoded item in, the
    item or None out), or None when it has none (:meth:`BulkSender.apply_before_send`)."""
    if isinstance(sender, BulkSender) and sender.config.before_send is not None:
        return sender.apply_before_send
    return None


def refusal_counter(sender: Sender) -> Callable[[RefusalReason, str, str], None] | None:
    """What counts a record's refused call in ``sender``'s stats, or None for a sender
    that keeps no stats (:meth:`BulkSender.refused`)."""
    return sender.refused if isinstance(sender, BulkSender) else None


def plan_counter(sender: Sender) -> Callable[[str], None] | None:
    """What counts a call's plan violation by kind in ``sender``'s stats, or None for a
    sender that keeps no stats (:meth:`BulkSender.plan_violation`)."""
    return sender.plan_violation if isinstance(sender, BulkSender) else None


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


def flush_sender(sender: Sender, timeout: float | None) -> bool:
    """``sender.flush(timeout)``, never raising: False when it failed.

    ``timeout`` defaults to the sender's ``shutdown_timeout`` (:data:`FLUSH_TIMEOUT`
    for a sender without one): logging calls ``flush()`` with no argument at
    ``logging.shutdown()``, and a hanging endpoint must not hold the exit longer.
    True when everything queued was delivered (or dropped and counted).
    """
    if timeout is None:
        default = getattr(sender, "shutdown_timeout", None)
        timeout = float(default) if isinstance(default, (int, float)) else FLUSH_TIMEOUT
    try:
        return bool(sender.flush(timeout))
    except Exception as exc:
        _diagnostics.report(
            "flush-error",
            "Flushing the tracking queue failed (%s: %s)",
            type(exc).__name__,
            exc,
        )
        return False
