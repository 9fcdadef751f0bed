"""benchmarks/relay_bench.py runs end to end (a tiny smoke run; the figures are in
benchmarks/README.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_relay_benchmark_smoke_run_has_every_path() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "relay_bench.py"),
            "--lines",
            "2000",
            "--rounds",
            "1",
            "--batch",
            "500",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for text in (
        "bucket-logging ship FILE",
        "BucketHandler in process",
        "relay NDJSON, 1 worker(s)",
        "relay NDJSON, 2 worker(s)",
        "relay OTLP protobuf, 1 worker(s)",
        "relay OTLP protobuf, 2 worker(s)",
    ):
        assert text in proc.stdout
