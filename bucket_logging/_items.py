"""Tracking items: validated against the API's rules and encoded to JSON once.

This module is the single source of the Bucket Tracking API's rules. The client
validates every item with :func:`validate_wire` before it is queued, and the local
tracking server (:mod:`bucket_logging._server`) validates what it receives with the
very same function.

An :class:`Item` holds the already-encoded JSON object of one bulk entry
(``{"type": "event", ...}``); bulk bodies are assembled from these bytes without
encoding anything again.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import math
import re
import time
import uuid
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any, Final

import orjson

from ._exceptions import InvalidItemError

__all__ = [
    "KINDS",
    "MAX_BODY_BYTES",
    "MAX_ITEM_BYTES",
    "Item",
    "bulk_body",
    "dumps",
    "encode",
    "event_body",
    "format_timestamp",
    "kind_of",
    "normalize_id",
    "right_sized",
    "validate_wire",
]

#: The four kinds of tracking call, as the ``type`` of a bulk entry.
KINDS: Final = ("user", "company", "event", "feedback")

#: Every request body stays at or under this many bytes (the API's 2 MB limit).
MAX_BODY_BYTES: Final = 2_000_000

#: One item alone may be at most this large: it must fit a bulk body ``[item]``.
MAX_ITEM_BYTES: Final = MAX_BODY_BYTES - 2

_FEEDBACK_SOURCES: Final = frozenset({"api", "manual", "prompt", "sdk", "widget"})

_ALLOWED: Final[dict[str, frozenset[str]]] = {
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
        return None if value else f"{name} must not be empty"
    if cls is int:
        return None
    if cls is bool:
        return f"{name} must be a string or a number, not a bool"
    if cls is float:
        return None if math.isfinite(value) else f"{name} must be a finite number"
    if isinstance(value, str):
        return None if value else f"{name} must not be empty"
    if isinstance(value, int) and not isinstance(value, bool):
        return None
    return f"{name} must be a non-empty string or a number, not {cls.__name__}"


def _timestamp_problem(value: Any) -> str | None:
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
                    return None
        return f"timestamp must be ISO 8601 with a time zone, got {value!r:.60}"
    if type(value) is int and value >= 0:
        return None  # milliseconds since the epoch, as Bucket's OpenAPI allows
    return f"timestamp must be an ISO 8601 string, not {type(value).__name__}"


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
        if kind not in _ALLOWED:
            return [f"type must be one of {', '.join(KINDS)}, got {kind!r:.40}"]
    elif "type" in obj and obj["type"] != kind:
        return [f"type {obj['type']!r:.40} does not match the {kind} endpoint"]
    problems: list[str] = []
    unknown = obj.keys() - _ALLOWED[kind]
    if unknown:
        names = ", ".join(sorted(str(k) for k in unknown))
        problems.append(f"unknown field(s) for a {kind}: {names}")
    _value_problems(obj, kind, problems)
    return problems


def _is_mapping(value: Any) -> bool:
    return type(value) is dict or isinstance(value, Mapping)


def _value_problems(obj: Mapping[str, Any], kind: str, problems: list[str]) -> None:
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
            if type(value) is int or (type(value) is str and value):
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
        p = _timestamp_problem(obj["timestamp"])
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
        _optional_str(obj, "comment", 0, 4000, problems)
    _optional_str(obj, "question", 0, 256, problems)
    _optional_str(obj, "promptedQuestion", 0, 256, problems)
    _optional_str(obj, "promptId", 10, 40, problems)
    _optional_str(obj, "feedbackId", 1, 255, problems)
    source = obj.get("source")
    if source is not None and source not in _FEEDBACK_SOURCES:
        allowed = ", ".join(sorted(_FEEDBACK_SOURCES))
        problems.append(f"source must be one of {allowed}, got {source!r:.40}")


# --------------------------------------------------------------------------- encoding


def _default(obj: Any) -> Any:
    """Convert what orjson cannot encode natively; never raise."""
    try:
        return _convert(obj)
    except Exception:  # e.g. a __getattr__ that raises, a broken Mapping
        return _default_str(obj)


def _convert(obj: Any) -> Any:
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    if isinstance(obj, Decimal):
        if obj.is_finite():
            return int(obj) if obj == obj.to_integral_value() and abs(obj) < 2**63 else float(obj)
        return str(obj)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj).decode("utf-8", "replace")
    if isinstance(obj, Mapping):
        return dict(obj)
    if isinstance(obj, int):  # integers beyond 64 bits
        return str(obj)
    tolist = getattr(obj, "tolist", None)  # numpy arrays and scalars
    if callable(tolist):
        try:
            return tolist()
        except Exception:
            pass
    try:
        return str(obj)
    except Exception:
        return f"<unprintable {type(obj).__name__}>"


_OPTIONS: Final = orjson.OPT_NON_STR_KEYS


def _sanitize(obj: Any, depth: int = 0) -> Any:
    """Slow path: rebuild a value orjson refused (huge ints, deep nesting, bad keys)."""
    if depth > 64:
        return _clean_str(_default_str(obj))
    if isinstance(obj, str):
        return _clean_str(obj)
    if obj is None or isinstance(obj, (bool, float)):
        return obj
    if isinstance(obj, int):
        return obj if -(2**63) <= obj < 2**64 else str(obj)
    try:
        if isinstance(obj, Mapping):
            return {_key(k): _sanitize(v, depth + 1) for k, v in obj.items()}
        if isinstance(obj, (list, tuple, set, frozenset)):
            return [_sanitize(v, depth + 1) for v in obj]
    except Exception:  # a container that breaks while iterated
        return _clean_str(_default_str(obj))
    converted = _default(obj)
    if isinstance(converted, str):
        return _clean_str(converted)
    if converted is obj:
        return converted
    return _sanitize(converted, depth + 1)


_SURROGATES: Final = re.compile("[\ud800-\udfff]")


def _clean_str(text: str) -> str:
    """Replace lone surrogates (e.g. from surrogateescape; orjson refuses them)."""
    return _SURROGATES.sub("\ufffd", text)


def _default_str(obj: Any) -> str:
    try:
        return str(obj)
    except Exception:
        return f"<unprintable {type(obj).__name__}>"


def _key(key: Any) -> str:
    return _clean_str(key if isinstance(key, str) else _default_str(key))


def dumps(obj: Any) -> bytes:
    """Encode ``obj`` to JSON bytes, converting what JSON cannot hold; never raises.

    The result is a right-sized copy: orjson's own result keeps a buffer of at least
    4 KiB behind it whatever its length, and queued items would hold ~30x the memory
    their ``len()`` says (which the queue's byte bound counts).
    """
    try:
        out = orjson.dumps(obj, default=_default, option=_OPTIONS)
    except (orjson.JSONEncodeError, TypeError, ValueError, RecursionError):
        out = orjson.dumps(_sanitize(obj), default=_default_str, option=_OPTIONS)
    return right_sized(out)


def right_sized(out: bytes) -> bytes:
    """A copy of an orjson result that holds only its length (see :func:`dumps`)."""
    return b"".join((out, b"")) if len(out) < _RIGHT_SIZE else out


#: Results shorter than this are copied (see :func:`dumps`); longer ones waste little.
_RIGHT_SIZE: Final = 64 * 1024


# --------------------------------------------------------------------------- timestamps

#: The last result: (lo, hi, text, second, date-and-seconds prefix). Every time in
#: [lo, hi) formats to ``text``; the range is empty when nothing may be reused.
_ts_cache: tuple[float, float, str, int, str] = (0.0, 0.0, "", -1, "")

#: How far inside its millisecond a time must be for the cached text to be reused:
#: far more than a float's error and the rounding to the microsecond below 2**32 s.
_TS_EDGE: Final = 2e-6


def format_timestamp(when: float) -> str:
    """Format a POSIX time as ``2021-01-01T13:37:00.000Z`` (UTC, millisecond precision).

    Like :meth:`datetime.datetime.fromtimestamp`, the time is first rounded to the
    microsecond (``1.001`` is ``.001``, not ``.000``), then cut to the millisecond.
    The last result is cached with the range of times certain to give the same text
    (two comparisons for log calls within the same millisecond), and so is the
    date-and-seconds prefix.
    """
    cache = _ts_cache
    if cache[0] <= when < cache[1]:
        return cache[2]
    # As datetime.fromtimestamp does: the fraction's microseconds (half to even), then
    # a negative fraction borrows a second (when + 1 would round the fraction first).
    fraction, whole = math.modf(when)
    micros = round(fraction * 1_000_000)
    millis = int(whole) * 1000 + micros // 1000
    sec, ms = divmod(millis, 1000)
    prefix = cache[4] if cache[3] == sec else time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    text = f"{prefix}.{ms:03d}Z"
    lo = hi = 0.0
    if 0 <= when < 2**32:
        lo = millis / 1000 + _TS_EDGE
        hi = (millis + 1) / 1000 - _TS_EDGE
    globals()["_ts_cache"] = (lo, hi, text, sec, prefix)  # replaced whole: thread-safe
    return text


def _coerce_timestamp(value: Any) -> str:
    if isinstance(value, _dt.datetime):
        return format_timestamp(value.timestamp())
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format_timestamp(float(value))
    if isinstance(value, str):
        problem = _timestamp_problem(value)
        if problem:
            raise InvalidItemError([problem])
        return value
    raise InvalidItemError(
        [
            f"timestamp must be a datetime, a POSIX time or an ISO 8601 string, not "
            f"{type(value).__name__}"
        ]
    )


def normalize_id(value: Any) -> Any:
    """Return an id as it will be sent: UUIDs become strings, everything else is kept."""
    if type(value) is uuid.UUID:
        return str(value)
    return value


# --------------------------------------------------------------------------- items


class Item:
    """One tracking call, validated and encoded, ready for a bulk body.

    Build items with :meth:`user`, :meth:`company`, :meth:`event` and
    :meth:`feedback`; they raise :class:`~bucket_logging.InvalidItemError` for
    anything the API would reject, so a queued item is always valid.

    Attributes:
        kind: ``"user"``, ``"company"``, ``"event"`` or ``"feedback"``.
        body: the encoded JSON object of the bulk entry, including ``type``.
        dedupe_key: for user and company updates, a digest of the encoding without
            the timestamp; identical keys within the dedupe window are sent once.
    """

    __slots__ = ("body", "dedupe_key", "kind")

    def __init__(self, kind: str, body: bytes, dedupe_key: bytes | None = None) -> None:
        self.kind = kind
        self.body = body
        self.dedupe_key = dedupe_key

    def __repr__(self) -> str:
        return f"<Item {self.kind} {len(self.body)} bytes>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Item) and self.body == other.body

    def __hash__(self) -> int:
        return hash(self.body)

    def to_dict(self) -> dict[str, Any]:
        """Decode the item back to the JSON object that will be sent."""
        result: dict[str, Any] = orjson.loads(self.body)
        return result

    # -- builders -------------------------------------------------------------------

    @classmethod
    def user(
        cls,
        user_id: Any,
        attributes: Mapping[str, Any] | None = None,
        *,
        active: bool | None = None,
        timestamp: _dt.datetime | float | str | None = None,
    ) -> Item:
        """A ``user`` call: create or update the user ``user_id``."""
        wire: dict[str, Any] = {"type": "user", "userId": normalize_id(user_id)}
        _common(wire, attributes, active)
        return encode(wire, _ts(timestamp))

    @classmethod
    def company(
        cls,
        company_id: Any,
        attributes: Mapping[str, Any] | None = None,
        *,
        user_id: Any = None,
        active: bool | None = None,
        timestamp: _dt.datetime | float | str | None = None,
    ) -> Item:
        """A ``company`` call, associating ``user_id`` with the company when given."""
        wire: dict[str, Any] = {"type": "company", "companyId": normalize_id(company_id)}
        if user_id is not None:
            wire["userId"] = normalize_id(user_id)
        _common(wire, attributes, active)
        return encode(wire, _ts(timestamp))

    @classmethod
    def event(
        cls,
        event: str,
        user_id: Any,
        attributes: Mapping[str, Any] | None = None,
        *,
        company_id: Any = None,
        active: bool | None = None,
        timestamp: _dt.datetime | float | str | None = None,
    ) -> Item:
        """An ``event`` call: ``user_id`` did ``event``."""
        wire: dict[str, Any] = {"type": "event", "event": event, "userId": normalize_id(user_id)}
        if company_id is not None:
            wire["companyId"] = normalize_id(company_id)
        _common(wire, attributes, active)
        return encode(wire, _ts(timestamp))

    @classmethod
    def feedback(
        cls,
        user_id: Any,
        *,
        feature_id: Any = None,
        key: str | None = None,
        score: float | None = None,
        comment: str | None = None,
        company_id: Any = None,
        question: str | None = None,
        prompted_question: str | None = None,
        source: str | None = None,
        prompt_id: str | None = None,
        feedback_id: str | None = None,
        timestamp: _dt.datetime | float | str | None = None,
    ) -> Item:
        """A ``feedback`` call: needs ``feature_id`` or ``key``, and a score and/or comment."""
        wire: dict[str, Any] = {"type": "feedback", "userId": normalize_id(user_id)}
        for name, value in (
            ("featureId", normalize_id(feature_id)),
            ("key", key),
            ("companyId", normalize_id(company_id)),
            ("score", score),
            ("comment", comment),
            ("question", question),
            ("promptedQuestion", prompted_question),
            ("source", source),
            ("promptId", prompt_id),
            ("feedbackId", feedback_id),
        ):
            if value is not None:
                wire[name] = value
        return encode(wire, _ts(timestamp))


def _common(
    wire: dict[str, Any], attributes: Mapping[str, Any] | None, active: bool | None
) -> None:
    if attributes is not None:
        wire["attributes"] = attributes
    if active is not None:
        wire["context"] = {"active": active}


def _ts(timestamp: _dt.datetime | float | str | None) -> str:
    return format_timestamp(time.time()) if timestamp is None else _coerce_timestamp(timestamp)


_DEDUPE_KINDS: Final = frozenset({"user", "company"})


def encode(wire: dict[str, Any], timestamp: str | None) -> Item:
    """Validate a wire-format dict (without its timestamp) and encode it once.

    Raises :class:`~bucket_logging.InvalidItemError` when the API would reject it,
    including when it is too large to fit a request on its own.
    """
    kind = wire.get("type")
    if kind in _ALLOWED and wire.keys() <= _ALLOWED[kind]:
        problems: list[str] = []
        _value_problems(wire, kind, problems)
    else:
        problems = validate_wire(wire)
    if problems:
        raise InvalidItemError(problems, kind if isinstance(kind, str) else None)
    dedupe_key: bytes | None = None
    if kind in _DEDUPE_KINDS:
        # the dedupe key: a 16-byte digest of the encoding without the timestamp
        # (spliced in after), so the queue and the dedupe window hold no second copy
        body = dumps(wire)
        dedupe_key = hashlib.blake2b(body, digest_size=16).digest()
        if timestamp is not None:
            body = b"".join((body[:-1], b',"timestamp":"', timestamp.encode(), b'"}'))
    else:
        body = dumps(wire if timestamp is None else {**wire, "timestamp": timestamp})
    if len(body) > MAX_ITEM_BYTES:
        raise _too_large(len(body), str(kind))
    return Item(str(kind), body, dedupe_key)


def _too_large(size: int, kind: str) -> InvalidItemError:
    return InvalidItemError(
        [f"the item is {size:,} bytes encoded, over the {MAX_ITEM_BYTES:,}-byte limit"], kind
    )


def event_body(
    event: Any, user_id: Any, company_id: Any, attributes: Any, created: float
) -> bytes | None:
    """The hot path for the everyday event: its encoded bulk entry, or None to take :func:`encode`.

    Handles an event whose name is a non-empty ``str``, whose ids are non-empty
    strings or ints (``company_id`` may be None) and whose attributes are a ``dict``
    or None, stamped with ``created``, and whose keys are strings and values orjson
    encodes natively.
    Those satisfy every rule of :func:`validate_wire` for an event. Anything else
    returns None, so that :func:`encode` validates, converts and explains it: no
    application code (a ``__str__``) ever runs here. An event too large for a request
    raises :class:`~bucket_logging.InvalidItemError`.

    The result is orjson's own, not right-sized (see :func:`dumps`): it is meant to
    be copied into a sender's batch at once, not kept.
    """
    if type(event) is not str or not event:
        return None
    cls = type(user_id)
    if not ((cls is str and user_id) or cls is int):
        return None
    cache = _ts_cache
    timestamp = cache[2] if cache[0] <= created < cache[1] else format_timestamp(created)
    wire: dict[str, Any]
    if company_id is None:  # (one dict display per case: cheaper than inserting keys)
        if type(attributes) is dict:
            wire = {
                "type": "event",
                "event": event,
                "userId": user_id,
                "attributes": attributes,
                "timestamp": timestamp,
            }
        elif attributes is None:
            wire = {"type": "event", "event": event, "userId": user_id, "timestamp": timestamp}
        else:
            return None
    else:
        cls = type(company_id)
        if not ((cls is str and company_id) or cls is int):
            return None
        wire = {"type": "event", "event": event, "userId": user_id, "companyId": company_id}
        if attributes is not None:
            if type(attributes) is not dict:
                return None
            wire["attributes"] = attributes
        wire["timestamp"] = timestamp
    try:
        out = orjson.dumps(wire)  # (no options: a key that is not a str raises too)
    except TypeError:  # (orjson.JSONEncodeError is one) a value to convert first
        return None
    if len(out) > MAX_ITEM_BYTES:
        raise _too_large(len(out), "event")
    return out


def kind_of(body: bytes) -> str:
    """The ``type`` of an encoded bulk entry, for messages (``"item"`` when it has none)."""
    if body.startswith(b'{"type":"'):  # how every entry encoded here begins
        end = body.find(b'"', 9)
        if end > 9:
            return body[9:end].decode("utf-8", "replace")
    try:
        kind = orjson.loads(body).get("type")
    except (orjson.JSONDecodeError, AttributeError):
        return "item"
    return kind if isinstance(kind, str) else "item"


def bulk_body(bodies: Iterable[bytes]) -> bytes:
    """Join encoded items into one bulk request body (a JSON array)."""
    return b"[" + b",".join(bodies) + b"]"
