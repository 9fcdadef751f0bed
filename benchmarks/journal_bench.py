"""What the spool's journal costs on the calling thread, and how fast a dead one is recovered.

    .venv/bin/python benchmarks/journal_bench.py [--calls 20000] [--rounds 7] [--recover 1000000]

1. The cost of a tracked stdlib call (``extra=`` with ``bucket_event``, a user id and
   attributes), in one process, in interleaved and rotated rounds: a ``NullHandler``
   (the floor), a ``BucketHandler`` without a spool, and one with ``spool_dir=`` (every
   call written to the journal before it returns). Medians of per-round ratios.
2. Recovery: a child process writes ``--recover`` items to a journal and dies with
   ``os._exit`` (its locks released by the kernel, as at SIGKILL); then a new sender
   opens the spool: how long its construction takes (the application's start-up) and
   the rate at which it delivers the dead journal to a local server, against the rate
   at which a memory-only sender delivers the same number of items queued by
   ``enqueue``.

The server runs in a child process (``spool_bench.py``'s), so that its parsing does not
share this process's GIL.
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

sys.path.insert(0, str(Path(__file__).parent))

from _calls import stdlib_tracked
from spool_bench import KEY, Server, make_items

from bucket_logging import BucketHandler, BulkSender
from bucket_logging._spool.journal import Journal
from bucket_logging._spool.rows import destination


def logger(name: str, handler: logging.Handler) -> logging.Logger:
    log = logging.getLogger(name)
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False
    return log


def cost(server: Server, calls: int, rounds: int) -> dict[str, list[float]]:
    """µs per call of each variant, one value per round."""
    spool = tempfile.mkdtemp(prefix="journal-bench-")
    memory = BucketHandler(KEY, base_url=server.url)
    # (another URL for the same server: handlers share a sender per key and URL)
    spooled = BucketHandler(
        KEY, base_url=server.url.replace("127.0.0.1", "localhost"), spool_dir=spool
    )
    runs = {
        "NullHandler": stdlib_tracked(logger("bench.null", logging.NullHandler())),
        "BucketHandler": stdlib_tracked(logger("bench.memory", memory)),
        "BucketHandler + spool": stdlib_tracked(logger("bench.spool", spooled)),
    }
    for run in runs.values():
        run(1000)  # warm
    samples: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            samples[name].append(runs[name](calls) / calls / 1000)
        memory.sender.flush(30)
        spooled.sender.flush(30)
    memory.close()
    spooled.close()
    return samples


def write_dead_journal(spool: str, items: int) -> None:
    """A child writes ``items`` items to its journal and dies without closing it."""
    bodies = [item.body for item in make_items(1000)]
    pid = os.fork()
    if pid == 0:
        try:
            journal = Journal(spool, destination(KEY))
            journal.open()
            keep: list[bytes] = []
            for i in range(items):
                journal.append(bodies[i % 1000], keep.append)
                if len(keep) > 10_000:
                    keep.clear()
        finally:
            os._exit(0)  # no close: the journal stays, its flocks go with the process
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise SystemExit("the journal writer failed")


def recovery(server: Server, items: int) -> tuple[float, float, float, float]:
    """(seconds to construct the sender, the same without a spool, items/s recovered and
    delivered, items/s of a memory-only sender for as many items)."""
    spool = tempfile.mkdtemp(prefix="journal-recover-")
    write_dead_journal(spool, items)
    server.ask("clear")
    started = time.perf_counter()
    sender = BulkSender(KEY, base_url=server.url, spool_dir=spool)
    constructed = time.perf_counter() - started
    answer = server.ask(f"wait {items} 600")
    recovered = items / (time.perf_counter() - started)
    sender.close()
    if not answer.startswith("ok"):
        raise SystemExit(f"the journal was not delivered: {answer}")
    batch = make_items(1000)
    server.ask("clear")
    started = time.perf_counter()
    memory = BulkSender(
        KEY, base_url=server.url, max_queue_items=items + 1, max_queue_bytes=1 << 30
    )
    plain = time.perf_counter() - started
    started = time.perf_counter()
    for i in range(items):
        memory.enqueue(batch[i % 1000])
    answer = server.ask(f"wait {items} 600")  # every item at the server, as above
    rate = items / (time.perf_counter() - started)
    memory.close()
    if not answer.startswith("ok"):
        raise SystemExit(f"memory-only: not delivered: {answer}")
    return constructed, plain, recovered, rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--recover", type=int, default=1_000_000)
    parser.add_argument("--no-cost", action="store_true", help="only the recovery")
    args = parser.parse_args()
    server = Server()
    try:
        load = os.getloadavg()[0]
        samples = {} if args.no_cost else cost(server, args.calls, args.rounds)
        if samples:
            print(
                f"1. Cost of a tracked call (median of {args.rounds} interleaved rounds x "
                f"{args.calls:,} calls; load average {load:.2f} at the start)"
            )
            floor = samples["NullHandler"]
            for name, values in samples.items():
                ratio = statistics.median(v / f for v, f in zip(values, floor, strict=True))
                print(
                    f"  {name:24} {statistics.median(values):6.2f} us/call "
                    f"({min(values):.2f}-{max(values):.2f})  {ratio:.2f}x NullHandler"
                )
        if args.recover:
            constructed, plain, recovered, rate = recovery(server, args.recover)
            print(
                f"2. A dead journal of {args.recover:,} items (load average "
                f"{os.getloadavg()[0]:.2f}): the new sender was constructed in "
                f"{constructed * 1000:.1f} ms (without a spool: {plain * 1000:.1f} ms); "
                f"recovered and delivered at "
                f"{recovered:,.0f} items/s; a memory-only sender delivers as many at "
                f"{rate:,.0f} items/s ({recovered / rate:.2f}x)"
            )
    finally:
        server.close()


if __name__ == "__main__":
    main()
