"""Where the time of a tracked log call goes: input for optimising the hot path.

    python3 dev.py bench --profile          # or: python benchmarks/profile_hot_path.py

Two views of the same call (a ``BucketHandler`` on a logger, ``extra=`` with
``bucket_event``, the user id and two attributes, shipped to a local server in a
child process):

1. a decomposition: each step of the path timed alone, as µs per call (median of
   interleaved rounds), next to the whole call and the ``NullHandler`` floor;
2. cProfile of the whole call, top entries by own time and by cumulative time.
   cProfile's per-call overhead inflates small functions; read the shares, not the
   absolute numbers (the decomposition gives those).
"""

from __future__ import annotations

import cProfile
import io
import logging
import os
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from itertools import repeat
from pathlib import Path
from time import perf_counter_ns
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _calls
from _servers import Servers
from _table import print_table

KEY = "bench-profile-key"


class _NoSender:
    """A sender that drops everything: the handler's share without background work."""

    def enqueue(self, item: object) -> bool:
        return True

    def flush(self, timeout: float | None = None) -> bool:
        return True


def _thread_cpu(native_id: int | None) -> float | None:
    """CPU seconds (user + system) of one thread of this process, from /proc (Linux)."""
    try:
        with open(f"/proc/self/task/{native_id}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def _loop(fn: Callable[..., Any], *args: Any) -> Callable[[int], int]:
    def run(n: int) -> int:
        t0 = perf_counter_ns()
        for _ in repeat(None, n):
            fn(*args)
        return perf_counter_ns() - t0

    return run


def main(smoke: bool = False) -> int:
    import _frontends
    import orjson

    from bucket_logging._items.item import event_body, format_timestamp

    if _frontends.BucketHandler is None:
        print("BucketHandler is not available: nothing to profile")
        return 1
    calls = 500 if smoke else 20_000
    rounds = 1 if smoke else 5
    with Servers() as servers:
        url = servers.tracking_url
        handler = _frontends.BucketHandler(KEY, base_url=url)
        sender = _frontends.sender_of(handler, KEY, url)
        bucket = logging.getLogger("bench.profile.bucket")
        bucket.handlers[:] = [handler]
        bucket.setLevel(logging.INFO)
        bucket.propagate = False
        null = logging.getLogger("bench.profile.null")
        null.handlers[:] = [logging.NullHandler()]
        null.setLevel(logging.INFO)
        null.propagate = False

        extra = {
            "bucket_event": "Sent message",
            "user_id": "user-42",
            "bucket_attributes": {"plan": "pro", "seats": 3},
        }
        record = bucket.makeRecord(
            bucket.name, logging.INFO, __file__, 1, "sent message to %s", ("c",), None, None, extra
        )
        quiet = _frontends.BucketHandler(sender=_NoSender())
        now = time.time()
        attributes = {"plan": "pro", "seats": 3}
        wire = {
            "type": "event",
            "event": "Sent message",
            "userId": "user-42",
            "attributes": attributes,
            "timestamp": format_timestamp(now),
        }
        body = event_body("Sent message", "user-42", None, attributes, now)
        assert body is not None
        put = getattr(sender, "put_encoded", None) or sender.enqueue
        # (label, run, items each call ships)
        steps: list[tuple[str, Callable[[int], int], int]] = [
            ("logger.info -> NullHandler (the floor)", _calls.stdlib_tracked(null), 0),
            (
                "logger.info -> BucketHandler, tracked (whole call)",
                _calls.stdlib_tracked(bucket),
                1,
            ),
            (
                "  logger.makeRecord (part of the floor)",
                _loop(
                    bucket.makeRecord,
                    bucket.name,
                    logging.INFO,
                    __file__,
                    1,
                    "sent message to %s",
                    ("c",),
                    None,
                    None,
                    extra,
                ),
                0,
            ),
            (
                "  BucketHandler.handle(record) (the handler's share)",
                _loop(handler.handle, record),
                1,
            ),
            (
                "  BucketHandler.handle(record), no-op sender (no background work)",
                _loop(quiet.handle, record),
                0,
            ),
            (
                "    event_body(...) (checks, dict, timestamp, orjson)",
                _loop(event_body, "Sent message", "user-42", None, attributes, now),
                0,
            ),
            ("      orjson.dumps(wire)", _loop(orjson.dumps, wire), 0),
            ("      format_timestamp(created), cached", _loop(format_timestamp, now), 0),
            ("    sender.put_encoded(body) (into the open batch)", _loop(put, body), 1),
        ]

        def settle(items: int) -> None:
            if items:
                sender.flush(60)
                servers.drain("tracking", items, 60)

        for _label, run, per in steps:
            run(200)
            settle(200 * per)
        samples: dict[str, list[float]] = {label: [] for label, _, _ in steps}
        for r in range(rounds):
            order = steps if r % 2 == 0 else steps[::-1]
            for label, run, per in order:
                samples[label].append(run(calls) / calls / 1000)
                settle(calls * per)
        floor = statistics.median(samples[steps[0][0]])
        rows = []
        for label, _, _ in steps:
            us = statistics.median(samples[label])
            rows.append([label, f"{us:.2f}", f"{us / floor:.2f}x"])
        print_table(
            f"Decomposition of a tracked call (median of {rounds} rounds x {calls:,} calls)",
            ["step", "us/call", "x floor"],
            rows,
            "indented steps are parts of the line above them",
        )

        thread = getattr(sender, "_thread", None)
        native_id = getattr(thread, "native_id", None)
        cpu0 = _thread_cpu(native_id)
        if cpu0 is not None:
            many = calls * 5  # the clock ticks in 10 ms steps
            run = _calls.stdlib_tracked(bucket)
            run(many)
            settle(many)
            cpu1 = _thread_cpu(native_id)
            assert cpu1 is not None
            print(
                f"\nsender thread CPU (user + system): {(cpu1 - cpu0) / many * 1e6:.2f} "
                f"us per item over {many:,} tracked calls (it competes for the GIL "
                "only while it runs Python code)"
            )

        profiler = cProfile.Profile()
        run = _calls.stdlib_tracked(bucket)
        profiler.enable()
        run(calls)
        profiler.disable()
        settle(calls)
        for sort, top in (("tottime", 20), ("cumulative", 15)):
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out)
            stats.strip_dirs().sort_stats(sort).print_stats(top)
            text = out.getvalue()
            start = text.find("   ncalls")
            print(f"\ncProfile of {calls:,} tracked calls, top {top} by {sort}:")
            print(text[start:].rstrip())
        handler.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(smoke="--smoke" in sys.argv[1:]))
