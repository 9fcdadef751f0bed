"""Encoding: the JSON bytes of any value a log call carries, never raising.

:func:`dumps` handles what applications log (sets, decimals, dates, objects, lone
surrogates, non-string keys, deep nesting). Validation lives apart, in
:mod:`bucket_logging._items.validation`; items are built from both in
:mod:`bucket_logging._items.item`.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final

import orjson

__all__ = ["dumps", "encoded_floor", "right_sized"]


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


#: What a container that contains itself becomes where it is met again (see _sanitize).
_CYCLE: Final = "<cycle>"


def _sanitize(obj: Any, depth: int = 0, path: frozenset[int] = frozenset()) -> Any:
    """Slow path: rebuild a value orjson refused (huge ints, deep nesting, bad keys).

    ``path`` holds the ids of the containers above: one met again is a reference
    cycle, cut there (following it down to the depth limit could take 2**64 steps).
    """
    if depth > 64:
        return _clean_str(_default_str(obj))
    if isinstance(obj, str):
        return _clean_str(obj)
    if obj is None or isinstance(obj, (bool, float)):
        return obj
    if isinstance(obj, int):
        return obj if -(2**63) <= obj < 2**64 else str(obj)
    try:
        if isinstance(obj, (Mapping, list, tuple, set, frozenset)):
            if id(obj) in path:
                return _CYCLE
            inner = path | {id(obj)}
            if isinstance(obj, Mapping):
                return {_key(k): _sanitize(v, depth + 1, inner) for k, v in obj.items()}
            return [_sanitize(v, depth + 1, inner) for v in obj]
    except Exception:  # a container that breaks while iterated
        return _clean_str(_default_str(obj))
    converted = _default(obj)
    if isinstance(converted, str):
        return _clean_str(converted)
    if converted is obj:
        return converted
    return _sanitize(converted, depth + 1, path)


class _Over(Exception):
    """Raised inside :func:`encoded_floor`'s walk once its bound passed the limit."""

    def __init__(self, floor: int) -> None:
        self.floor = floor


class _Foreign(Exception):
    """Raised inside a plain :func:`encoded_floor` walk at a value that is not plain."""


_ATOMS: Final = frozenset({int, float, bool, type(None)})

#: How deep :func:`encoded_floor` walks; deeper parts count as one byte (the
#: encoding cuts nesting far above this: orjson at 255 levels, _sanitize at 64).
_MAX_WALK_DEPTH: Final = 300


def encoded_floor(obj: Any, limit: int, plain: bool = False) -> int:
    """A lower bound of the length of ``obj``'s JSON encoding, found without encoding it.

    Each container is walked once (its bound remembered by ``id``), but counted as
    often as it is referenced, the way the encoding repeats it: a value built like
    ``a = [x, x]; b = [a, a]; ...`` (27 levels, 2**27 leaves) is walked in 27 steps.
    The walk stops as soon as the bound passes ``limit`` and returns it. A reference
    cycle counts as the marker :func:`dumps` writes in its place. Never raises.

    With ``plain``, only dicts, lists, tuples, strings and numbers are walked (no
    application code runs, not even a ``Mapping``'s): anything else returns -1.
    """
    walk = _FloorWalk(limit, plain)
    try:
        return walk.size(obj, 0)
    except _Over as over:
        return over.floor
    except _Foreign:
        return -1
    except Exception:  # a container broken while iterated: the encoding converts it
        return 0


class _FloorWalk:
    __slots__ = ("keep", "limit", "memo", "path", "plain")

    def __init__(self, limit: int, plain: bool) -> None:
        self.limit = limit
        self.plain = plain
        self.memo: dict[int, int] = {}
        self.path: set[int] = set()
        self.keep: list[Any] = []  # what the memo's ids name stays alive (ids stay unique)

    def size(self, obj: Any, depth: int) -> int:
        cls = type(obj)
        if cls is str:
            return len(obj) + 2
        if cls in _ATOMS:
            return 1
        key = id(obj)
        known = self.memo.get(key)
        if known is not None:
            return known
        if key in self.path:
            return len(_CYCLE) + 2
        if depth > _MAX_WALK_DEPTH:
            return 1
        if cls is dict:
            parts: Any = (p for pair in obj.items() for p in pair)
        elif cls is list or cls is tuple:
            parts = obj
        elif self.plain:
            raise _Foreign
        elif isinstance(obj, Mapping):
            parts = (p for pair in obj.items() for p in pair)
        elif isinstance(obj, (list, tuple, set, frozenset)):
            parts = obj
        elif isinstance(obj, (bytes, bytearray)):
            return len(obj) + 2
        elif isinstance(obj, enum.Enum):
            parts = (obj.value,)
        elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            parts = (getattr(obj, f.name, None) for f in dataclasses.fields(obj))
        else:
            return 1  # converted to its own text: as long as the object makes it
        self.path.add(key)
        total = 1  # the opening bracket, then each part and what follows it (, : or end)
        limit = self.limit
        for part in parts:
            total += self.size(part, depth + 1) + 1
            if total > limit:
                raise _Over(total)
        total = max(total, 2)
        self.path.discard(key)
        self.memo[key] = total
        self.keep.append(obj)
        return total


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
