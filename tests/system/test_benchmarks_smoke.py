"""Every benchmark of benchmarks/ runs end to end with tiny counts, so that none rots
unseen (not timed tests: the figures are in benchmarks/README.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def bench(script: str, *args: str, timeout: float = 110) -> str:
    """Run ``benchmarks/<script>`` with ``args``; its standard output, once it exited 0.

    ``timeout`` is a hang guard below pytest's 120 s: a smoke run takes seconds alone,
    and over a minute beside the other test workers on a 2-core machine at load 15.
    """
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_benchmark_smoke_run_completes_and_prints_its_tables(tmp_path: Path) -> None:
    out = tmp_path / "smoke.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--smoke", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,  # (see bench)
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
    out = bench("ship_bench.py", "--lines", "2000", "--rounds", "1")
    for text in ("bucket-logging ship FILE", "ship --state", "BucketHandler", "ship / handler"):
        assert text in out


def test_relay_benchmark_smoke_run_has_every_path() -> None:
    out = bench("relay_bench.py", "--lines", "2000", "--rounds", "1", "--batch", "500")
    for text in (
        "bucket-logging ship FILE",
        "BucketHandler in process",
        "relay NDJSON, 1 worker(s)",
        "relay NDJSON, 2 worker(s)",
        "relay OTLP protobuf, 1 worker(s)",
        "relay OTLP protobuf, 2 worker(s)",
    ):
        assert text in out


def test_metrics_benchmark_completes_with_its_three_rows() -> None:
    pytest.importorskip("prometheus_client")
    assert "metrics on  / metrics off: " in bench(
        "metrics_bench.py", "--calls", "200", "--rounds", "1"
    )


def test_otel_benchmark_completes_and_delivers_every_item() -> None:
    out = bench("otel_bench.py", "--calls", "200", "--rounds", "1")
    assert "on_emit tagged: Bucket / Batch(no-op) = " in out
    assert "every tracked item delivered: True" in out


def test_journal_benchmark_measures_the_cost_and_a_recovery() -> None:
    out = bench("journal_bench.py", "--calls", "200", "--rounds", "1", "--recover", "500")
    assert "BucketHandler + spool" in out
    assert "A dead journal of 500 items" in out


def test_journal_parts_benchmark_runs_every_variant() -> None:
    out = bench("journal_parts.py", "--calls", "100", "--rounds", "3")
    for variant in ("full", "no-journal", "call-only", "lock-only", "no-write", "no-prefault"):
        assert f"== {variant} (" in out
    assert out.count("BucketHandler + spool") == 6


def test_plan_benchmark_measures_the_cost_and_plan_status() -> None:
    out = bench("plan_bench.py", "--calls", "200", "--rounds", "2", "--files", "5")
    assert "tracked+plan(strip)" in out
    assert "plan status: 5 files" in out


def test_spool_benchmark_runs_its_shapes() -> None:
    out = bench("spool_bench.py", "--items", "500", "--rounds", "1", "--seconds", "0.5")
    for text in ("throughput, end to end", "replay of a spooled backlog", "steady rate"):
        assert text in out
