"""The Bucket Tracking API's rules: the one place that validates a tracking call.

The client validates every item with :func:`validate_wire` before it is queued (see
:mod:`bucket_logging._items.item`), and the local tracking server
(:mod:`bucket_logging._server.server`) validates what it receives with the very same
function. Encoding lives apart, in :mod:`bucket_logging._items.encoding`.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from collections.abc import Mapping
from typing import Any, Final

__all__ = [
    "ALLOWED",
    "KINDS",
    "MAX_BODY_BYTES",
    "MAX_ID_CHARS",
    "MAX_ITEM_BYTES",
    "timestamp_problem",
    "validate_wire",
    "value_problems",
]

#: The longest id (``userId``, ``companyId``) taken, in characters. The API documents
#: no limit for ids; 255 is the limit it documents for a feature ``key``, and ample
#: for any real id (a UUID is 36, an e-mail address at most 254). A longer one is
#: refused from every front end (a megabyte read from a header, 64 of which would
#: fill the queue).
MAX_ID_CHARS: Final = 255

#: The four kinds of tracking call, as the ``type`` of a bulk entry.
KINDS: Final = ("user", "company", "event", "feedback")

#: Every request body stays at or under this many bytes (the API's 2 MB limit).
MAX_BODY_BYTES: Final = 2_000_000

#: One item alone may be at most this large: it must fit a bulk body ``[item]``.
MAX_ITEM_BYTES: Final = MAX_BODY_BYTES - 2

_FEEDBACK_SOURCES: Final = frozenset({"api", "manual", "prompt", "sdk", "widget"})

ALLOWED: Final[dict[str, frozenset[str]]] = {
    "user": frozenset({"type", "userId", "attributes", "context", "timestamp"}),
    "company": frozenset({"type", "companyId", "userId", "attributes", "context", "timestamp"}),
    "event": frozenset(
        {"type", "event", "userId", "companyId", "attributes", "context", "timestamp"}
    ),
    "feedback": frozenset(
        {
            "type",
            "featureId",
            "key",
            "userId",
            "companyId",
            "score",
            "comment",
            "question",
            "promptedQuestion",
            "source",
            "promptId",
            "feedbackId",
            "timestamp",
        }
    ),
}

# (field, required) for the ids of each kind
_IDS: Final[dict[str, tuple[tuple[str, bool], ...]]] = {
    "user": (("userId", True),),
    "company": (("companyId", True), ("userId", False)),
    "event": (("userId", True), ("companyId", False)),
    "feedback": (("userId", True), ("companyId", False)),
}

_ISO_RE: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,]\d{1,9})?)?"
    r"(?:Z|[+-](\d{2})(?::?(\d{2}))?)\Z"
)


# --------------------------------------------------------------------------- validation


def _id_problem(value: Any, name: str) -> str | None:
    """Return why ``value`` is not a valid id, or None when it is."""
    if value is None:
        return f"{name} is required"
    cls = type(value)
    if cls is str:
        if len(value) > MAX_ID_CHARS:
            return f"{name} is {len(value):,} characters long, over the {MAX_ID_CHARS} allowed"
        return None if value else f"{name} must not be empty"
    if cls is int:
        return None
    if cls is bool:
        return f"{name} must be a string or a number, not a bool"
    if cls is float:
        return None if math.isfinite(value) else f"{name} must be a finite number"
    if isinstance(value, str):
        if len(value) > MAX_ID_CHARS:
            return f"{name} is {len(value):,} characters long, over the {MAX_ID_CHARS} allowed"
        return None if value else f"{name} must not be empty"
    if isinstance(value, int) and not isinstance(value, bool):
        return None
    return f"{name} must be a non-empty string or a number, not {cls.__name__}"


def timestamp_problem(value: Any) -> str | None:
    if isinstance(value, str):
        match = _ISO_RE.match(value)
        if match:
            year, month, day, hour, minute, second, zh, zm = (int(g or 0) for g in match.groups())
            try:  # the fields' ranges (datetime.fromisoformat is stricter on Python 3.10)
                _dt.datetime(year, month, day, hour, minute, second)
            except ValueError:
                pass
            else:
                if zh < 24 and zm < 60:
                    if (
                        year in (1, 9999)
                        and (zh or zm)
                        and _outside_years(match, year, month, day, hour, minute, second, zh, zm)
                    ):
                        return (
                            f"timestamp {value!r:.60} is outside the years 1-9999 in UTC: "
                            "ISO 8601 cannot write it"
                        )
                    return None
        return f"timestamp must be ISO 8601 with a time zone, got {value!r:.60}"
    if type(value) is int and value >= 0:
        return None  # milliseconds since the epoch, as Bucket's OpenAPI allows
    return f"timestamp must be an ISO 8601 string, not {type(value).__name__}"


def _outside_years(match: re.Match[str], *fields: int) -> bool:
    """Whether the time of a matched ISO 8601 text falls before year 1 or after 9999 in UTC."""
    year, month, day, hour, minute, second, zh, zm = fields
    sign = -1 if match.string[match.start(7) - 1] == "-" else 1
    try:
        local = _dt.datetime(year, month, day, hour, minute, second)
        local - sign * _dt.timedelta(hours=zh, minutes=zm)
    except OverflowError:
        return True
    return False


def _optional_str(obj: Mapping[str, Any], name: str, lo: int, hi: int, out: list[str]) -> None:
    value = obj.get(name)
    if value is None:
        if name in obj:
            out.append(f"{name} must not be null")
        return
    if not isinstance(value, str):
        out.append(f"{name} must be a string, not {type(value).__name__}")
    elif not lo <= len(value) <= hi:
        out.append(f"{name} must be {lo} to {hi} characters long, got {len(value)}")


def validate_wire(obj: Any, kind: str | None = None) -> list[str]:
    """Check one item in the API's wire format; return the problems, empty when valid.

    ``obj`` is a decoded JSON object as it travels to the API (camelCase keys).
    ``kind`` is the endpoint's kind for the single-item endpoints; for bulk entries it
    is taken from ``obj["type"]``. The server and the client both use this function.
    """
    if not isinstance(obj, Mapping):
        return [f"an item must be a JSON object, not {type(obj).__name__}"]
    if kind is None:
        kind = obj.get("type")
        if kind not in ALLOWED:
            return [f"type must be one of {', '.join(KINDS)}, got {kind!r:.40}"]
    elif "type" in obj and obj["type"] != kind:
        return [f"type {obj['type']!r:.40} does not match the {kind} endpoint"]
    problems: list[str] = []
    unknown = obj.keys() - ALLOWED[kind]
    if unknown:
        names = ", ".join(sorted(str(k) for k in unknown))
        problems.append(f"unknown field(s) for a {kind}: {names}")
    value_problems(obj, kind, problems)
    return problems


def _is_mapping(value: Any) -> bool:
    return type(value) is dict or isinstance(value, Mapping)


def value_problems(obj: Mapping[str, Any], kind: str, problems: list[str]) -> None:
    """Append what is wrong with the values of a ``kind`` item (its keys are known)."""
    if kind == "event":
        name = obj.get("event")
        if type(name) is not str or not name:
            if name is None:
                problems.append("event is required")
            elif not isinstance(name, str):
                problems.append(f"event must be a non-empty string, not {type(name).__name__}")
            elif not name:
                problems.append("event must not be empty")
    elif kind == "feedback":
        _feedback_problems(obj, problems)
    for name, required in _IDS[kind]:
        if required or name in obj:
            value = obj.get(name)
            if type(value) is int or (type(value) is str and 0 < len(value) <= MAX_ID_CHARS):
                continue
            p = _id_problem(value, name)
            if p:
                problems.append(p)
    if "attributes" in obj and not _is_mapping(obj["attributes"]):
        problems.append(f"attributes must be an object, not {type(obj['attributes']).__name__}")
    if "context" in obj:
        ctx = obj["context"]
        if not _is_mapping(ctx):
            problems.append(f"context must be an object, not {type(ctx).__name__}")
        else:
            if ctx.keys() - {"active"}:
                names = ", ".join(sorted(str(k) for k in ctx.keys() - {"active"}))
                problems.append(f"context supports only 'active', got {names}")
            if "active" in ctx and type(ctx["active"]) is not bool:
                problems.append("context.active must be true or false")
    if "timestamp" in obj:
        p = timestamp_problem(obj["timestamp"])
        if p:
            problems.append(p)


def _feedback_problems(obj: Mapping[str, Any], problems: list[str]) -> None:
    has_feature = "featureId" in obj and obj["featureId"] is not None
    if has_feature:
        fp = _id_problem(obj["featureId"], "featureId")
        if fp:
            problems.append(fp)
    if "key" in obj:
        _optional_str(obj, "key", 1, 255, problems)
    if not has_feature and obj.get("key") is None:
        problems.append("feedback needs featureId or key")
    score = obj.get("score")
    comment = obj.get("comment")
    if score is None and not comment:  # an empty comment is no comment
        problems.append("feedback needs a score (1-5), a non-empty comment, or both")
    if score is not None and (
        isinstance(score, bool) or not isinstance(score, (int, float)) or not 1 <= score <= 5
    ):
        problems.append(f"score must be a number from 1 to 5, got {score!r:.40}")
    if comment is not None and (comment != "" or score is not None):
        # "" beside a score: the builders leave it out; on the wire a strict server refuses it
        _optional_str(obj, "comment", 1, 4000, problems)
    _optional_str(obj, "question", 0, 256, problems)
    _optional_str(obj, "promptedQuestion", 0, 256, problems)
    _optional_str(obj, "promptId", 10, 40, problems)
    _optional_str(obj, "feedbackId", 1, 255, problems)
    source = obj.get("source")
    if source is not None and source not in _FEEDBACK_SOURCES:
        allowed = ", ".join(sorted(_FEEDBACK_SOURCES))
        problems.append(f"source must be one of {allowed}, got {source!r:.40}")
