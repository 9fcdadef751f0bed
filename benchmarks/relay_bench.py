"""Throughput of ``bucket-logging relay`` beside ``ship`` and the in-process handler.

    .venv/bin/python benchmarks/relay_bench.py [--lines 200000] [--rounds 3] [--batch 1000]

Every path delivers the same ``--lines`` tagged events (``bucket_event``, a user id,
a company id and two attributes) to a local :class:`~bucket_logging.TrackingServer`
in a child process, in one run:

* **relay NDJSON** (1 and 2 workers): ``bucket-logging relay`` as a subprocess, sent
  the lines of ``ship_bench``'s JSON-lines file as NDJSON batches of ``--batch``
  lines by four client threads (as several Vector or Fluent Bit outputs would),
  timed from the first request until the tracking server holds every item (the
  relay is a running service: its start-up is not counted);
* **relay OTLP protobuf** (1 and 2 workers): the same events as OpenTelemetry log
  records (attributes ``bucket_event``, ``user_id``, ``company_id``,
  ``bucket_attributes`` as a map), ``ExportLogsServiceRequest`` bodies of ``--batch``
  records posted to ``/v1/logs``, timed the same way;
* **ship** and **handler**: as in ``ship_bench.py`` (ship's interpreter start-up
  included).

Items per second, medians over the rounds. The client threads, the relay's workers
and the tracking server share the machine's cores: on a small machine two workers
gain less than on a large one.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from ship_bench import KEY, fields, run_handler, run_ship, write_file
from spool_bench import Server  # the child-process TrackingServer (this directory)

CLIENTS = 4

#: CPU seconds (user + system) each relay run took, its workers included, by label
#: (``--metrics-ab``): less sensitive to the machine's load than wall time.
CPU: dict[str, list[float]] = {}
PROTOBUF = "application/x-protobuf"


def ndjson_bodies(path: Path, batch: int) -> list[bytes]:
    """The file's lines in NDJSON bodies of ``batch`` lines."""
    lines = path.read_bytes().splitlines(keepends=True)
    return [b"".join(lines[at : at + batch]) for at in range(0, len(lines), batch)]


def otlp_bodies(lines: int, batch: int) -> list[bytes]:
    """The same events as OTLP log records, in protobuf bodies of ``batch`` records."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
        ExportLogsServiceRequest,
    )
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue, KeyValueList
    from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs

    def text(key: str, value: str) -> KeyValue:
        return KeyValue(key=key, value=AnyValue(string_value=value))

    base = 1_767_323_045_000_000_000
    bodies = []
    for start in range(0, lines, batch):
        records = []
        for i in range(start, min(lines, start + batch)):
            extra = fields(i)
            attributes = KeyValueList(
                values=[
                    text("position", "popover"),
                    KeyValue(key="version", value=AnyValue(int_value=3)),
                ]
            )
            records.append(
                LogRecord(
                    time_unix_nano=base + i * 1_000_000,
                    body=AnyValue(string_value="message sent"),
                    attributes=[
                        text("bucket_event", str(extra["bucket_event"])),
                        text("user_id", str(extra["user_id"])),
                        text("company_id", str(extra["company_id"])),
                        KeyValue(key="bucket_attributes", value=AnyValue(kvlist_value=attributes)),
                    ],
                )
            )
        request = ExportLogsServiceRequest(
            resource_logs=[ResourceLogs(scope_logs=[ScopeLogs(log_records=records)])]
        )
        bodies.append(request.SerializeToString())
    return bodies


class Relay:
    """``bucket-logging relay`` as a subprocess."""

    def __init__(self, server: Server, workers: int, *extra: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BUCKET_")}
        env.update(BUCKET_TRACKING_KEY=KEY, BUCKET_TRACKING_URL=server.url)
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "bucket_logging", "relay", "--port", "0"),
                *("--workers", str(workers), "--max-pending", "1000000"),
                *extra,
            ],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stderr is not None
        said = ""
        while "relay on http://" not in said:  # (a warning may come before the banner)
            line = self.proc.stderr.readline()
            if not line:
                self.proc.kill()
                raise SystemExit(f"the relay did not start: {said}")
            said += line
        self.url = said.split("relay on ", 1)[1].split()[0]

    def close(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=120)
        if self.proc.returncode != 0:
            raise SystemExit(f"the relay lost items: {err[-2000:]}")


def post_all(url: str, bodies: list[bytes], content_type: str) -> None:
    """Post every body from ``CLIENTS`` threads, each on its own connections."""
    todo = list(reversed(bodies))
    lock = threading.Lock()
    failures: list[str] = []

    def client() -> None:
        with httpx.Client(timeout=120, limits=httpx.Limits(max_keepalive_connections=0)) as http:
            while True:
                with lock:
                    if not todo:
                        return
                    body = todo.pop()
                while True:
                    answer = http.post(url, content=body, headers={"Content-Type": content_type})
                    if answer.status_code == 200:
                        break
                    if answer.status_code != 503:
                        failures.append(f"{answer.status_code} {answer.text[:200]}")
                        return
                    time.sleep(0.05)  # a full queue: the relay asks to come back

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise SystemExit(f"the relay refused a batch: {failures[0]}")


def run_relay(
    server: Server,
    workers: int,
    path: str,
    bodies: list[bytes],
    *,
    content_type: str,
    lines: int,
    extra: tuple[str, ...] = (),
    label: str = "",
) -> float:
    """Items/s through a relay of ``workers`` workers (``extra``: more of its options);
    with a ``label``, the relay's CPU seconds are kept in :data:`CPU`."""
    server.ask("clear")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    relay = Relay(server, workers, *extra)
    try:
        post_all(relay.url + "/", [b'{"warm": 1}'] * CLIENTS, "application/json")  # connected
        started = time.perf_counter()
        post_all(relay.url + path, bodies, content_type)
        answer = server.ask(f"wait {lines} 300")
        took = time.perf_counter() - started
    finally:
        relay.close()  # waited for: its CPU time (and its workers') is counted now
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if label:
        used = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        CPU.setdefault(label, []).append(used)
    if not answer.startswith("ok"):
        raise SystemExit(f"the server has {answer}, expected {lines}")
    return lines / took


def main() -> None:
    """Run the rounds and print the table."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument(
        "--metrics-ab",
        action="store_true",
        help="only the relay (NDJSON, 1 and 2 workers) with and without --no-metrics, "
        "interleaved; prints the median of per-round ratios",
    )
    parser.add_argument(
        "--spool",
        action="store_true",
        help="only NDJSON through one worker: without a spool, with --spool-dir (a fresh "
        "one each run), and with --spool-dir --fsync",
    )
    args = parser.parse_args()
    server = Server()
    results: dict[str, list[float]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp:
            path = Path(tmp, "app.log")
            size = write_file(path, args.lines)
            ndjson = ndjson_bodies(path, args.batch)
            otlp = otlp_bodies(args.lines, args.batch)
            lines = args.lines
            runs: list[tuple[str, Callable[[], float]]] = [
                ("bucket-logging ship FILE (a subprocess)", lambda: run_ship(server, path, lines)),
                ("BucketHandler in process, until flushed", lambda: run_handler(server, lines)),
            ]
            if args.metrics_ab:
                runs = []
                for workers in (1, 2):
                    for label, extra in (("metrics on", ()), ("--no-metrics", ("--no-metrics",))):
                        runs.append(
                            (
                                f"relay NDJSON, {workers} worker(s), {label}",
                                lambda w=workers, e=extra: run_relay(  # type: ignore[misc]
                                    server,
                                    w,
                                    "/",
                                    ndjson,
                                    content_type="application/x-ndjson",
                                    lines=lines,
                                    extra=e,
                                    label=f"{w} {e}",
                                ),
                            )
                        )
            for workers in () if args.metrics_ab else (1, 2):
                runs.append(
                    (
                        f"relay NDJSON, {workers} worker(s)",
                        lambda w=workers: run_relay(  # type: ignore[misc]
                            server,
                            w,
                            "/",
                            ndjson,
                            content_type="application/x-ndjson",
                            lines=args.lines,
                        ),
                    )
                )
                runs.append(
                    (
                        f"relay OTLP protobuf, {workers} worker(s)",
                        lambda w=workers: run_relay(  # type: ignore[misc]
                            server, w, "/v1/logs", otlp, content_type=PROTOBUF, lines=args.lines
                        ),
                    )
                )
            if args.spool:
                runs = []
                for label, options in (
                    ("relay NDJSON, no spool", ()),
                    ("relay NDJSON, --spool-dir", ("--spool-dir",)),
                    ("relay NDJSON, --spool-dir --fsync", ("--spool-dir", "--fsync")),
                ):

                    def spooled(options: tuple[str, ...] = options) -> float:
                        with tempfile.TemporaryDirectory(prefix="relay-spool-") as spool:
                            extra = ("--spool-dir", spool, *options[1:]) if options else ()
                            return run_relay(
                                server,
                                1,
                                "/",
                                ndjson,
                                content_type="application/x-ndjson",
                                lines=lines,
                                extra=extra,
                            )

                    runs.append((label, spooled))
            for round_ in range(args.rounds):
                order = runs if round_ % 2 == 0 else runs[::-1]  # interleaved, alternated
                for name, run in order:
                    results.setdefault(name, []).append(run())
    finally:
        server.close()
    print(
        f"relay_bench: {args.lines:,} tagged events (~{size:.0f} B as a JSON line), batches "
        f"of {args.batch:,}, {CLIENTS} client threads, {args.rounds} round(s) (medians), "
        f"TrackingServer in a child process, {os.cpu_count()} CPU(s), "
        f"Python {sys.version.split()[0]}"
    )
    print(f"{'':44}{'items/s':>12}")
    for name, values in results.items():
        print(f"{name:44}{statistics.median(values):>12,.0f}")
    for name, values in results.items():
        print(f"  {name} rounds: {', '.join(f'{x:,.0f}' for x in values)}")
    if args.metrics_ab:
        for workers in (1, 2):
            on = results[f"relay NDJSON, {workers} worker(s), metrics on"]
            off = results[f"relay NDJSON, {workers} worker(s), --no-metrics"]
            ratio = statistics.median(a / b for a, b in zip(on, off, strict=True))
            print(f"metrics on / off, {workers} worker(s): {ratio:.3f}x (median of rounds)")
            cpu_on, cpu_off = CPU[f"{workers} ()"], CPU[f"{workers} ('--no-metrics',)"]
            cpu = statistics.median(a / b for a, b in zip(cpu_on, cpu_off, strict=True))
            print(
                f"  the relay's CPU time per item, on / off: {cpu:.3f}x "
                f"({statistics.median(cpu_on) / lines * 1e6:.1f} vs "
                f"{statistics.median(cpu_off) / lines * 1e6:.1f} us/item)"
            )
    if hasattr(os, "getloadavg"):
        print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
