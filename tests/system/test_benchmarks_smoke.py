"""The benchmark runs end to end in its smoke mode (tiny counts; not a timed test)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_benchmark_smoke_run_completes_and_prints_its_tables(tmp_path: Path) -> None:
    out = tmp_path / "smoke.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--smoke", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        # a hang guard, below pytest's 120 s: about 5 s alone, over 60 s beside the other
        # test workers on a 2-core machine at load 15
        timeout=110,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = proc.stdout
    for title in (
        "1. Cost on the calling thread",
        "2. End-to-end throughput",
        "3. Peak memory while the endpoint is down",
        "4a. Scaling with threads",
        "4b. Scaling with rules",
        "Goals (issue 6)",
    ):
        assert title in text, f"{title!r} missing from:\n{text}"
    assert "NullHandler, tracked call's extra" in text
    assert "BucketHandler, tracked" in text
    assert "arrived within" not in proc.stderr, proc.stderr  # every item was delivered

    results = json.loads(out.read_text())
    assert results["smoke"] is True
    cost = {row["key"]: row for row in results["cost"]["rows"]}
    assert cost["bucket_tracked"]["us_per_call"] > 0
    assert cost["bucket_tracked"]["x_baseline"] is not None
    assert all(results["throughput"]["rows"][0]["complete"])
    assert results["memory"]["bound_holds"] is True
    assert {g["name"] for g in results["goals"]} >= {
        "tracked stdlib call vs NullHandler",
        "untagged stdlib call vs NullHandler",
    }


def test_ship_benchmark_smoke_run_compares_ship_with_the_handler() -> None:
    bench = str(ROOT / "benchmarks" / "ship_bench.py")
    proc = subprocess.run(
        [sys.executable, bench, "--lines", "2000", "--rounds", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for text in ("bucket-logging ship FILE", "ship --state", "BucketHandler", "ship / handler"):
        assert text in proc.stdout
