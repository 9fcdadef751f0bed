"""benchmarks/otel_bench.py runs end to end with tiny counts (not a timed test)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_otel_benchmark_completes_and_delivers_every_item() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "otel_bench.py"),
            "--calls",
            "200",
            "--rounds",
            "1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "on_emit tagged: Bucket / Batch(no-op) = " in proc.stdout
    assert "every tracked item delivered: True" in proc.stdout
