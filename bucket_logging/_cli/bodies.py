"""Request bodies of log pipelines: gzip within a limit, then JSON objects.

Vector, Fluent Bit and Logstash post batches of events as a JSON array, as
newline-delimited JSON, or (one event per request) as one JSON object, optionally
gzip-compressed. :func:`gunzip` decompresses as a stream that stops at a limit (a
gzip bomb costs at most that much memory); :func:`parse_body` finds the objects.
"""

from __future__ import annotations

import zlib
from typing import Any

import orjson

__all__ = ["Refused", "gunzip", "parse_body"]


class Refused(Exception):
    """A request the relay answers with ``status`` (and ``headers``) instead of 200."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def gunzip(body: bytes, limit: int) -> bytes:
    """Decompress gzip ``body`` (members back to back) to at most ``limit`` bytes."""
    out: list[bytes] = []
    size = 0
    data = body
    while data:
        stream = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            chunk = stream.decompress(data, limit - size + 1)
        except zlib.error as exc:
            raise Refused(400, f"the body is not valid gzip ({exc})") from None
        size += len(chunk)
        if size > limit or stream.unconsumed_tail:
            raise Refused(413, f"the body is over {limit:,} bytes once decompressed")
        out.append(chunk)
        if not stream.eof:
            raise Refused(400, "the gzip body is truncated")
        data = stream.unused_data
    return b"".join(out)


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
