#!/usr/bin/env python3
"""The tracking plan's budgets (issue 28): the tracked call with a plan against a
``NullHandler`` call, and ``plan status`` on a tree of 1,000 Python files.

    .venv/bin/python benchmarks/plan_bench.py                 # both, about a minute
    .venv/bin/python benchmarks/plan_bench.py --calls 5000 --rounds 3 --files 200   # smoke

**1. Cost on the calling thread.** Interleaved rounds (the order rotates and alternates
from round to round) of N calls each of: a ``NullHandler`` call with the tracked call's
``extra=`` (the floor), the tracked event without a plan, the tracked event with the
realistic plan of the tests (50 events, 349 attributes; the event planned, its action
``report``), and the same with a plan whose action is ``strip``; both are checked on
the calling thread before the event is queued. Printed: each variant's median µs per call and the
median of its per-round ratios to the floor. The senders send to a local server in a
process of its own (``spool_bench.py``'s), as they do in production; the sender's
thread is flushed every fifth round.

**2. plan status.** A tree of ``--files`` modules (each ~60 lines: imports, a wrapper, a
class, log calls with ``extra=`` and ``bucket_event``, structlog keyword calls, ``track()``)
is written to a temporary folder, then scanned as ``bucket-logging plan status`` does;
printed: the wall time, the files read and the events found.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

PLAN = ROOT / "tests" / "tracking" / "plan_data" / "tracking-plan.yaml"


def _logger(name: str, handler: logging.Handler) -> logging.Logger:
    log = logging.getLogger(f"bench.plan.{name}")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    return log


def _variants(tmp: Path, url: str) -> dict[str, logging.Logger]:
    from spool_bench import KEY

    from bucket_logging import BucketHandler

    options = {"base_url": url}
    strip = tmp / "strip.yaml"
    strip.write_text(PLAN.read_text().replace("action: report", "action: strip", 1))
    return {
        "null": _logger("null", logging.NullHandler()),
        "tracked": _logger("tracked", BucketHandler(KEY, **options)),
        "tracked+plan": _logger("plan", BucketHandler(KEY, tracking_plan=PLAN, **options)),
        "tracked+plan(strip)": _logger("strip", BucketHandler(KEY, tracking_plan=strip, **options)),
    }


def _run(log: logging.Logger, n: int) -> float:
    info = log.info
    item = "report_0a1b2c"
    start = time.perf_counter()
    for i in range(n):
        info(
            "viewed %s",
            i,
            extra={
                "bucket_event": "Report viewed",
                "user_id": "user-42",
                "bucket_attributes": {"item_id": item, "source": "web", "duration_ms": i},
            },
        )
    return (time.perf_counter() - start) / n * 1e6


def cost(calls: int, rounds: int) -> None:
    sys.path.insert(0, str(HERE))
    from spool_bench import Server

    from bucket_logging import BucketHandler

    server = Server()
    with tempfile.TemporaryDirectory() as folder:
        variants = _variants(Path(folder), server.url)
        names = list(variants)
        times: dict[str, list[float]] = {name: [] for name in names}
        ratios: dict[str, list[float]] = {name: [] for name in names}
        for r in range(rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            if r % 2:
                order.reverse()
            seen = {name: _run(variants[name], calls) for name in order}
            if r % 5 == 4:
                for log in variants.values():
                    for handler in log.handlers:
                        if isinstance(handler, BucketHandler):
                            handler.flush()
            for name in names:
                times[name].append(seen[name])
                ratios[name].append(seen[name] / seen["null"])
        load = os.getloadavg()[0]
        print(f"1. Cost on the calling thread ({rounds} interleaved rounds x {calls:,} calls;"
              f" load average {load:.1f})")  # fmt: skip
        for name in names:
            print(
                f"  {name:22} {statistics.median(times[name]):6.2f} µs/call"
                f"  {statistics.median(ratios[name]):5.2f}x NullHandler"
                f"  (rounds {min(times[name]):.2f}-{max(times[name]):.2f})"
            )
        for log in variants.values():
            for handler in log.handlers:
                handler.close()
    server.close()


MODULE = '''\
"""Module {i} of the benchmark tree."""
import logging
import structlog
from bucket_logging import track

log = logging.getLogger(__name__)
slog = structlog.get_logger()


def emit_{i}(name, user_id, **attributes):
    log.info(name, extra={{"bucket_event": name, "user_id": user_id,
                          "bucket_attributes": attributes}})


class Service{i}:
    def __init__(self, store):
        self.store = store

    def create(self, user, item):
        self.store.save(item)
        log.info("created %s", item, extra={{"bucket_event": "Report created",
                                             "user_id": user, "bucket_attributes": {{"n": {i}}}}})
        return item

    def view(self, user, item):
        slog.info("viewed", bucket_event="Report viewed", user_id=user, item=item)
        return self.store.load(item)

    def export(self, user, item, fmt):
        track("Report exported", user_id=user, attributes={{"format": fmt}})
        emit_{i}("Report shared", user, channel="link")
        for row in self.store.rows(item):
            if row.get("flag"):
                log.warning("flagged row %s", row)
        return [dict(r) for r in self.store.rows(item)]


def helper_{i}(values):
    total = 0
    for v in values:
        if v % 2:
            total += v
        else:
            total -= v
    return total
'''


def status(files: int) -> None:
    from bucket_logging._tracking.plan_scan import scan

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for i in range(files):
            package = root / f"pkg{i // 50}"
            package.mkdir(exist_ok=True)
            (package / f"mod{i}.py").write_text(MODULE.format(i=i))
        start = time.perf_counter()
        found = scan([str(root)])
        took = time.perf_counter() - start
    places = sum(len(p) for p in found.events.values())
    print(f"2. plan status: {found.files:,} files in {took:.2f} s "
          f"({len(found.events)} events at {places:,} places; load average "
          f"{os.getloadavg()[0]:.1f})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--files", type=int, default=1000)
    args = parser.parse_args()
    cost(args.calls, args.rounds)
    status(args.files)


if __name__ == "__main__":
    main()
