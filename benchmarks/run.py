#!/usr/bin/env python3
"""bucket_logging's benchmarks, side by side with posthog-python and segment-analytics-python.

    python3 dev.py bench              # the full run (a few minutes)
    python3 dev.py bench --smoke      # tiny counts, a few seconds (CI)
    python3 dev.py bench --profile    # cProfile of the tracked call path instead

Sections (``--sections cost,throughput,memory,scaling`` runs a subset):

1. cost: time on the calling thread per call, the median of several interleaved
   rounds, for a ``NullHandler`` call (the floor), a tracked and an untagged
   ``BucketHandler`` call, structlog with and without ``BucketProcessor``, posthog's
   ``capture`` and segment's ``track``;
2. throughput: items/s from the first call until the server accepted the last item;
3. memory: peak RSS growth while the endpoint is down (in a fresh process);
4. scaling: cost at 1, 4 and 8 logging threads, and with 0, 10 and 100 rules.

All servers run in one child process (see ``_servers.py``); every library posts to
127.0.0.1. Results are printed as tables, followed by the goals of issue 6 marked met
or not met, and written as JSON to ``benchmarks/results/latest.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import importlib.metadata
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _calls  # noqa: E402
from _calls import Run  # noqa: E402
from _servers import Servers  # noqa: E402
from _table import print_table  # noqa: E402

KEY = "bench-tracking-key"
SECTIONS = ("cost", "throughput", "memory", "scaling")


@dataclass(frozen=True)
class Config:
    cost_calls: int = 20_000
    cost_rounds: int = 7
    varying_calls: int = 50_000  # consecutive calls while the sender works
    throughput_items: int = 100_000
    throughput_rounds: int = 3
    memory_items: int = 1_000_000
    scaling_calls: int = 40_000  # divisible by 1, 4 and 8
    scaling_rounds: int = 5
    rules_calls: int = 20_000
    rules_rounds: int = 5
    warmup_calls: int = 1_000
    timeout: float = 120.0
    # Where bucket_logging's items go: "sink", the same counting server the peers post
    # to (equal server work for every library on this shared machine), or "tracking",
    # the validating TrackingServer.
    bucket_server: str = "sink"


SMOKE = Config(
    cost_calls=200,
    cost_rounds=2,
    varying_calls=300,
    throughput_items=400,
    throughput_rounds=1,
    memory_items=3_000,
    scaling_calls=400,
    scaling_rounds=1,
    rules_calls=200,
    rules_rounds=1,
    warmup_calls=50,
    timeout=20.0,
)

# --------------------------------------------------------------------------- variants


@dataclass
class Variant:
    """One thing to measure: a timed loop, and where its items go (to wait for them)."""

    key: str
    label: str
    run: Run
    server: str | None = None  # "tracking" or "sink": where its items are counted
    items_per_call: int = 0
    flush: Callable[[], object] | None = None
    baseline: str | None = None  # the key of the variant it is compared with


def measure(
    variants: list[Variant], calls: int, rounds: int, servers: Servers, cfg: Config
) -> dict[str, list[float]]:
    """µs per call of each variant in each round; variants interleaved, order rotated.

    Every round runs each variant once for ``calls`` calls; the order rotates and
    alternates direction from round to round, so slow phases of a noisy machine hit
    all variants alike. After each block (untimed) its items are flushed and waited
    for on the server, so no variant's background work spills into the next one.
    """
    samples: dict[str, list[float]] = {v.key: [] for v in variants}
    for v in variants:  # warm-up: caches, connections, sender threads
        v.run(cfg.warmup_calls)
        _settle(v, cfg.warmup_calls, servers, cfg)
    for r in range(rounds):
        shift = r % len(variants)
        order = variants[shift:] + variants[:shift]
        if r % 2:
            order.reverse()
        for v in order:
            gc.collect()
            ns = v.run(calls)
            samples[v.key].append(ns / calls / 1000)
            _settle(v, calls, servers, cfg)
    return samples


def _settle(v: Variant, calls: int, servers: Servers, cfg: Config) -> None:
    if v.server is None or not v.items_per_call:
        return
    if v.flush is not None:
        v.flush()
    servers.drain(v.server, calls * v.items_per_call, cfg.timeout)


def paired_ratio(samples: dict[str, list[float]], num: str, den: str) -> float | None:
    """The median over rounds of num/den measured in the same round."""
    a, b = samples.get(num), samples.get(den)
    if not a or not b:
        return None
    return statistics.median(x / y for x, y in zip(a, b, strict=False))


# --------------------------------------------------------------------------- set-up


class Bench:
    """Builds the loggers and clients once, against the servers' child process."""

    def __init__(self, servers: Servers, cfg: Config) -> None:
        import _frontends

        self.servers = servers
        self.cfg = cfg
        self.notes: list[str] = []
        self.fe = _frontends
        self.bucket_server = cfg.bucket_server
        url = servers.sink_url if cfg.bucket_server == "sink" else servers.tracking_url
        self.null_logger = _logger("bench.null", logging.NullHandler())
        self.handler: Any = None
        self.bucket_logger: logging.Logger | None = None
        self.sender: Any = None
        if _frontends.BucketHandler is None:
            self.notes.append("BucketHandler is not available: its rows are skipped")
        else:
            self.handler = _frontends.BucketHandler(KEY, base_url=url)
            self.bucket_logger = _logger("bench.bucket", self.handler)
            self.sender = _frontends.sender_of(self.handler, KEY, url)
        self.structlog_plain: Any = None
        self.structlog_bucket: Any = None
        self.structlog_typical: Any = None
        self.structlog_typical_bucket: Any = None
        try:
            import structlog
        except ImportError:  # pragma: no cover - a dependency of bucket_logging
            structlog = None
            self.notes.append("structlog is not installed: its rows are skipped")
        if structlog is not None:
            self.structlog_plain = _structlog_logger(structlog, None)
            self.structlog_typical = _structlog_logger(structlog, None, typical=True)
            if _frontends.BucketProcessor is None:
                self.notes.append("BucketProcessor is not available: its rows are skipped")
            else:
                processor = _frontends.BucketProcessor(KEY, base_url=url)
                self.structlog_bucket = _structlog_logger(structlog, processor)
                self.structlog_typical_bucket = _structlog_logger(
                    structlog, processor, typical=True
                )
        self.posthog = self._posthog()
        self.segment = self._segment()

    def _posthog(self) -> Any:
        try:
            from posthog import Posthog
        except ImportError:
            self.notes.append(
                "posthog is not installed (pip install posthog): its rows are skipped"
            )
            return None
        logging.getLogger("posthog").setLevel(logging.ERROR)
        return Posthog(
            "phc_benchmark",
            host=self.servers.sink_url,
            max_queue_size=2_000_000,
            sync_mode=False,
        )

    def _segment(self) -> Any:
        try:
            from segment.analytics import Client
        except ImportError:
            self.notes.append(
                "segment-analytics-python is not installed "
                "(pip install segment-analytics-python): its rows are skipped"
            )
            return None
        logging.getLogger("segment").setLevel(logging.ERROR)
        return Client(
            "benchmark-write-key",
            host=self.servers.sink_url,
            max_queue_size=2_000_000,
            sync_mode=False,
        )

    def flush_bucket(self) -> None:
        self.sender.flush(self.cfg.timeout)

    def bucket_tracked(self, key: str = "bucket_tracked", label: str = "") -> Variant | None:
        if self.bucket_logger is None:
            return None
        return Variant(
            key,
            label or "BucketHandler, tracked",
            _calls.stdlib_tracked(self.bucket_logger),
            self.bucket_server,
            1,
            self.flush_bucket,
            "null_tracked",
        )

    def posthog_variant(self) -> Variant | None:
        if self.posthog is None:
            return None
        return Variant(
            "posthog",
            "posthog Client.capture",
            _calls.posthog_capture(self.posthog),
            "sink",
            1,
            lambda: self.posthog.flush(self.cfg.timeout),
            "null_tracked",
        )

    def segment_variant(self) -> Variant | None:
        if self.segment is None:
            return None
        return Variant(
            "segment",
            "segment Client.track",
            _calls.segment_track(self.segment),
            "sink",
            1,
            self.segment.flush,
            "null_tracked",
        )

    def close(self) -> None:
        if self.sender is not None:
            self.sender.flush(5)
        if self.posthog is not None:
            self.posthog.shutdown()
        if self.segment is not None:
            self.segment.shutdown()


def _logger(name: str, handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def _render(_logger: Any, _method: str, event_dict: dict[str, Any]) -> str:
    """A renderer that costs next to nothing: the event name as the line."""
    return str(event_dict.get("event", ""))


def _structlog_logger(structlog: Any, processor: Any, typical: bool = False) -> Any:
    """A structlog logger writing nowhere (``ReturnLogger``).

    The minimal chain is the processor (if any) and a renderer that costs next to
    nothing, so the processor's own cost shows in full. The typical chain is what
    an application runs: context, level, an ISO timestamp, the processor, JSON.
    """
    chain: list[Any] = []
    if typical:
        chain += [
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
        ]
    if processor is not None:
        chain.append(processor)
    chain.append(structlog.processors.JSONRenderer() if typical else _render)
    return structlog.wrap_logger(
        structlog.testing.ReturnLogger(),
        processors=chain,
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
    )


# --------------------------------------------------------------------------- sections


def cost_rows(variants: list[Variant], samples: dict[str, list[float]]) -> list[dict[str, Any]]:
    """One row per variant: medians, ranges and paired ratios of its rounds."""
    rows = []
    for v in variants:
        s = samples[v.key]
        rows.append(
            {
                "key": v.key,
                "label": v.label,
                "us_per_call": statistics.median(s),
                "min": min(s),
                "max": max(s),
                "rounds": s,
                "baseline": v.baseline,
                "x_baseline": paired_ratio(samples, v.key, v.baseline) if v.baseline else None,
                "posthog_over_this": paired_ratio(samples, "posthog", v.key),
                "segment_over_this": paired_ratio(samples, "segment", v.key),
            }
        )
    return rows


def section_cost(b: Bench) -> dict[str, Any]:
    cfg = b.cfg
    variants: list[Variant] = [
        Variant(
            "null_tracked",
            "NullHandler, tracked call's extra",
            _calls.stdlib_tracked(b.null_logger),
        ),
        Variant(
            "null_untagged",
            "NullHandler, untagged call's extra",
            _calls.stdlib_untagged(b.null_logger),
        ),
    ]
    tracked = b.bucket_tracked()
    if tracked is not None and b.bucket_logger is not None:
        variants.append(tracked)
        variants.append(
            Variant(
                "bucket_untagged",
                "BucketHandler, untagged",
                _calls.stdlib_untagged(b.bucket_logger),
                baseline="null_untagged",
            )
        )
    # (key, label, logger, call factory, tracked, baseline key)
    structlog_rows: list[tuple[str, str, Any, Callable[[Any], Run], bool, str | None]] = [
        ("structlog_plain", "structlog minimal, tagged", b.structlog_plain,
         _calls.structlog_tracked, False, None),
        ("structlog_bucket", "structlog minimal + BucketProcessor, tagged", b.structlog_bucket,
         _calls.structlog_tracked, True, "structlog_plain"),
        ("structlog_plain_untagged", "structlog minimal, untagged", b.structlog_plain,
         _calls.structlog_untagged, False, None),
        ("structlog_bucket_untagged", "structlog minimal + BucketProcessor, untagged",
         b.structlog_bucket, _calls.structlog_untagged, False, "structlog_plain_untagged"),
        ("structlog_typical", "structlog typical, tagged", b.structlog_typical,
         _calls.structlog_tracked, False, None),
        ("structlog_typical_bucket", "structlog typical + BucketProcessor, tagged",
         b.structlog_typical_bucket, _calls.structlog_tracked, True, "structlog_typical"),
    ]  # fmt: skip
    for key, label, log, factory, ships, baseline in structlog_rows:
        if log is None:
            continue
        if ships:
            variants.append(
                Variant(key, label, factory(log), b.bucket_server, 1, b.flush_bucket, baseline)
            )
        else:
            variants.append(Variant(key, label, factory(log), baseline=baseline))
    for peer in (b.posthog_variant(), b.segment_variant()):
        if peer is not None:
            variants.append(peer)

    samples = measure(variants, cfg.cost_calls, cfg.cost_rounds, b.servers, cfg)
    rows = cost_rows(variants, samples)
    table = [
        [
            r["label"],
            f"{r['us_per_call']:.2f}",
            f"{r['min']:.2f}-{r['max']:.2f}",
            _ratio(r["x_baseline"]),
            _ratio(r["posthog_over_this"]),
            _ratio(r["segment_over_this"]),
        ]
        for r in rows
    ]
    print_table(
        f"1. Cost on the calling thread (median of {cfg.cost_rounds} interleaved rounds "
        f"x {cfg.cost_calls:,} calls)",
        ["variant", "us/call", "min-max", "x baseline", "posthog/this", "segment/this"],
        table,
        "baseline: NullHandler with the same extra= for stdlib, the same structlog chain "
        "without the processor for structlog, the NullHandler tracked call for the peers.\n"
        "structlog's minimal chain: [processor,] a renderer returning the event text; "
        "typical: merge_contextvars, add_log_level, TimeStamper(iso), [processor,] "
        "JSONRenderer; both into a ReturnLogger.\n"
        "ratios are medians of per-round ratios; posthog/this = how many times "
        "cheaper this call is than posthog's capture.",
    )
    varying = section_cost_varying(b)
    return {
        "calls": cfg.cost_calls,
        "rounds": cfg.cost_rounds,
        "rows": rows + varying,
    }


def section_cost_varying(b: Bench) -> list[dict[str, Any]]:
    """The shapes users have: ids and values that change on every call, and plain calls."""
    cfg = b.cfg
    if b.bucket_logger is None:
        return []
    variants = [
        Variant(
            "null_varying",
            "NullHandler, tracked extra, id and value vary",
            _calls.stdlib_tracked_varying(b.null_logger),
        ),
        Variant(
            "bucket_varying",
            "BucketHandler, tracked, id and value vary",
            _calls.stdlib_tracked_varying(b.bucket_logger),
            b.bucket_server,
            1,
            b.flush_bucket,
            "null_varying",
        ),
        Variant("null_plain", "NullHandler, no extra", _calls.stdlib_plain(b.null_logger)),
        Variant(
            "bucket_plain",
            "BucketHandler, no extra (untagged)",
            _calls.stdlib_plain(b.bucket_logger),
            baseline="null_plain",
        ),
    ]
    samples = measure(variants, cfg.varying_calls, cfg.cost_rounds, b.servers, cfg)
    rows = cost_rows(variants, samples)
    print_table(
        f"1b. Cost as applications call it (median of {cfg.cost_rounds} interleaved rounds "
        f"x {cfg.varying_calls:,} consecutive calls while the sender works)",
        ["variant", "us/call", "min-max", "x baseline"],
        [
            [
                r["label"],
                f"{r['us_per_call']:.2f}",
                f"{r['min']:.2f}-{r['max']:.2f}",
                _ratio(r["x_baseline"]),
            ]
            for r in rows
        ],
        "tracked: extra={bucket_event, user_id=i, bucket_attributes={'n': i}}; "
        "no extra: log.info('clicked %s', i).",
    )
    return rows


def section_throughput(b: Bench) -> dict[str, Any]:
    cfg = b.cfg
    n = cfg.throughput_items
    variants = [
        v
        for v in (
            b.bucket_tracked("bucket", "bucket_logging BucketHandler"),
            b.posthog_variant(),
            b.segment_variant(),
        )
        if v is not None
    ]
    results: dict[str, dict[str, Any]] = {
        v.key: {"label": v.label, "items_per_s": [], "calls_s": [], "total_s": [], "complete": []}
        for v in variants
    }
    for r in range(cfg.throughput_rounds):
        shift = r % max(1, len(variants))
        for v in variants[shift:] + variants[:shift]:
            assert v.server is not None and v.flush is not None
            b.servers.clear(v.server)
            gc.collect()
            t0 = perf_counter()
            calls_ns = v.run(n)
            v.flush()
            ok, got = b.servers.wait(v.server, n, cfg.timeout)
            total = perf_counter() - t0
            b.servers.clear(v.server)
            res = results[v.key]
            res["items_per_s"].append(got / total)
            res["calls_s"].append(calls_ns / 1e9)
            res["total_s"].append(total)
            res["complete"].append(ok)
    rows = []
    for key, res in results.items():
        res["key"] = key
        res["median_items_per_s"] = statistics.median(res["items_per_s"])
        res["median_total_s"] = statistics.median(res["total_s"])
        res["median_calls_s"] = statistics.median(res["calls_s"])
        rows.append(res)
    bucket = results.get("bucket", {}).get("median_items_per_s")
    table = []
    for res in rows:
        ratio = bucket / res["median_items_per_s"] if bucket and res["key"] != "bucket" else None
        res["bucket_over_this"] = ratio
        table.append(
            [
                res["label"],
                f"{res['median_items_per_s']:,.0f}",
                f"{res['median_calls_s']:.2f}",
                f"{res['median_total_s']:.2f}",
                "yes" if all(res["complete"]) else "NO",
                _ratio(ratio),
            ]
        )
    print_table(
        f"2. End-to-end throughput, {n:,} items (median of {cfg.throughput_rounds} rounds)",
        ["library", "items/s", "calls done (s)", "all accepted (s)", "complete", "bucket/this"],
        table,
        "from the first call until the server accepted the last item (the library's "
        "flush() is called after the last call, as a script would).",
    )
    return {"items": n, "rounds": cfg.throughput_rounds, "rows": rows}


def section_memory(b: Bench) -> dict[str, Any]:
    cfg = b.cfg
    n = cfg.memory_items
    proc = subprocess.run(
        [sys.executable, str(HERE / "_memory.py"), str(n)],
        capture_output=True,
        text=True,
        timeout=max(600.0, cfg.timeout),
        check=False,
    )
    lines = proc.stdout.strip().splitlines()
    try:
        res: dict[str, Any] = json.loads(lines[-1])
    except (IndexError, ValueError):
        res = {"error": f"exit {proc.returncode}: {proc.stderr.strip()[-500:]}"}
    if "error" in res:
        print(f"\n3. Peak memory while the endpoint is down: {res['error']}")
        return res
    held = res["max_queue_items"] + res["in_flight_max"]
    res["bound_mb"] = 100.0
    res["queue_capped"] = res["queue_items"] <= res["max_queue_items"]
    res["bound_holds"] = res["queue_capped"] and res["peak_growth_mb"] <= res["bound_mb"]
    dropped = sum(res["dropped"].values())
    table = [
        ["items logged", f"{n:,} (after {res['warmup']:,} warm-up calls)"],
        ["cost per call while down (us)", f"{res['us_per_call']:.2f}"],
        ["accepted into the queue", f"{res['accepted']:,}"],
        ["dropped (counted)", f"{dropped:,} {res['dropped']}"],
        [
            "held at the end: queue / max_queue_items",
            f"{res['queue_items']:,} / {res['max_queue_items']:,}",
        ],
        ["pending at the end (queued + in flight)", f"{res['pending']:,} (at most {held:,})"],
        ["queue bytes / max_queue_bytes", f"{res['queue_bytes']:,} / {res['max_queue_bytes']:,}"],
        ["RSS after the warm-up (MB)", f"{res['baseline_rss_mb']:.1f}"],
        [f"peak RSS (MB, {res['peak_source']})", f"{res['peak_rss_mb']:.1f}"],
        ["RSS at the end (MB)", f"{res['final_rss_mb']:.1f}"],
        ["peak RSS growth (MB)", f"{res['peak_growth_mb']:.1f} (bound {res['bound_mb']:.0f})"],
        ["bound holds", "yes" if res["bound_holds"] else "NO"],
    ]
    print_table(
        f"3. Peak memory while the endpoint is down ({n:,} tracked calls, default options)",
        ["what", "value"],
        table,
        "a fresh process; the endpoint refuses connections; MB = 10^6 bytes; "
        "growth = peak RSS during the run minus RSS after a warm-up.",
    )
    return res


def section_scaling(b: Bench) -> dict[str, Any]:
    cfg = b.cfg
    out: dict[str, Any] = {}
    if b.bucket_logger is None or b.fe.BucketHandler is None:
        print("\n4. Scaling: skipped (BucketHandler is not available)")
        return out
    # threads
    variants: list[Variant] = []
    for t in (1, 4, 8):
        variants.append(
            Variant(
                f"null_t{t}",
                f"NullHandler, {t} thread(s)",
                _calls.threaded(_calls.stdlib_tracked(b.null_logger), t),
            )
        )
        variants.append(
            Variant(
                f"tracked_t{t}",
                f"BucketHandler tracked, {t} thread(s)",
                _calls.threaded(_calls.stdlib_tracked(b.bucket_logger), t),
                b.bucket_server,
                1,
                b.flush_bucket,
                f"null_t{t}",
            )
        )
        variants.append(
            Variant(
                f"untagged_t{t}",
                f"BucketHandler untagged, {t} thread(s)",
                _calls.threaded(_calls.stdlib_untagged(b.bucket_logger), t),
                baseline=f"null_t{t}",
            )
        )
    samples = measure(variants, cfg.scaling_calls, cfg.scaling_rounds, b.servers, cfg)
    rows = []
    for v in variants:
        rows.append(
            {
                "key": v.key,
                "label": v.label,
                "us_per_call": statistics.median(samples[v.key]),
                "rounds": samples[v.key],
                "x_baseline": paired_ratio(samples, v.key, v.baseline) if v.baseline else None,
            }
        )
    out["threads"] = rows
    print_table(
        f"4a. Scaling with threads ({cfg.scaling_calls:,} calls spread over the threads, "
        f"median of {cfg.scaling_rounds} rounds)",
        ["variant", "us/call", "x NullHandler"],
        [[r["label"], f"{r['us_per_call']:.2f}", _ratio(r["x_baseline"])] for r in rows],
        "us/call = wall time / all calls (the GIL serialises the calls: flat is ideal); "
        "the NullHandler row at the same thread count is the baseline.",
    )

    # rules
    variants = [
        Variant(
            "null_rules",
            "NullHandler, untagged call's extra",
            _calls.stdlib_untagged(b.null_logger),
        )
    ]
    for count in (0, 10, 100):
        rules = [
            {
                "match": f"bench rule {i} fired for %s" if i % 2 == 0 else f"bench rule {i} *",
                "event": f"Bench rule {i}",
            }
            for i in range(count)
        ]
        url = b.servers.sink_url if b.bucket_server == "sink" else b.servers.tracking_url
        handler = b.fe.BucketHandler(KEY, base_url=url, rules=rules or None)
        logger = _logger(f"bench.rules.{count}", handler)
        variants.append(
            Variant(
                f"rules{count}_miss",
                f"{count} rules, untagged, no match",
                _calls.stdlib_untagged(logger),
                baseline="null_rules",
            )
        )
        if count:
            variants.append(
                Variant(
                    f"rules{count}_hit",
                    f"{count} rules, untagged, matches rule #{count - 1}",
                    _calls.stdlib_rule_hit(logger, f"bench rule {count - 1} fired for %s"),
                    b.bucket_server,
                    1,
                    b.flush_bucket,
                    "null_rules",
                )
            )
    samples = measure(variants, cfg.rules_calls, cfg.rules_rounds, b.servers, cfg)
    rows = []
    for v in variants:
        rows.append(
            {
                "key": v.key,
                "label": v.label,
                "us_per_call": statistics.median(samples[v.key]),
                "rounds": samples[v.key],
                "x_baseline": paired_ratio(samples, v.key, v.baseline) if v.baseline else None,
            }
        )
    out["rules"] = rows
    print_table(
        f"4b. Scaling with rules (median of {cfg.rules_rounds} rounds x {cfg.rules_calls:,} calls)",
        ["variant", "us/call", "x NullHandler"],
        [[r["label"], f"{r['us_per_call']:.2f}", _ratio(r["x_baseline"])] for r in rows],
        "rules alternate exact templates and globs; the matching call hits the last rule.",
    )
    return out


# --------------------------------------------------------------------------- goals


@dataclass
class Goal:
    name: str
    target: str
    value: float | None
    met: bool | None


def _row(section: dict[str, Any] | None, key: str) -> dict[str, Any] | None:
    for row in (section or {}).get("rows", []):
        if row["key"] == key:
            return dict(row)
    return None


def goals(results: dict[str, Any]) -> list[Goal]:
    cost = results.get("cost")
    out: list[Goal] = []

    def ratio_goal(name: str, key: str, limit: float) -> None:
        row = _row(cost, key)
        value = row["x_baseline"] if row else None
        out.append(Goal(name, f"<= {limit}x", value, None if value is None else value <= limit))

    ratio_goal("tracked stdlib call vs NullHandler", "bucket_tracked", 1.5)
    ratio_goal("untagged stdlib call vs NullHandler", "bucket_untagged", 1.1)
    ratio_goal("tracked call, id and value vary, vs NullHandler", "bucket_varying", 1.5)
    ratio_goal("call with no extra vs NullHandler", "bucket_plain", 1.1)
    ratio_goal("structlog with BucketProcessor vs without", "structlog_bucket", 1.5)
    ratio_goal("  same, typical chain (for information)", "structlog_typical_bucket", 1.5)
    for peer, what in (("posthog", "capture"), ("segment", "track")):
        row = _row(cost, "bucket_tracked")
        value = row[f"{peer}_over_this"] if row else None
        out.append(
            Goal(
                f"tracked call cheaper than {peer} {what}",
                ">= 5x",
                value,
                None if value is None else value >= 5,
            )
        )
    tp = results.get("throughput")
    for peer in ("posthog", "segment"):
        row = _row(tp, peer)
        value = row["bucket_over_this"] if row else None
        out.append(
            Goal(
                f"end-to-end throughput vs {peer}",
                ">= 5x",
                value,
                None if value is None else value >= 5,
            )
        )
    mem = results.get("memory")
    if mem and "error" not in mem:
        out.append(
            Goal(
                "memory bound while the endpoint is down",
                "growth <= 100 MB, queue <= max",
                mem["peak_growth_mb"],
                bool(mem["bound_holds"]),
            )
        )
    return out


def print_goals(gs: list[Goal], smoke: bool) -> None:
    rows = []
    for g in gs:
        value = "n/a" if g.value is None else f"{g.value:.2f}"
        status = "n/a" if g.met is None else ("met" if g.met else "NOT MET")
        rows.append([g.name, g.target, value, status])
    note = (
        "SMOKE RUN: the counts are far too small to judge the goals."
        if smoke
        else "measured on a shared machine: see README for how to read noisy numbers."
    )
    print_table("Goals (issue 6)", ["goal", "target", "measured", "status"], rows, note)


# --------------------------------------------------------------------------- output


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "cpus": os.cpu_count(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            info["memory_gb"] = round(int(f.readline().split()[1]) / 1e6, 1)
    except OSError:
        pass
    if hasattr(os, "getloadavg"):
        info["loadavg_start"] = [round(x, 2) for x in os.getloadavg()]
    versions = {}
    for dist in ("bucket-logging", "posthog", "segment-analytics-python", "structlog", "orjson"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    info["versions"] = versions
    return info


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny counts, a few seconds")
    parser.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"comma-separated subset of {','.join(SECTIONS)}",
    )
    parser.add_argument("--json", type=Path, help="where to write the results (JSON)")
    parser.add_argument(
        "--bucket-server",
        choices=("sink", "tracking"),
        default="sink",
        help="where bucket_logging's items go: the peers' counting sink (default: the "
        "same server work for every library) or the validating TrackingServer",
    )
    parser.add_argument(
        "--profile", action="store_true", help="profile the tracked call path and exit"
    )
    args = parser.parse_args(argv)
    if args.profile:
        import profile_hot_path

        return profile_hot_path.main(smoke=args.smoke)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    cfg = dataclasses.replace(SMOKE if args.smoke else Config(), bucket_server=args.bucket_server)
    out_path = args.json or HERE / "results" / ("smoke.json" if args.smoke else "latest.json")

    info = machine()
    print(
        f"bucket_logging benchmarks{' (smoke)' if args.smoke else ''}: "
        f"Python {info['python']} on {info.get('cpu', platform.machine())}, "
        f"{info['cpus']} CPU(s), load average {info.get('loadavg_start', '?')}"
    )
    started = time.monotonic()
    results: dict[str, Any] = {"smoke": args.smoke, "machine": info, "config": cfg.__dict__}
    with Servers() as servers:
        bench = Bench(servers, cfg)
        for note in bench.notes:
            print(f"  note: {note}")
        results["notes"] = bench.notes
        try:
            for name in SECTIONS:
                if name in sections:
                    results[name] = globals()[f"section_{name}"](bench)
        finally:
            bench.close()
    gs = goals(results)
    print_goals(gs, args.smoke)
    results["goals"] = [g.__dict__ for g in gs]
    if hasattr(os, "getloadavg"):
        info["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    results["seconds"] = round(time.monotonic() - started, 1)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nresults written to {out_path} ({results['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
