"""Request bodies of log pipelines: gzip within a limit, then JSON objects.

Vector, Fluent Bit and Logstash post batches of events as a JSON array, as
newline-delimited JSON, or (one event per request) as one JSON object, optionally
gzip-compressed. :func:`gunzip` decompresses as a stream that stops at a limit (a
gzip bomb costs at most that much memory); :func:`parse_body` finds the objects.
"""

from __future__ import annotations

import zlib
from typing import Any, Final

import orjson

__all__ = [
    "MAX_GZIP_MEMBERS",
    "Refused",
    "gunzip",
    "parse_body",
    "too_many_values",
    "value_bound",
]


class Refused(Exception):
    """A request the relay answers with ``status`` (and ``headers``) instead of 200."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


#: Gzip members a body may hold (real clients send one; each costs a decompressor).
MAX_GZIP_MEMBERS: Final = 64

#: How much compressed input is handed to the decompressor at a time: what is left
#: over after a member (``unused_data``) is at most this, never the rest of the body.
_GZIP_STEP: Final = 64 * 1024


def gunzip(
    body: bytes, limit: int, max_members: int = MAX_GZIP_MEMBERS, max_values: int | None = None
) -> bytes:
    """Decompress gzip ``body`` (members back to back) to at most ``limit`` bytes.

    The body is walked by offset, a bounded step at a time, so that many tiny members
    cost linear time; more than ``max_members`` members are refused (400). With
    ``max_values``, the JSON values the text may hold (:func:`value_bound`) are
    counted as it is decompressed, and a text that can hold more is refused (413)
    as soon as it passes the limit.
    """
    values = 1
    view = memoryview(body)
    out = bytearray()
    offset = 0
    members = 0

    def inflate(stream: Any, data: bytes | memoryview) -> bytes:
        nonlocal values
        try:
            chunk: bytes = stream.decompress(data, min(limit - len(out) + 1, _GZIP_STEP))
        except zlib.error as exc:
            raise Refused(400, f"the body is not valid gzip ({exc})") from None
        out.extend(chunk)
        if len(out) > limit:
            raise Refused(413, f"the body is over {limit:,} bytes once decompressed")
        if max_values is not None:
            values += _structure(chunk)
            if values > max_values:
                raise too_many_values(max_values)
        return chunk

    while offset < len(body):
        members += 1
        if members > max_members:
            raise Refused(400, f"the gzip body has more than {max_members} members")
        stream = zlib.decompressobj(16 + zlib.MAX_WBITS)
        while not stream.eof:
            step = view[offset : offset + _GZIP_STEP]
            if not step:  # the input is all in: what zlib still holds, then the end
                while not stream.eof and inflate(stream, b""):
                    pass
                if not stream.eof:
                    raise Refused(400, "the gzip body is truncated")
                break
            offset += len(step)
            data: bytes | memoryview = step
            while data:  # at most _GZIP_STEP of output at a time: a bomb stops early
                inflate(stream, data)
                if stream.eof:
                    offset -= len(stream.unused_data)
                    break
                data = stream.unconsumed_tail
    return bytes(out)


def too_many_values(limit: int) -> Refused:
    """The 413 of a body that may hold more JSON values than ``limit``."""
    return Refused(
        413,
        f"the body may hold more than {limit:,} JSON values (--max-objects): send smaller batches",
    )


def _structure(text: bytes) -> int:
    return (
        text.count(b",")
        + text.count(b":")
        + text.count(b"{")
        + text.count(b"[")
        + text.count(b"\n")
    )


def value_bound(text: bytes) -> int:
    """At most how many Python objects parsing the JSON (or NDJSON) ``text`` builds.

    Every value but the first of a container follows a comma, every key a colon, and
    every document starts a line: values and keys are at most commas + colons +
    containers + lines (strings holding such characters only raise the count). Counted
    at memory speed, before anything is built.
    """
    return _structure(text) + 1


def parse_body(body: bytes) -> tuple[list[dict[str, Any]], int]:
    """The JSON objects of a body, and how many of its entries were not objects.

    A JSON array (of objects), newline-delimited JSON, or one object. Raises
    :class:`Refused` (400) for a body that is not JSON at all.
    """
    text = body.strip()
    if not text:
        raise Refused(400, "the body is empty")
    loads = orjson.loads
    try:
        data = loads(text)
    except orjson.JSONDecodeError:
        data = None
        if text[:1] != b"{":
            raise Refused(400, "the body is not JSON") from None
    if isinstance(data, list):
        objects = [o for o in data if type(o) is dict]
        return objects, len(data) - len(objects)
    if isinstance(data, dict):
        return [data], 0
    if data is not None:
        raise Refused(400, "the body is a JSON value, not an object or an array")
    objects, bad = [], 0
    for line in text.split(b"\n"):
        if not line.strip():
            continue
        try:
            obj = loads(line)
        except orjson.JSONDecodeError:
            bad += 1
            continue
        if type(obj) is dict:
            objects.append(obj)
        else:
            bad += 1
    if not objects:
        raise Refused(400, "the body is not JSON")
    return objects, bad
