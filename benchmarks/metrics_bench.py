"""The log call's cost with the sender's metrics on, beside off, beside a NullHandler call.

    .venv/bin/python benchmarks/metrics_bench.py [--calls N] [--rounds R] [--multiprocess]

One process, one ``BucketHandler`` posting to the counting sink of ``_servers.py`` (a
child process). Three variants, interleaved and rotated round by round as
``run.py``'s cost section does (after each block, untimed, the items are flushed and
waited for on the server):

* ``NullHandler``: the tracked call's ``extra=`` on a ``logging.NullHandler`` (the floor);
* metrics off: the tracked call on the ``BucketHandler``;
* metrics on: the same call with ``bucket_logging.metrics.use_prometheus()`` and
  ``use_opentelemetry()`` reporting (the observers are in place while the block runs
  and while its items are delivered, so the sender's metric updates compete with the
  calling thread for the GIL, as they would in an application).

Prints µs per call (median over rounds) and the medians of per-round ratios. With
``--multiprocess`` prometheus_client runs in its multiprocess mode (a temporary
``PROMETHEUS_MULTIPROC_DIR``: every update writes to a memory-mapped file).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--multiprocess", action="store_true")
    args = parser.parse_args(argv)
    if args.multiprocess:  # before prometheus_client is imported
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="bench-prom-")

    import _calls
    from _servers import Servers
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from prometheus_client import CollectorRegistry
    from run import KEY, Config, Variant, measure, paired_ratio

    import bucket_logging.metrics
    from bucket_logging import BucketHandler
    from bucket_logging._runtime.state import state

    def logger(name: str, handler: logging.Handler) -> logging.Logger:
        log = logging.getLogger(name)
        log.handlers[:] = [handler]
        log.propagate = False
        log.setLevel(logging.INFO)
        return log

    # the observers, made once; a variant puts them in place for its block only
    bucket_logging.metrics.use_prometheus(None if args.multiprocess else CollectorRegistry())
    bucket_logging.metrics.use_opentelemetry(MeterProvider(metric_readers=[InMemoryMetricReader()]))
    observers = list(state.observers)
    state.observers.clear()

    cfg = Config(cost_calls=args.calls, cost_rounds=args.rounds)
    with Servers() as servers:
        handler = BucketHandler(KEY, base_url=servers.sink_url)
        bucket = logger("bench.metrics.bucket", handler)
        null = logger("bench.metrics.null", logging.NullHandler())
        sender = handler.sender
        tracked = _calls.stdlib_tracked(bucket)

        def with_metrics(n: int) -> int:
            state.observers[:] = observers
            return tracked(n)

        def flush_off() -> None:
            sender.flush(cfg.timeout)

        def flush_on() -> None:
            sender.flush(cfg.timeout)
            state.observers.clear()

        variants = [
            Variant("null", "NullHandler, tracked call's extra", _calls.stdlib_tracked(null)),
            Variant("off", "BucketHandler, tracked, metrics off", tracked, "sink", 1, flush_off),
            Variant("on", "BucketHandler, tracked, metrics on", with_metrics, "sink", 1, flush_on),
        ]
        load = os.getloadavg()
        samples = measure(variants, cfg.cost_calls, cfg.cost_rounds, servers, cfg)
        handler.close()
    print(
        f"log call cost, {cfg.cost_rounds} interleaved rounds x {cfg.cost_calls:,} calls"
        f"{' (prometheus multiprocess mode)' if args.multiprocess else ''}; "
        f"load average {load[0]:.2f} -> {os.getloadavg()[0]:.2f}"
    )
    for v in variants:
        print(f"  {v.label:<40} {statistics.median(samples[v.key]):6.2f} us/call")
    print(f"  metrics off / NullHandler: {paired_ratio(samples, 'off', 'null'):.3f}x")
    print(f"  metrics on  / NullHandler: {paired_ratio(samples, 'on', 'null'):.3f}x")
    print(f"  metrics on  / metrics off: {paired_ratio(samples, 'on', 'off'):.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
