"""Throughput of ``bucket-logging ship`` against the in-process handler path.

    .venv/bin/python benchmarks/ship_bench.py [--lines 1000000] [--rounds 3]

Both paths deliver the same ``--lines`` tagged events (``bucket_event``, a user id,
a company id and two attributes) to a local
:class:`~bucket_logging.TrackingServer` running in a child process (so that its
request parsing does not share the measured process's GIL):

* **ship**: a JSON-lines file of that many structlog-style lines (written
  beforehand, ~250 bytes a line, each with its own ISO 8601 timestamp) shipped by
  ``python -m bucket_logging ship FILE`` run as a subprocess, as users run it; timed
  from the start of the process until it exited (everything delivered: it flushes
  before it exits) -- interpreter start-up included;
* **handler**: a ``logging`` logger with a :class:`~bucket_logging.BucketHandler`
  logging that many tagged records in a loop, timed from the first call until
  ``flush()`` returned (everything delivered).

Lines (records) per second, medians over the rounds; the paths alternate within a
round to spread out noise from other processes.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
from spool_bench import Server  # the child-process TrackingServer (this directory)

from bucket_logging import BucketHandler

KEY = "ship-bench-key"


def fields(i: int) -> dict[str, object]:
    return {
        "user_id": f"user-{i}",
        "company_id": "acme-corporation",
        "bucket_event": "Sent message",
        "bucket_attributes": {"position": "popover", "version": 3},
    }


def write_file(path: Path, lines: int) -> float:
    """The JSON-lines file; returns its mean line size in bytes."""
    base = 1_767_323_045.0
    with open(path, "wb") as fh:
        for i in range(lines):
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(base + i / 1000))
            obj = {
                "timestamp": f"{stamp}.{i % 1000:03d}Z",
                "level": "info",
                "logger": "app.chat",
                "event": "message sent",
                **fields(i),
            }
            fh.write(orjson.dumps(obj) + b"\n")
    return path.stat().st_size / lines


def run_ship(server: Server, path: Path, lines: int, state: Path | None = None) -> float:
    """Lines/s of ``bucket-logging ship`` as a subprocess (with ``--state`` if given)."""
    server.ask("clear")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUCKET_")}
    env.update(BUCKET_TRACKING_KEY=KEY, BUCKET_TRACKING_URL=server.url)
    extra = [] if state is None else ["--state", str(state)]
    if state is not None:
        state.unlink(missing_ok=True)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "bucket_logging", "ship", str(path), *extra],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"ship failed: {done.stderr[-2000:]}")
    answer = server.ask(f"wait {lines} 30")
    if not answer.startswith("ok"):
        raise SystemExit(f"the server has {answer}, expected {lines}")
    return lines / took


def run_handler(server: Server, lines: int) -> float:
    """Records/s of a BucketHandler in this process, until flushed."""
    server.ask("clear")
    handler = BucketHandler(KEY, base_url=server.url)
    log = logging.getLogger("ship_bench.app")
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False
    extras = [fields(i) for i in range(lines)]  # built beforehand, like the file
    info = log.info
    started = time.perf_counter()
    for extra in extras:
        info("message sent", extra=extra)
    if not handler.flush(timeout=300) and handler.sender.stats.pending:
        raise SystemExit(f"not delivered: {handler.sender.stats}")
    took = time.perf_counter() - started
    log.removeHandler(handler)
    answer = server.ask(f"wait {lines} 30")
    if not answer.startswith("ok"):
        raise SystemExit(f"the server has {answer}, expected {lines}")
    return lines / took


def main() -> None:
    """Run the rounds and print the comparison."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    server = Server()
    ship: list[float] = []
    with_state: list[float] = []
    handler: list[float] = []
    try:
        with tempfile.TemporaryDirectory(prefix="ship-bench-") as tmp:
            path = Path(tmp, "app.log")
            size = write_file(path, args.lines)
            for _ in range(args.rounds):
                ship.append(run_ship(server, path, args.lines))
                with_state.append(run_ship(server, path, args.lines, Path(tmp, "state")))
                handler.append(run_handler(server, args.lines))
    finally:
        server.close()
    ship_median, handler_median = statistics.median(ship), statistics.median(handler)
    print(
        f"ship_bench: {args.lines:,} tagged lines of ~{size:.0f} B, {args.rounds} round(s) "
        f"(medians), TrackingServer in a child process, Python {sys.version.split()[0]}"
    )
    print(f"{'':44}{'lines/s':>12}")
    print(f"{'bucket-logging ship FILE (a subprocess)':44}{ship_median:>12,.0f}")
    state_median = statistics.median(with_state)
    print(f"{'bucket-logging ship --state S FILE':44}{state_median:>12,.0f}")
    print(f"{'BucketHandler in process, until flushed':44}{handler_median:>12,.0f}")
    print(
        f"ship / handler: {ship_median / handler_median:.2f}x, "
        f"with --state {state_median / handler_median:.2f}x"
    )
    print(f"  ship rounds: {', '.join(f'{x:,.0f}' for x in ship)}")
    print(f"  ship --state rounds: {', '.join(f'{x:,.0f}' for x in with_state)}")
    print(f"  handler rounds: {', '.join(f'{x:,.0f}' for x in handler)}")


if __name__ == "__main__":
    main()
