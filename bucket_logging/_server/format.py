"""One readable line per tracking call, as the local server and the demo print them.

Everything in a line came from a client: control and bidirectional characters are
escaped (:func:`~bucket_logging._runtime.diagnostics.escape_controls`), so that no request can
clear the terminal, set its title, colour it or reorder the text on screen.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

import orjson

from .._runtime.diagnostics import escape_controls
from .server import RequestRecord

__all__ = ["format_call", "format_rejection"]

_BARE: Final = re.compile(r"[\w.@:/+-]+\Z")
_MAX_VALUE: Final = 80
_MAX_COMMENT: Final = 160
_MAX_DETAIL: Final = 400

# The fields shown in the head of each kind's line, as (wire name, shown name).
_IDS: Final[dict[str, tuple[tuple[str, str], ...]]] = {
    "user": (("userId", "user"),),
    "company": (("companyId", "company"), ("userId", "user")),
    "event": (("userId", "user"), ("companyId", "company")),
    "feedback": (
        ("userId", "user"),
        ("companyId", "company"),
        ("featureId", "feature"),
        ("key", "key"),
        ("score", "score"),
    ),
}
_NOT_SHOWN: Final = frozenset({"type", "timestamp", "attributes", "context", "event", "comment"})


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _value(value: Any, limit: int = _MAX_VALUE) -> str:
    """One value, readable and on one line: bare words bare, everything else as JSON."""
    if isinstance(value, str):
        if _BARE.match(value) and len(value) <= limit:
            return value
        return orjson.dumps(_truncate(value, limit)).decode()
    try:
        text = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except (TypeError, orjson.JSONEncodeError):
        text = repr(value)
    return _truncate(text.replace("\n", " "), limit)


def _key(name: Any) -> str:
    text = str(name)
    return text if _BARE.match(text) else orjson.dumps(text).decode()


def format_call(call: Mapping[str, Any]) -> str:
    """Format one tracking call (a bulk entry, ``type`` included) as one readable line.

    >>> format_call({"type": "event", "event": "Sent message", "userId": 42,
    ...              "companyId": "acme", "attributes": {"position": "popover"}})
    'event     user=42 company=acme  "Sent message"  position=popover'
    """
    kind = call.get("type")
    kind_text = kind if isinstance(kind, str) else "?"
    groups: list[str] = []
    head = [
        f"{shown}={_value(call[wire])}" for wire, shown in _IDS.get(kind_text, ()) if wire in call
    ]
    if kind == "event":
        groups.append(" ".join(head))
        groups.append(orjson.dumps(_truncate(str(call.get("event")), _MAX_VALUE)).decode())
    elif kind == "feedback":
        if "comment" in call and call["comment"] is not None:
            comment = call["comment"]
            head.append(
                orjson.dumps(_truncate(comment, _MAX_COMMENT)).decode()
                if isinstance(comment, str)
                else _value(comment)
            )
        groups.append(" ".join(head))
    else:
        groups.append(" ".join(head))
    known = {wire for wire, _ in _IDS.get(kind_text, ())} | _NOT_SHOWN
    extras = [f"{_key(k)}={_value(v)}" for k, v in call.items() if k not in known]
    attributes = call.get("attributes")
    if isinstance(attributes, Mapping):
        extras.extend(f"{_key(k)}={_value(v)}" for k, v in attributes.items())
    elif attributes is not None:
        extras.append(f"attributes={_value(attributes)}")
    if extras:
        groups.append(" ".join(extras))
    context = call.get("context")
    if isinstance(context, Mapping) and context.get("active") is False:
        groups.append("(inactive)")
    return escape_controls(f"{kind_text:<9} " + "  ".join(g for g in groups if g))


def format_rejection(record: RequestRecord) -> str:
    """Format a request that was not accepted as one line, e.g.
    ``400 BODY_VALIDATION_FAILED items[3]: score must be a number from 1 to 5, got 9``."""
    if record.status == 0:
        return f"--- {record.kind or '?'} request dropped without a response (connection reset)"
    detail = _truncate(escape_controls("; ".join(record.errors) or record.message), _MAX_DETAIL)
    return f"{record.status} {escape_controls(record.code or '')} {detail}".rstrip()
