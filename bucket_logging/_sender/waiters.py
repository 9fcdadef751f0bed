"""What flushes and the close wait for: futures answered on the sender's thread.

A flush waits for a ledger :class:`~bucket_logging._sender.ledger.Mark` (every item
queued before it finished); the close, once its own items are finished, may wait for
the spool's backlog (an earlier sender's batches) too. :class:`Waiters` keeps both
kinds for one :class:`~bucket_logging._sender.engine.SenderLoop` and answers them; the
loop tells it when to look.

May import: :mod:`.ledger`.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import time
from typing import Final

from .ledger import Ledger, Mark

__all__ = ["BACKLOG_MARGIN", "Waiters"]

#: At the close, no batch of the backlog is claimed with less time than this left (one
#: cut by the deadline may have reached the server: the next sender sends it again).
BACKLOG_MARGIN: Final = 1.0

_Future = concurrent.futures.Future


def _answer(future: _Future[bool], result: bool) -> None:
    if not future.done():
        with contextlib.suppress(concurrent.futures.InvalidStateError):
            future.set_result(result)  # unless cancelled meanwhile


class Waiters:
    """The flushes and the close waiting on one sender's loop.

    Args:
        ledger: where the flushes' marks are read.
    """

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._flushes: list[tuple[Mark, _Future[bool]]] = []
        self._backlog: list[_Future[bool]] = []

    def add_flush(self, mark: Mark, future: _Future[bool]) -> None:
        """A flush waits until ``mark`` is reached."""
        self._flushes.append((mark, future))

    def __bool__(self) -> bool:
        """Whether a flush waits (answered or not)."""
        return bool(self._flushes)

    def flush_waiting(self) -> bool:
        """Whether a flush waits that is not answered yet."""
        return any(not f.done() for _, f in self._flushes)

    def check(self, *, backlog_hopeless: bool = False) -> None:
        """Answer the flushes whose items are all finished; with ``backlog_hopeless``
        (no usable spool, the endpoint failing), the close's wait for the backlog too."""
        if backlog_hopeless:
            self.backlog_done()
        if not self._flushes:
            return
        keep = []
        for mark, future in self._flushes:
            if self._ledger.reached(mark):
                _answer(future, True)
            elif not future.done():
                keep.append((mark, future))
        self._flushes = keep

    def add_backlog(self, future: _Future[bool]) -> None:
        """The close waits for the spool's backlog."""
        self._backlog.append(future)

    def claims_backlog(self, closing: float | None) -> bool:
        """Whether the loop claims a batch of the spool's backlog now: the close waits for
        it, and a request has time to finish before its deadline (``closing``)."""
        return (
            bool(self._backlog)
            and closing is not None
            and closing - time.monotonic() > BACKLOG_MARGIN
        )

    def backlog_done(self) -> None:
        """Nothing more of the backlog can be claimed now: answer the close."""
        for future in self._backlog:
            _answer(future, True)
        self._backlog = []

    def stopped(self) -> None:
        """The loop stops: the flushes reached are answered True, the others False (never
        left waiting on a stopped sender), the close's wait for the backlog True."""
        self.check()
        for _, future in self._flushes:
            _answer(future, False)
        self._flushes = []
        self.backlog_done()
