"""Encoding: the JSON bytes of any value a log call carries, never raising.

:func:`dumps` handles what applications log (sets, decimals, dates, objects, lone
surrogates, non-string keys, deep nesting). Validation lives apart, in
:mod:`bucket_logging._validation`; items are built from both in
:mod:`bucket_logging._items`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final

import orjson

__all__ = ["dumps", "right_sized"]


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
