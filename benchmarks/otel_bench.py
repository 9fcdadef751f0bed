"""The cost of BucketLogRecordProcessor.on_emit beside OpenTelemetry's BatchLogRecordProcessor.

    .venv/bin/python benchmarks/otel_bench.py [--calls N] [--rounds R]

Both processors run in one process on the same records: the SDK's
``BatchLogRecordProcessor`` with an exporter that does nothing (the floor of any
OpenTelemetry set-up: a deque append, a notify), and ``BucketLogRecordProcessor``
with its sender posting to a ``TrackingServer`` in a child process (``_servers.py``,
so that the server's parsing is not charged here). Measured per call, on the
calling thread, median of the rounds, interleaved:

* ``on_emit`` alone, on one prebuilt ``ReadWriteLogRecord`` (tagged: the everyday
  event; untagged: ten plain attributes, no ``bucket_*`` key, no rules);
* a whole log call through the Logs API (``logger.emit``) with either processor.

Prints a table and the ratios (Bucket / Batch). A measurement, not a test.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from time import perf_counter
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _servers import Servers
from opentelemetry.sdk._logs import LoggerProvider, ReadWriteLogRecord
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    LogRecordExporter,
    LogRecordExportResult,
)

from bucket_logging.otel import BucketLogRecordProcessor

TAGGED: dict[str, Any] = {
    "bucket_event": "Sent message",
    "user_id": "user-42",
    "bucket_attributes": {"plan": "pro", "seats": 3},
    "code.file.path": "/srv/app/chat.py",
    "code.function.name": "send",
    "code.line.number": 42,
}
UNTAGGED: dict[str, Any] = {f"attr{i}": f"value {i}" for i in range(7)} | {
    "code.file.path": "/srv/app/chat.py",
    "code.function.name": "send",
    "code.line.number": 42,
}


class NoOpExporter(LogRecordExporter):
    """Exports nothing, at once."""

    def export(self, batch: Any) -> LogRecordExportResult:
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def per_call(fn: Callable[[], None], calls: int) -> float:
    """Microseconds per call of ``fn`` over ``calls`` calls."""
    gc.collect()
    start = perf_counter()
    for _ in range(calls):
        fn()
    return (perf_counter() - start) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    servers = Servers()
    try:
        batch = BatchLogRecordProcessor(NoOpExporter(), max_queue_size=1 << 20)
        bucket = BucketLogRecordProcessor(
            "trBenchOtel", base_url=servers.tracking_url, max_queue_items=1 << 20
        )
        batch_provider = LoggerProvider(shutdown_on_exit=False)
        batch_provider.add_log_record_processor(batch)
        bucket_provider = LoggerProvider(shutdown_on_exit=False)
        bucket_provider.add_log_record_processor(bucket)
        batch_logger = batch_provider.get_logger("app.chat")
        bucket_logger = bucket_provider.get_logger("app.chat")

        def record(attributes: dict[str, Any]) -> ReadWriteLogRecord:
            from opentelemetry._logs import LogRecord

            return ReadWriteLogRecord(
                LogRecord(timestamp=1, body="sent message", attributes=attributes)
            )

        tagged, untagged = record(TAGGED), record(UNTAGGED)
        variants: dict[str, Callable[[], None]] = {
            "on_emit tagged: Batch(no-op)": lambda: batch.on_emit(tagged),
            "on_emit tagged: Bucket": lambda: bucket.on_emit(tagged),
            "on_emit untagged: Batch(no-op)": lambda: batch.on_emit(untagged),
            "on_emit untagged: Bucket": lambda: bucket.on_emit(untagged),
            "logger.emit tagged: Batch(no-op)": lambda: batch_logger.emit(
                body="sent message", attributes=TAGGED
            ),
            "logger.emit tagged: Bucket": lambda: bucket_logger.emit(
                body="sent message", attributes=TAGGED
            ),
            "logger.emit untagged: Batch(no-op)": lambda: batch_logger.emit(
                body="sent message", attributes=UNTAGGED
            ),
            "logger.emit untagged: Bucket": lambda: bucket_logger.emit(
                body="sent message", attributes=UNTAGGED
            ),
        }
        samples: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, fn in variants.items():
                samples[name].append(per_call(fn, args.calls))
            bucket.force_flush(60_000)
        width = max(map(len, variants))
        print(f"{'variant':<{width}}  µs/call (median of {args.rounds} x {args.calls})")
        medians = {name: statistics.median(values) for name, values in samples.items()}
        for name, value in medians.items():
            print(f"{name:<{width}}  {value:8.2f}")
        print()
        for what in ("on_emit tagged", "on_emit untagged", "logger.emit tagged",
                     "logger.emit untagged"):  # fmt: skip
            ratio = medians[f"{what}: Bucket"] / medians[f"{what}: Batch(no-op)"]
            print(f"{what}: Bucket / Batch(no-op) = {ratio:.2f}")
        delivered = bucket.force_flush(60_000)
        print(f"\nevery tracked item delivered: {delivered}")
        batch_provider.shutdown()
        bucket_provider.shutdown()
    finally:
        servers.close()


if __name__ == "__main__":
    main()
