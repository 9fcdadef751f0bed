#!/usr/bin/env python3
"""Instructions per log call on the calling thread, counted by callgrind: a noise-free A/B.

    .venv/bin/python benchmarks/instructions.py                  # this tree
    .venv/bin/python benchmarks/instructions.py --base ../old    # and another checkout
    .venv/bin/python benchmarks/instructions.py --before-send    # and with a before_send hook
    .venv/bin/python benchmarks/instructions.py --attributes     # and with every-event attributes
    .venv/bin/python benchmarks/instructions.py --metrics        # and with the metrics on
    .venv/bin/python benchmarks/instructions.py --plan           # and with a tracking plan

Times on a shared 2-core machine move by 20 % from one round to the next; instruction
counts do not depend on the load (callgrind counts them, it does not time them). Each
shape is run twice in a fresh interpreter under ``valgrind --tool=callgrind
--separate-threads=yes``, with ``--calls`` and ``2 * --calls`` log calls; the difference
of the calling thread's counts divided by ``--calls`` is the cost of one call, free of
start-up. Both trees run with this interpreter (so the same installed packages): the
tree is put first on ``PYTHONPATH``.

Shapes: a ``NullHandler`` call with the tracked call's ``extra=`` (the floor), the
tracked event (ids and attribute values change on every call), and an untagged call
with no ``extra=`` at all against its own ``NullHandler`` floor. The sender's thread
is not counted: it is another thread (its cost shows in ``run.py``'s throughput).
With ``--spool``, also both calls with ``spool_dir=`` (each written to the journal; the
page faults of a new segment's first touch are the kernel's, not counted here:
``journal_bench.py`` times them).

Needs valgrind (Debian: ``apt-get install valgrind``); a run takes a few minutes.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

#: The program each count runs: configure, then make N calls of one shape, then leave
#: at once (no exit delivery: only the calls are measured).
PROGRAM = r"""
import logging, os, sys
n, shape = int(sys.argv[1]), sys.argv[2]
log = logging.getLogger("bench")
log.propagate = False
log.setLevel(logging.INFO)
if shape.startswith("null"):
    log.addHandler(logging.NullHandler())
else:
    from bucket_logging import BucketHandler
    options = {}
    if os.environ.get("BENCH_METRICS"):  # --metrics: Prometheus and OpenTelemetry observers
        import bucket_logging.metrics
        from opentelemetry.sdk.metrics import MeterProvider
        bucket_logging.metrics.use_prometheus()
        bucket_logging.metrics.use_opentelemetry(MeterProvider())
    if os.environ.get("BENCH_BEFORE_SEND"):  # --before-send: a hook that keeps every item
        options["before_send"] = lambda item: item
    if os.environ.get("BENCH_ATTRIBUTES"):  # --attributes: two attributes on every event
        options["attributes"] = {"environment": "prod", "release": "1.2.3"}
    if os.environ.get("BENCH_PLAN"):  # --plan: the tracked event planned, its n an integer >= 0
        options["tracking_plan"] = os.environ["BENCH_PLAN"]
    if shape.startswith("spool"):  # --spool: every call is written to the spool's journal
        options["spool_dir"] = os.path.abspath("spool")
    log.addHandler(BucketHandler(
        "bench-tracking-key", base_url="http://127.0.0.1:9", flush_interval=3600,
        max_queue_items=10**7, max_queue_bytes=10**9, **options))
if shape.endswith("tracked"):
    for i in range(n):
        log.info("sent %s", i, extra={
            "bucket_event": "Sent message", "user_id": i, "bucket_attributes": {"n": i}})
else:
    for i in range(n):
        log.info("clicked %s", i)
os._exit(0)
"""

SHAPES = ("null_tracked", "bucket_tracked", "null_untagged", "bucket_untagged")
SPOOL_SHAPES = ("spool_tracked", "spool_untagged")


def count(tree: Path, shape: str, calls: int, program: Path, hook: str = "") -> int:
    """The calling thread's instruction count for ``calls`` calls of ``shape`` (``hook``:
    an environment variable the program reads, ``NAME`` or ``NAME=VALUE``:
    ``BENCH_BEFORE_SEND``, ``BENCH_ATTRIBUTES``, ``BENCH_METRICS`` or ``BENCH_PLAN=path``)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cg.out"
        # a fixed hash seed: dict and set layouts (so instruction paths) repeat
        env = dict(os.environ, PYTHONPATH=str(tree), PYTHONHASHSEED="0")
        if hook:  # NAME, or NAME=VALUE
            name, _, value = hook.partition("=")
            env[name] = value or "1"
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--separate-threads=yes",
                f"--callgrind-out-file={out}",
                sys.executable,
                str(program),
                str(calls),
                shape,
            ],
            env=env,
            cwd=tmp,
            check=True,
            capture_output=True,
        )
        text = (Path(tmp) / "cg.out-01").read_text()
    match = re.search(r"^(?:summary|totals): (\d+)", text, re.MULTILINE)
    if match is None:
        raise RuntimeError("callgrind wrote no total")
    return int(match.group(1))


def per_call(tree: Path, shape: str, calls: int, program: Path, hook: str = "") -> float:
    twice = count(tree, shape, 2 * calls, program, hook)
    return (twice - count(tree, shape, calls, program, hook)) / calls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", type=Path, help="another checkout to compare with")
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument(
        "--before-send",
        action="store_true",
        help="also this tree with a before_send hook that keeps every item",
    )
    parser.add_argument(
        "--attributes",
        action="store_true",
        help="also this tree with two every-event attributes (the attributes option)",
    )
    parser.add_argument(
        "--metrics",
        action="store_true",
        help="also this tree with bucket_logging.metrics' Prometheus and OpenTelemetry on",
    )
    parser.add_argument(
        "--plan",
        action="store_true",
        help="also this tree with a tracking plan that plans the tracked event (issue 28)",
    )
    parser.add_argument(
        "--spool", action="store_true", help="also the calls with spool_dir= (the journal)"
    )
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    trees: dict[str, tuple[Path, str]] = {"this tree": (ROOT, "")}
    if args.base is not None:
        trees = {"base": (args.base.resolve(), ""), **trees}
    if args.before_send:
        trees["+hook"] = (ROOT, "BENCH_BEFORE_SEND")
    if args.attributes:
        trees["+attrs"] = (ROOT, "BENCH_ATTRIBUTES")
    if args.metrics:
        trees["+metrics"] = (ROOT, "BENCH_METRICS")
    with tempfile.TemporaryDirectory() as tmp:
        program = Path(tmp) / "calls.py"
        program.write_text(PROGRAM)
        if args.plan:
            plan = Path(tmp) / "plan.yaml"
            plan.write_text(
                "events:\n  Sent message:\n    attributes:\n"
                "      n: {type: integer, minimum: 0}\n    required: [n]\n"
            )
            trees["+plan"] = (ROOT, f"BENCH_PLAN={plan}")
        print(f"instructions per call on the calling thread ({args.calls:,} calls a count)")
        print(f"{'tree':<10} {'shape':<16} {'instructions':>13} {'x floor':>8}")
        for name, (tree, hook) in trees.items():
            shapes = SHAPES + SPOOL_SHAPES if args.spool else SHAPES
            results = {shape: per_call(tree, shape, args.calls, program, hook) for shape in shapes}
            for shape in shapes:
                floor = results["null_" + shape.split("_", 1)[1]]
                ratio = results[shape] / floor
                print(f"{name:<10} {shape:<16} {results[shape]:>13,.0f} {ratio:>8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
