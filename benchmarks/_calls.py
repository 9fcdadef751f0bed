"""The measured calls, each written the way an application writes it.

Every factory returns ``run(n) -> nanoseconds``: ``n`` calls in a tight loop, timed
inside the function so that no harness code is counted. The payloads are equivalent
across libraries: one event "Sent message" by user "user-42" with two attributes.
The ``extra=`` and keyword dicts are literals inside the loop, as in real code, so
every variant pays for building them alike.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from itertools import repeat
from time import perf_counter_ns
from typing import Any

Run = Callable[[int], int]

#: The event every variant sends, and its attributes.
EVENT = "Sent message"
USER = "user-42"
ATTRIBUTES = {"plan": "pro", "seats": 3}


def stdlib_tracked(logger: logging.Logger) -> Run:
    """A tagged stdlib call: ``extra=`` with ``bucket_event``, the user id, attributes."""
    info = logger.info

    def run(n: int) -> int:
        t0 = perf_counter_ns()
        for _ in repeat(None, n):
            info(
                "sent message to %s",
                "channel-7",
                extra={
                    "bucket_event": "Sent message",
                    "user_id": "user-42",
                    "bucket_attributes": {"plan": "pro", "seats": 3},
                },
            )
        return perf_counter_ns() - t0

    return run


def stdlib_untagged(logger: logging.Logger) -> Run:
    """An untagged stdlib call with structured fields (ids and values, no tags)."""
    info = logger.info

    def run(n: int) -> int:
        t0 = perf_counter_ns()
        for _ in repeat(None, n):
            info(
                "order %s shipped",
                "order-7",
                extra={"user_id": "user-42", "plan": "pro", "seats": 3},
            )
        return perf_counter_ns() - t0

    return run


def stdlib_tracked_varying(logger: logging.Logger) -> Run:
    """A tagged stdlib call as applications make it: the user id and an attribute
    value change on every call (nothing the library could cache)."""
    info = logger.info

    def run(n: int) -> int:
        t0 = perf_counter_ns()
        for i in range(n):
            info(
                "sent message to %s",
                "channel-7",
                extra={"bucket_event": "Sent message", "user_id": i, "bucket_attributes": {"n": i}},
            )
        return perf_counter_ns() - t0

    return run


def stdlib_plain(logger: logging.Logger) -> Run:
    """An untagged stdlib call with no ``extra=`` at all: ``log.info("clicked %s", i)``."""
    info = logger.info

    def run(n: int) -> int:
        t0 = perf_counter_ns()
        for i in range(n):
            info("clicked %s", i)
        return perf_counter_ns() - t0

    return run


def stdlib_rule_hit(logger: logging.Logger, template: str) -> Run:
    """An untagged stdlib call whose message template a configured rule matches."""
    info = logger.info

    def run(n: int) -> int:
        t0 = perf_counter_ns()
        for _ in repeat(None, n):
            info(template, "channel-7", extra={"user_id": "user-42", "plan": "pro", "seats": 3})
        return perf_counter_ns() - t0

    return run


def structlog_tracked(log: Any) -> Run:
    """A tagged structlog call (the same tags as keywords)."""
    info = log.info

    def run(n: int) -> int:
        t0 = perf_counter_ns()
        for _ in repeat(None, n):
            info(
                "sent message",
                bucket_event="Sent message",
                user_id="user-42",
                bucket_attributes={"plan": "pro", "seats": 3},
            )
        return perf_counter_ns() - t0

    return run


def structlog_untagged(log: Any) -> Run:
    """An untagged structlog call with structured fields."""
    info = log.info

    def run(n: int) -> int:
        t0 = perf_counter_ns()
        for _ in repeat(None, n):
            info("order shipped", order="order-7", user_id="user-42", plan="pro", seats=3)
        return perf_counter_ns() - t0

    return run


def posthog_capture(client: Any) -> Run:
    """posthog-python's ``Client.capture`` with the equivalent payload."""
    capture = client.capture

    def run(n: int) -> int:
        t0 = perf_counter_ns()
        for _ in repeat(None, n):
            capture("Sent message", distinct_id="user-42", properties={"plan": "pro", "seats": 3})
        return perf_counter_ns() - t0

    return run


def segment_track(client: Any) -> Run:
    """segment-analytics-python's ``Client.track`` with the equivalent payload."""
    track = client.track

    def run(n: int) -> int:
        t0 = perf_counter_ns()
        for _ in repeat(None, n):
            track(user_id="user-42", event="Sent message", properties={"plan": "pro", "seats": 3})
        return perf_counter_ns() - t0

    return run


def threaded(run: Run, threads: int) -> Run:
    """Spread ``n`` calls over ``threads`` threads started together; time the whole.

    The threads are created and parked on a barrier before the clock starts, so only
    the calls (and their contention) are timed.
    """
    if threads == 1:
        return run

    def go(n: int) -> int:
        shares = [n // threads + (1 if i < n % threads else 0) for i in range(threads)]
        barrier = threading.Barrier(threads + 1)

        def worker(share: int) -> None:
            barrier.wait()
            run(share)

        pool = [threading.Thread(target=worker, args=(k,), daemon=True) for k in shares]
        for t in pool:
            t.start()
        barrier.wait()
        t0 = perf_counter_ns()
        for t in pool:
            t.join()
        return perf_counter_ns() - t0

    return go
