"""A server's answer, read within bounds: a diagnostic's worth of its body, in a deadline.

The sender and ``bucket-logging check`` read only what a report needs of an answer's
body (:data:`MAX_ANSWER_BYTES`, decompressed within the same bound), streamed, so that
a hostile or broken server answering 300 MB costs 64 KiB; the rest is never read (the
connection is closed). The whole request, answer included, has one deadline: a body
dripped a byte a second is cut at the deadline, where httpx's own timeouts (each one
a wait for the next bytes) would never fire.
"""

from __future__ import annotations

import asyncio
import zlib
from typing import Final

import httpx

__all__ = ["MAX_ANSWER_BYTES", "post_bounded"]

#: The most of an answer's body read (and kept), decompressed.
MAX_ANSWER_BYTES: Final = 64 * 1024

#: Headers of the answer that no longer describe the body kept.
_DROPPED_HEADERS: Final = frozenset({b"content-encoding", b"content-length", b"transfer-encoding"})


async def post_bounded(
    client: httpx.AsyncClient,
    url: str,
    content: bytes,
    *,
    timeout: float,
    headers: dict[str, str] | None = None,
    limit: int = MAX_ANSWER_BYTES,
) -> httpx.Response:
    """POST ``content``; the answer with at most ``limit`` bytes of its body.

    Raises :class:`httpx.ReadTimeout` when the request and its answer's head and
    body (what is read of it) took more than ``timeout`` seconds in all, and any
    other ``httpx.HTTPError`` as httpx does.
    """
    request = client.build_request("POST", url, content=content, headers=headers)
    try:
        return await asyncio.wait_for(_exchange(client, request, limit), timeout)
    except asyncio.TimeoutError:
        raise httpx.ReadTimeout(
            f"no whole answer within {timeout:g}s (the request's deadline)", request=request
        ) from None


async def _exchange(
    client: httpx.AsyncClient, request: httpx.Request, limit: int
) -> httpx.Response:
    response = await client.send(request, stream=True)
    encoding = response.headers.get("content-encoding", "").strip().lower()
    try:
        raw = bytearray()
        if response.is_stream_consumed:  # (an answer made in memory: a mock's)
            raw += response.content[:limit]
            encoding = ""
        else:
            async for chunk in response.aiter_raw():
                raw += chunk[: limit - len(raw)]
                if len(raw) >= limit:
                    break
    finally:
        await response.aclose()  # the rest is never read: the connection is closed
    return httpx.Response(
        response.status_code,
        headers=[(k, v) for k, v in response.headers.raw if k.lower() not in _DROPPED_HEADERS],
        content=_decoded(bytes(raw), encoding, limit),
        request=request,
        extensions=response.extensions,
    )


def _decoded(raw: bytes, encoding: str, limit: int) -> bytes:
    """``raw`` decompressed to at most ``limit`` bytes (gzip, deflate), else as it is;
    an encoding not read here gives nothing (a report has no use for its bytes)."""
    if encoding in ("", "identity"):
        return raw
    if encoding not in ("gzip", "x-gzip", "deflate"):
        return b""
    try:
        # 47: gzip or zlib headers; a bare deflate stream is tried as raw (-15)
        return zlib.decompressobj(47).decompress(raw, limit)
    except zlib.error:
        try:
            return zlib.decompressobj(-15).decompress(raw, limit)
        except zlib.error:
            return b""
