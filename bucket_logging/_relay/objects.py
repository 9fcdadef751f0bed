"""The relay's ``--max-objects``: one pool of parsed values shared by the requests in
progress, each charged for what it holds.

A JSON body is parsed at once (orjson), so it reserves what it can hold before it is
parsed (:meth:`Pool.reserve`, counted by
:func:`~bucket_logging._relay.bodies.value_bound`: proportional to the body). A protobuf
body is read a record at a time, so it is charged **as it is read**
(:meth:`Pool.charging`: the decoder's budget charges a block of values at a time), never
for what it could hold: a large body of empty messages, which holds nothing, no longer
takes the whole pool from every other client while it is walked (and is cut off by its
own budget of fields).

May import: the relay's bodies (its refusals), the OTLP budget's refusal.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

from .._frontends.otlp_wire import OtlpBusy
from .bodies import Refused, too_many_values, value_bound

__all__ = ["Pool", "otlp_budget"]


class Pool:
    """``limit`` values shared by the requests in progress (a 503 when they are spent)."""

    def __init__(self, limit: int, retry_headers: dict[str, str]) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()
        self._retry = retry_headers

    def _take(self, count: int) -> bool:
        with self._lock:
            room = self.used + count <= self.limit
            if room:
                self.used += count
        return room

    def _give_back(self, count: int) -> None:
        with self._lock:
            self.used -= count

    @contextlib.contextmanager
    def reserve(self, count: int) -> Iterator[None]:
        """Hold ``count`` values for the block: 413 when more than the pool, 503 when
        they are not free now."""
        if count > self.limit:
            raise too_many_values(self.limit)
        if not self._take(count):
            raise Refused(503, "too many JSON values in progress", self._retry)
        try:
            yield
        finally:
            self._give_back(count)

    @contextlib.contextmanager
    def charging(self) -> Iterator[Callable[[int], None]]:
        """A charge for the block (called with each count as a body is read: it raises
        :class:`OtlpBusy` when the pool is spent); all of it given back after."""
        charged = 0

        def charge(count: int) -> None:
            nonlocal charged
            if not self._take(count):
                raise OtlpBusy("too many values in progress")
            charged += count

        try:
            yield charge
        finally:
            self._give_back(charged)


def otlp_budget(data: bytes, json: bool, limit: int) -> int:
    """The values an OTLP body may hold: proportional to its size, at most ``limit``.

    A protobuf value (2 units of the budget) takes at least 2 bytes on the wire, so a
    body holds at most its size in units; a JSON body's values are what
    :func:`~bucket_logging._relay.bodies.value_bound` counts.
    """
    bound = value_bound(data) if json else len(data) + 2
    return min(bound, limit)
