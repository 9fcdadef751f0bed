"""One delivery of a spooled batch: its row's marks while it is posted, then its outcome.

A :class:`Settlement` wraps the request of one batch (:meth:`Settlement.post`) so that
its row says whether a request may have reached the server, and settles the
delivery's :class:`~bucket_logging._sender.delivery.Outcome` (:meth:`Settlement.settle`):
the row is deleted, or what was given up stays in it for a later sender.

A :class:`FirstAttempt` is the delivery of a batch sent before it is stored: the
journal holds its items meanwhile (a killed process's are recovered from it), and
the batch is stored only if need be (a failed request, a later batch stored or
answered first, the exit).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import httpx

from .._spool.store import SPOOL_ERRORS
from .ledger import Ticket

if TYPE_CHECKING:
    from .delivery import Outcome, Post
    from .queue import Batch
    from .spooling import Spool

__all__ = ["Chunk", "FirstAttempt", "Settlement"]


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


class FirstAttempt(Settlement):
    """The delivery of a batch sent before it is stored, when the spool is idle.

    Storing every batch before its first request cost the spool a SQLite write and
    delete per batch, and a copy of every item, while the journal already keeps each
    item safe from a kill. So the engine sends the batch at once, with its journal
    mark held (:meth:`~bucket_logging._sender.journaling.JournalSide.hold`: the
    checkpoint waits for it). The batch is stored (:meth:`store`) when a request for
    it fails, before a later batch is stored or settles as delivered, and at the
    close if its delivery was cut short; it is then a spooled batch like any other.
    Delivered, it only settles its mark, once every earlier held batch is settled
    (stored if need be): a kill then sends again at most the batches on the wire.

    Args:
        spool: the sender's spool.
        batch: the batch (from the queue).
        ticket: its ticket in the ledger.
        post: the delivery's ``post``.
    """

    def __init__(self, spool: Spool, batch: Batch, ticket: Ticket, post: Post) -> None:
        super().__init__(spool, Chunk(ticket, len(batch), size=batch.entry_bytes()), post)
        self.batch = batch
        self.mark = batch.mark
        self.settled = False  # its journal mark settled
        # the one task that settles it: its store, or (delivered) the wait for the
        # earlier held batches; whoever needs it settled awaits this task
        self._settling: asyncio.Future[None] | None = None
        spool.journal.hold(self.mark, self.store)

    @property
    def stored(self) -> bool:
        """Whether it is stored or being stored (or settled otherwise)."""
        return self._settling is not None or self.settled

    def finished(self) -> None:
        """The delivery ended without :meth:`settle` (an unexpected error: its items
        were dropped): the mark settles, unless the batch is stored or being stored."""
        if not self.stored:
            self._settle()

    def _settle(self) -> None:
        if not self.settled:
            self.settled = True
            self.spool.journal.settle(self.mark)

    async def _until_settled(self, work: Callable[[], Awaitable[None]]) -> None:
        """Start ``work`` as the task that settles this batch, unless one runs (or it
        is settled); await that task. It runs to its end even if the caller is
        cancelled (the close awaits it)."""
        if self._settling is None:
            if self.settled:
                return
            self._settling = asyncio.ensure_future(work())
        await asyncio.shield(self._settling)

    async def post(self, body: bytes, url: str | None = None) -> httpx.Response:
        """A request for the batch: stored when it fails (before the retry)."""
        if self._settling is not None:
            await asyncio.shield(self._settling)  # its row first: marked before the request
        if self.stored:
            return await super().post(body, url)
        chunk = self.chunk
        if not chunk.posting:
            self.spool.journal.attempt(self.mark)  # a recovery counts it as redelivered
        chunk.posting = True
        try:
            response = await self._post(body, url)
        except asyncio.CancelledError:
            chunk.ambiguous = True  # it may have arrived
            raise
        except Exception as exc:
            chunk.posting = False
            chunk.ambiguous = chunk.ambiguous or bool(getattr(exc, "ambiguous", False))
            await self.store()
            raise
        chunk.posting = False
        if 200 <= response.status_code < 300:
            chunk.accepted = True
        else:
            await self.store()
        return response

    async def store(self) -> None:
        """Store the batch in the spool, once; it is then delivered as a stored batch.
        A batch whose delivery ended meanwhile is not stored: this waits until it is
        settled."""
        await self._until_settled(self._store)

    async def _store(self) -> None:
        spool, chunk = self.spool, self.chunk
        await spool.journal.store_held(before=self.mark)  # earlier ones first: in order
        if spool.failed:
            self._settle()  # delivered from memory from now on
            return
        attempted = chunk.ambiguous or chunk.posting or chunk.accepted
        try:
            row = await spool.journal.store_batch(
                spool.call, self.batch.entries(), attempted, self.mark, spool.in_flight
            )
            self.settled = True  # (store_batch settled the mark)
        except Exception as exc:  # (a spool error, or anything else: the spool is given up)
            spool.fail(exc)
            row = None
            self._settle()
        if row is not None:  # (no room: delivered from memory, as without a spool)
            chunk.row = row
            chunk.marked = attempted
            spool.sending(chunk)
        if spool.wake is not None:
            spool.wake()  # the batches the queue kept meanwhile may be stored now

    async def _delivered(self) -> None:
        await self.spool.journal.store_held(before=self.mark)  # earlier ones first
        self._settle()

    async def settle(self, outcome: Outcome) -> None:
        """After the delivery: what was given up is stored (and kept); the mark settles,
        once every earlier held batch is settled."""
        if outcome.given_up and not self.spool.failed:
            await self.store()
        else:  # delivered (or given up with a failed spool: dropped); unless being stored
            await self._until_settled(self._delivered)
        if self.chunk.row is None and not self.spool.failed:  # no room: as from memory
            for gave_up in outcome.given_up:
                count = len(gave_up.entries)
                self.spool.drop(gave_up.reason, count, gave_up.status, gave_up.detail)
            return
        await super().settle(outcome)
