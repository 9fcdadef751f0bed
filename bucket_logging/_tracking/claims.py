"""The per-thread claim: an event a BucketProcessor tracked is not tracked again.

When structlog is bridged into ``logging``, the stdlib record built from a tracked
event dict reaches the handlers synchronously, on the same thread, right after the
processor chain. The processor records a claim (:func:`claim`); :func:`is_claimed`
lets a BucketHandler recognise that record and leave it alone, so the event is
tracked exactly once. Until a processor claims an event, the handler's hot path
does not look for a claim (``state.claiming`` is empty).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any, Final

from .._runtime.state import state as _state
from .tags import TAGS

__all__ = ["claim", "claiming", "is_claimed", "local", "release_claim"]

# Event-dict keys that render_to_log_kwargs does not turn into record attributes.
_NOT_EXTRA: Final = frozenset({"event", "exc_info", "stack_info", "stacklevel", "positional_args"})
_MISSING: Final = object()


class _Local(threading.local):
    #: [the claimed event dict, its event text, the record bound to it or None]
    claim: list[Any] | None = None


#: This thread's claim.
local: Final = _Local()


#: Not empty once a processor claimed an event in this process.
claiming: Final = _state.claiming


def claim(event_dict: Mapping[str, Any], event: object) -> None:
    """Record that a BucketProcessor tracked ``event_dict`` on this thread."""
    local.claim = [event_dict, event, None]
    if not claiming:
        claiming.add(True)


def release_claim() -> None:
    """Forget this thread's claim (a processor call that tracked nothing)."""
    mine = local
    if mine.claim is not None:
        mine.claim = None


def is_claimed(record: logging.LogRecord, fields: Mapping[str, Any], template: object) -> bool:
    """Whether ``record`` was produced from the event dict a processor just tracked.

    ``ProcessorFormatter.wrap_for_formatter`` makes the event dict itself the record's
    ``msg`` (``fields``). ``render_to_log_kwargs`` pops ``event`` from the event dict
    (it becomes the record's ``msg``) and turns every other key into a record
    attribute: the record's tags and other attributes are the very same objects as
    the claimed dict's values. The first record recognised is bound to the claim: a
    later record that happens to share those objects is not mistaken for it.
    """
    claim = local.claim
    if claim is None:
        return False
    claimed = claim[0]
    if fields is not claimed:
        # render_to_log_kwargs pops "event" from the (claimed) event dict itself; a
        # later processor may have replaced the text (PositionalArgumentsFormatter).
        if template is not claim[1] and "event" in claimed:
            return False
        get = fields.get
        cget = claimed.get
        for key in TAGS:
            if get(key) is not cget(key):
                return False
        for key, value in claimed.items():  # every other key became a record attribute
            if key not in _NOT_EXTRA and get(key, _MISSING) is not value:
                return False
    bound = claim[2]
    if bound is None:
        claim[2] = record
        return True
    return bound is record
