"""The retry policy: which failures are retried, and how long to wait before the next try.

Pure functions of their arguments (and of a random jitter): no I/O, no clock except
``Retry-After``'s HTTP date, no state. :mod:`bucket_logging._sender.delivery` asks
:meth:`RetryPolicy.next_delay` after each retryable failure of a request.
"""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass
from typing import Final

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


def parse_retry_after(value: str | None) -> float | None:
    """Seconds asked for by a ``Retry-After`` header (seconds or an HTTP date), or None."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential back-off with jitter and a cap, within a budget per batch.

    Attributes:
        budget: seconds a batch is retried before it is given up.
        base: the first delay in seconds (doubled each attempt, jitter 0.5-1.0x).
        cap: the most one delay lasts (a server's ``Retry-After`` excepted).
    """

    budget: float = 300.0
    base: float = 0.5
    cap: float = 30.0

    def backoff(self, attempt: int, retry_after: float | None) -> float:
        """The delay before try ``attempt + 1``; a server's ask is honoured as is."""
        if retry_after is not None:
            return min(retry_after, self.budget)
        delay = min(self.cap, self.base * 2.0 ** (attempt - 1))
        return delay * random.uniform(0.5, 1.0)

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
        delay = self.backoff(attempt, retry_after)
        if retry_after is None and flush_waiting:
            delay = min(delay, FLUSH_RETRY_DELAY)
        if elapsed + delay > self.budget or (closing_in is not None and closing_in <= 0):
            return None
        if closing_in is not None:
            delay = min(delay, CLOSING_RETRY_DELAY, closing_in)
        return delay
