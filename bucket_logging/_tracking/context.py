"""structlog's context variables, read the cheap way.

``structlog.contextvars.bind_contextvars(user_id=...)`` binds one ContextVar per
key, named with :data:`KEY_PREFIX`. :func:`from_context` reads the one a tracker
needs; :data:`CONTEXT_KEYS` tells at the cost of an ``in`` test that a key is
certainly not bound. Both use structlog's registry of those variables when it has
one (``_CONTEXT_VARS``, private: far cheaper than ``get_contextvars()``, which
copies the whole context on every call), and the public API otherwise.
"""

from __future__ import annotations

from typing import Any, Final

import structlog.contextvars

__all__ = ["CONTEXT_KEYS", "KEY_PREFIX", "from_context"]

#: The prefix of structlog's ContextVar names (structlog's public constant).
KEY_PREFIX: Final = structlog.contextvars.STRUCTLOG_KEY_PREFIX


def _context_vars() -> dict[str, Any] | None:
    found = getattr(structlog.contextvars, "_CONTEXT_VARS", None)
    return found if isinstance(found, dict) else None


# structlog keeps one ContextVar per bound key in this dict; reading the one we need
# is far cheaper than get_contextvars(), which copies the whole context.
_STRUCTLOG_VARS: Final = _context_vars()


class _AnyKey:
    """Stands for structlog's dict where it has none: every key may be bound."""

    def __contains__(self, key: object) -> bool:
        return True


#: The keys that may hold a bound value: a key not in it is certainly not bound.
CONTEXT_KEYS: Final = _AnyKey() if _STRUCTLOG_VARS is None else _STRUCTLOG_VARS


def from_context(name: str, key: str) -> Any:
    """The value bound with ``structlog.contextvars.bind_contextvars(name=...)``, or None."""
    variables = _STRUCTLOG_VARS
    if variables is None:
        return structlog.contextvars.get_contextvars().get(name)
    var = variables.get(key)
    if var is None:
        return None
    value = var.get(None)
    return None if value is Ellipsis else value
