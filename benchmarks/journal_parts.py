"""Where a tracked call's extra cost with a spool goes: the journal's append, part by part.

Each variant runs in a process of its own, which measures three loggers side by side in
interleaved, rotated rounds (a ``NullHandler``, a ``BucketHandler`` without a spool and
one with ``spool_dir=``) and prints, per logger, the median µs per call, the calling
thread's own CPU time per call (``thread_time``: equal to the wall time means no wait
for the GIL), its page faults per call and the median of per-round ratios to the
``NullHandler``. The variants replace the journal's ``append`` (or a part of it) for
the spooled logger only:

- ``full``: the library as it is;
- ``no-journal``: the spool without a journal (the queue's ``put``, as before issue 26);
- ``call-only``: ``append`` is a call that queues the entry, no lock, no write;
- ``lock-only``: that call under the journal's lock;
- ``no-write``: ``append`` as it is but without the frame's pack, checksum and copy;
- ``no-prefault``: the next segment's pages are not written ahead on the sender's thread.

    .venv/bin/python benchmarks/journal_parts.py                  # every variant
    .venv/bin/python benchmarks/journal_parts.py --variant full --rounds 41
"""

from __future__ import annotations

import argparse
import logging
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _calls import stdlib_tracked
from journal_bench import logger
from spool_bench import KEY, Server

from bucket_logging import BucketHandler
from bucket_logging._sender.queue import BatchQueue
from bucket_logging._spool import journal as journal_module

VARIANTS = ["full", "no-journal", "call-only", "lock-only", "no-write", "no-prefault"]


def patch(variant: str) -> None:
    """Replace the part of the journal that ``variant`` leaves out."""
    journal = journal_module.Journal
    if variant == "no-journal":
        BatchQueue.put_journaled = BatchQueue.put  # type: ignore[method-assign]
    elif variant == "no-prefault":
        new_segment = journal._new_segment

        def unfaulted(self: Any, index: int, first: int, *, prefault: bool = False) -> Any:
            return new_segment(self, index, first, prefault=False)

        journal._new_segment = unfaulted  # type: ignore[method-assign]
    elif variant == "call-only":

        def call_only(self: Any, body: bytes, then: Callable[[bytes], object]) -> bool:
            then(body)
            return True

        journal.append = call_only  # type: ignore[method-assign]
    elif variant == "lock-only":

        def lock_only(self: Any, body: bytes, then: Callable[[bytes], object]) -> bool:
            with self.lock:
                then(body)
            return True

        journal.append = lock_only  # type: ignore[method-assign]
    elif variant == "no-write":
        real = journal.append

        def no_write(self: Any, body: bytes, then: Callable[[bytes], object]) -> bool:
            mm, self._mm = self._mm, None
            try:
                self._off += 20 + len(body)  # as a write moves on
                self._seq += 1
                return real(self, body, then)
            finally:
                self._mm = mm

        # (append with no mapping goes to write_locked, which returns at once: the lock,
        # the flag and the call chain are paid; the pack, crc32 and copy are not)
        journal.append = no_write  # type: ignore[method-assign]


def measure(variant: str, rounds: int, calls: int) -> None:
    patch(variant)
    server = Server()
    try:
        memory = BucketHandler(KEY, base_url=server.url)
        spooled = BucketHandler(
            KEY,
            base_url=server.url.replace("127.0.0.1", "localhost"),
            spool_dir=tempfile.mkdtemp(prefix="journal-parts-"),
        )
        runs = {
            "NullHandler": stdlib_tracked(logger("parts.null", logging.NullHandler())),
            "BucketHandler": stdlib_tracked(logger("parts.memory", memory)),
            "BucketHandler + spool": stdlib_tracked(logger("parts.spool", spooled)),
        }
        wall: dict[str, list[float]] = {name: [] for name in runs}
        cpu: dict[str, list[float]] = {name: [] for name in runs}
        faults: dict[str, list[float]] = {name: [] for name in runs}
        for run in runs.values():
            run(1000)  # warm
        names = list(runs)
        for r in range(rounds):
            for name in names[r % 3 :] + names[: r % 3]:
                before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
                began = time.thread_time_ns()
                wall[name].append(runs[name](calls) / calls / 1000)
                cpu[name].append((time.thread_time_ns() - began) / calls / 1000)
                after = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
                faults[name].append((after - before) / calls)
            if r % 5 == 4:
                memory.sender.flush(30)
                spooled.sender.flush(30)
        memory.close()
        spooled.close()
    finally:
        server.close()
    print(f"== {variant} ({rounds} rounds x {calls:,} calls)")
    floor = wall["NullHandler"]
    for name in names:
        ratio = statistics.median(v / f for v, f in zip(wall[name], floor, strict=True))
        print(
            f"  {name:22} {statistics.median(wall[name]):6.2f} us/call, thread CPU "
            f"{statistics.median(cpu[name]):6.2f} us, faults/call "
            f"{statistics.mean(faults[name]):.4f}  {ratio:.3f}x NullHandler"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", choices=VARIANTS)
    parser.add_argument("--rounds", type=int, default=41)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    if args.variant:
        measure(args.variant, args.rounds, args.calls)
        return
    for variant in VARIANTS:
        argv = [sys.executable, __file__, "--variant", variant]
        subprocess.run(
            [*argv, "--rounds", str(args.rounds), "--calls", str(args.calls)], check=True
        )


if __name__ == "__main__":
    main()
