"""Tracking items: validated against the API's rules and encoded to JSON once.

Every item is validated with :func:`~bucket_logging._items.validation.validate_wire` (the
API's rules, shared with the local tracking server) and encoded once with
:func:`~bucket_logging._items.encoding.dumps`; this module builds items from both, and
renders the wire's timestamps.

An :class:`Item` holds the already-encoded JSON object of one bulk entry
(``{"type": "event", ...}``); bulk bodies are assembled from these bytes without
encoding anything again.
"""

from __future__ import annotations

import datetime as _dt
import gc
import hashlib
import math
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, Final

import orjson

from .._exceptions import InvalidItemError
from .encoding import dumps, encoded_floor, right_sized
from .validation import (
    ALLOWED,
    KINDS,
    MAX_BODY_BYTES,
    MAX_ID_CHARS,
    MAX_ITEM_BYTES,
    timestamp_problem,
    validate_wire,
    value_problems,
)

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

# --------------------------------------------------------------------------- timestamps

#: The last result: (lo, hi, text, second, date-and-seconds prefix). Every time in
#: [lo, hi) formats to ``text``; the range is empty when nothing may be reused.
_ts_cache: tuple[float, float, str, int, str] = (0.0, 0.0, "", -(2**62), "")

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
    try:
        fraction, whole = math.modf(when)
        micros = round(fraction * 1_000_000)
        millis = int(whole) * 1000 + micros // 1000
    except (ValueError, OverflowError):  # NaN, infinite
        raise InvalidItemError([_unwritable(when)]) from None
    sec, ms = divmod(millis, 1000)
    if cache[3] == sec:  # (a cached second is one that can be written)
        prefix = cache[4]
    else:
        if not _FIRST_SECOND <= sec <= _LAST_SECOND:
            raise InvalidItemError([_unwritable(when)])
        t = time.gmtime(sec)
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", t)
        if t.tm_year < 1000:  # (strftime's %Y does not pad them everywhere)
            prefix = f"{t.tm_year:04d}{prefix[prefix.index('-') :]}"
    text = f"{prefix}.{ms:03d}Z"
    lo = hi = 0.0
    if 0 <= when < 2**32:
        lo = millis / 1000 + _TS_EDGE
        hi = (millis + 1) / 1000 - _TS_EDGE
    globals()["_ts_cache"] = (lo, hi, text, sec, prefix)  # replaced whole: thread-safe
    return text


#: The first and last whole seconds ISO 8601 writes with a four-digit year, in UTC:
#: 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z.
_FIRST_SECOND: Final = -62_135_596_800
_LAST_SECOND: Final = 253_402_300_799


def _unwritable(when: float) -> str:
    return (
        f"timestamp {when!r:.40} (POSIX seconds) is outside the years 1-9999 in UTC: "
        "ISO 8601 cannot write it"
    )


def _coerce_timestamp(value: Any) -> str:
    if isinstance(value, _dt.datetime):
        try:
            when = value.timestamp()
        except (OverflowError, ValueError):  # (a naive year 1 or 9999 in a local zone)
            when = math.nan
        if not _FIRST_SECOND <= when < _LAST_SECOND + 1:
            raise InvalidItemError(
                [
                    f"timestamp {value.isoformat()} is outside the years "
                    "1-9999 in UTC: ISO 8601 cannot write it"
                ]
            )
        return format_timestamp(when)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format_timestamp(float(value))
    if isinstance(value, str):
        problem = timestamp_problem(value)
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
            ("comment", None if comment == "" and score is not None else comment),
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
    if kind in ALLOWED and wire.keys() <= ALLOWED[kind]:
        problems: list[str] = []
        value_problems(wire, kind, problems)
    else:
        problems = validate_wire(wire)
    if problems:
        raise InvalidItemError(problems, kind if isinstance(kind, str) else None)
    attributes = wire.get("attributes")
    if attributes is not None and _is_tracked(attributes):
        _check_floor(attributes, str(kind))
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


#: Whether the garbage collector tracks an object: a ``dict`` whose values are all
#: atoms (str, int, float, bool, None) is not tracked, one holding a list, a dict or
#: an object is. One C call (~7 ns): the everyday event's flat attributes skip the walk.
#: (A tuple of atoms is not tracked either once the collector has seen it: a structure
#: made only of tuples that survived many collections, nested in a flat dict, is not
#: walked; a value with any list, dict or object in it is.)
_is_tracked: Final = gc.is_tracked


def _check_floor(attributes: Any, kind: str, plain: bool = False) -> bool:
    """Refuse attributes whose encoding would pass the item limit, before encoding them.

    A value with shared references (``a = [x, x]; b = [a, a]; ...``) encodes to
    2**levels leaves: the encoder would spend seconds and gigabytes on the logging
    thread before the size could be checked. :func:`encoded_floor` walks each
    container once and stops at the limit. With ``plain`` (the everyday encoder: no
    application code runs), False when the attributes hold a value that is not plain.
    """
    floor = encoded_floor(attributes, MAX_ITEM_BYTES, plain)
    if floor > MAX_ITEM_BYTES:
        raise InvalidItemError(
            [
                f"the attributes encode to more than {floor:,} bytes, over the "
                f"{MAX_ITEM_BYTES:,}-byte limit (encoding was stopped there)"
            ],
            kind,
        )
    return floor >= 0


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
    if not ((cls is str and 0 < len(user_id) <= MAX_ID_CHARS) or cls is int):
        return None
    cache = _ts_cache
    timestamp = cache[2] if cache[0] <= created < cache[1] else format_timestamp(created)
    wire: dict[str, Any]
    if company_id is None:  # (one dict display per case: cheaper than inserting keys)
        if type(attributes) is dict:
            if _is_tracked(attributes) and not _check_floor(attributes, "event", True):
                return None  # it holds containers: bounded first, plain ones only
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
        if not ((cls is str and 0 < len(company_id) <= MAX_ID_CHARS) or cls is int):
            return None
        wire = {"type": "event", "event": event, "userId": user_id, "companyId": company_id}
        if attributes is not None:
            if type(attributes) is not dict:
                return None
            if _is_tracked(attributes) and not _check_floor(attributes, "event", True):
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
