"""One delivery of a spooled batch: its row's marks while it is posted, then its outcome.

A :class:`Settlement` wraps the request of one batch (:meth:`Settlement.post`) so that
its row says whether a request may have reached the server, and settles the
delivery's :class:`~bucket_logging._sender.delivery.Outcome` (:meth:`Settlement.settle`):
the row is deleted, or what was given up stays in it for a later sender.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import httpx

from .._spool.store import SPOOL_ERRORS
from .ledger import Ticket

if TYPE_CHECKING:
    from .delivery import Outcome, Post
    from .spooling import Spool

__all__ = ["Chunk", "Settlement"]


class Chunk:
    """One batch of the spool as this sender tracks it."""

    __slots__ = (
        "accepted",
        "ambiguous",
        "count",
        "items",
        "kept",
        "marked",
        "posting",
        "row",
        "size",
        "ticket",
    )

    def __init__(self, ticket: Ticket, count: int, row: int | None = None, size: int = 0) -> None:
        self.ticket = ticket  # in flight in the ledger until it is finished
        self.count = count
        self.size = size  # encoded bytes
        self.row = row  # None: not in the spool (no room): memory only
        self.items: list[bytes] | None = None  # held in memory only until it is sent
        self.kept: list[bytes] = []  # items given up on: they stay in the spool
        self.ambiguous = False  # a request for it ended without an answer
        self.accepted = False  # a request for (part of) it was answered 2xx
        self.posting = False  # a request for it is on the wire
        self.marked = False  # its row says attempted = 1


class Settlement:
    """The spool's side of one delivery of ``chunk``: ``post`` (delivery's) wrapped."""

    def __init__(self, spool: Spool, chunk: Chunk, post: Post) -> None:
        self.spool = spool
        self.chunk = chunk
        self._post = post

    async def post(self, body: bytes, url: str | None = None) -> httpx.Response:
        """The request for a spooled batch, tracking whether it may have reached the server.

        A batch's row says ``attempted = 1`` while a request for it is on the wire or
        may have been accepted; after a clear failure (refused connection, an error
        answer) it says 0 again. A replay of a row that says 1 is counted as a
        possible duplicate (``redelivered``).
        """
        post = self._post
        if self.chunk.row is None or self.spool.failed:
            return await post(body, url)
        if not self.chunk.marked and await self._mark(True):
            self.chunk.marked = True
        self.chunk.posting = True
        try:
            response = await post(body, url)
        except asyncio.CancelledError:
            raise  # still posting: the outcome is unknown
        except Exception as exc:
            self.chunk.posting = False
            if getattr(exc, "ambiguous", False):
                self.chunk.ambiguous = True
            elif (
                self.chunk.marked
                and not (self.chunk.ambiguous or self.chunk.accepted)
                and await self._mark(False)
            ):
                self.chunk.marked = False
            raise
        self.chunk.posting = False
        if 200 <= response.status_code < 300:
            self.chunk.accepted = True
        return response

    async def _mark(self, attempted: bool) -> bool:
        try:
            await self.spool.call(self.spool.store.mark, self.chunk.row, attempted)
        except SPOOL_ERRORS as exc:
            self.spool.fail(exc)
            return False
        return True

    async def settle(self, outcome: Outcome) -> None:
        """After a delivery: keep what was given up in the spool, delete or release the row."""
        for gave_up in outcome.given_up:
            if self.spool.failed:
                count = len(gave_up.entries)
                self.spool.drop(gave_up.reason, count, gave_up.status, gave_up.detail)
                continue
            self.chunk.kept.extend(gave_up.entries)
            self.spool.keep(gave_up.entries, gave_up.reason, gave_up.status, gave_up.detail)
        if self.chunk.row is None or self.spool.failed:
            return
        try:
            if not self.chunk.kept:
                await self.spool.call(self.spool.store.delete, self.chunk.row)
            else:
                rest = self.chunk.kept if len(self.chunk.kept) < self.chunk.count else None
                await self.spool.call(
                    self.spool.store.release, self.chunk.row, self.chunk.ambiguous, rest
                )
        except SPOOL_ERRORS as exc:
            self.spool.fail(exc)
