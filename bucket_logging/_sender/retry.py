"""The retry policy: which failures are retried, and how long to wait before the next try.

Pure functions of their arguments (and of a random jitter): no I/O, no clock except
``Retry-After``'s HTTP date, no state. :mod:`bucket_logging._sender.delivery` asks
:meth:`RetryPolicy.next_delay` after each retryable failure of a request.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from dataclasses import dataclass
from typing import Final

from .._options import BACKOFF_BASE, BACKOFF_MAX, RETRY_BUDGET

__all__ = ["FLUSH_RETRY_DELAY", "RetryPolicy", "parse_retry_after", "retryable"]

#: Statuses retried besides every 5xx.
RETRY_STATUSES: Final = frozenset({408, 429})

#: While a flush waits, a back-off (not a server's Retry-After) lasts at most this long.
FLUSH_RETRY_DELAY: Final = 0.2

#: While the sender closes, one back-off lasts at most this long.
CLOSING_RETRY_DELAY: Final = 0.2


def retryable(status: int) -> bool:
    """Whether an answer with this status is retried (5xx, 408, 429)."""
    return status >= 500 or status in RETRY_STATUSES


#: The longest ``Retry-After`` read as asked (a day); longer (``inf``, ``1e12``) is this.
#: Every ask is clamped to the budget left anyway.
MAX_RETRY_AFTER: Final = 86_400.0


def parse_retry_after(value: str | None) -> float | None:
    """Seconds asked for by a ``Retry-After`` header (seconds or an HTTP date), or None.

    From 0 (``0``, negative, a past date) to :data:`MAX_RETRY_AFTER` (``inf``, ``1e12``,
    a far date); ``nan`` or text that is neither form is None (no ask).
    """
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
            seconds = when.timestamp() - time.time()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    if math.isnan(seconds):
        return None
    return min(MAX_RETRY_AFTER, max(0.0, seconds))


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential back-off with jitter and a cap, within a budget per batch.

    Attributes:
        budget: seconds a batch is retried before it is given up.
        base: the first delay in seconds (doubled each attempt, jitter 0.5-1.0x).
        cap: the most one delay lasts (a server's ``Retry-After`` excepted).

    A server's ``Retry-After`` can lengthen a delay, never shorten it below the
    back-off (``0``, a past date: the back-off as usual), and no delay outlasts the
    budget left: a longer ask is clamped to it and the batch tried once more then.
    """

    budget: float = RETRY_BUDGET
    base: float = BACKOFF_BASE
    cap: float = BACKOFF_MAX

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """The delay before try ``attempt + 1``: the back-off, or a server's longer ask."""
        delay = min(self.cap, self.base * 2.0 ** min(attempt - 1, 64))
        delay *= random.uniform(0.5, 1.0)
        if retry_after is not None and retry_after > delay:
            return min(retry_after, self.budget)
        return delay

    def next_delay(
        self,
        attempt: int,
        retry_after: float | None,
        elapsed: float,
        *,
        flush_waiting: bool = False,
        closing_in: float | None = None,
    ) -> float | None:
        """The delay before the next try, or None to give the batch up.

        ``elapsed`` is the time since the batch's first try; ``closing_in`` the seconds
        left before the sender's close deadline (None while it is not closing). A
        waiting flush shortens a back-off the server did not ask for.
        """
        if retry_after is None or not retry_after > 0:
            delay = self.backoff(attempt)
            if flush_waiting:
                delay = min(delay, FLUSH_RETRY_DELAY)
            if elapsed + delay > self.budget:
                return None
        else:  # the server's ask, at least the back-off, clamped to the budget left
            left = self.budget - elapsed
            if left <= 0:
                return None
            delay = min(self.backoff(attempt, retry_after), left)
        if closing_in is not None and closing_in <= 0:
            return None
        if closing_in is not None:
            delay = min(delay, CLOSING_RETRY_DELAY, closing_in)
        return delay
