"""Peak memory while the endpoint is down: run by ``run.py`` in a fresh process.

    python benchmarks/_memory.py ITEMS

Points a :class:`~bucket_logging._frontends.handler.BucketHandler` (default options, so the
documented bound applies) at a local port nothing listens on, logs ITEMS tracked
calls, and prints one JSON line: the growth of the peak RSS over the RSS after a
warm-up, what the sender holds, and what it dropped.

The peak is the kernel's high-water mark ``VmHWM`` (reset after the warm-up where
the kernel allows it). ``ru_maxrss`` is reported too but not used: on Linux it is
inherited across fork and exec, so a child of a large parent starts with the
parent's peak.
"""

from __future__ import annotations

import gc
import json
import logging
import resource
import socket
import sys
import time
from typing import Any

from _calls import stdlib_tracked

KEY = "bench-memory-key"


def _dead_url() -> str:
    """A local URL that refuses connections (a port bound once, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _status_mb(field: str) -> float | None:
    """``VmRSS`` / ``VmHWM`` of this process in MB (Linux), None elsewhere."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS (Linux 4.0+)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def _maxrss_mb() -> float:
    """``ru_maxrss`` in MB: on Linux it survives exec, so it may be the parent's peak."""
    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return value / 1e6 if sys.platform == "darwin" else value * 1024 / 1e6


def main() -> dict[str, Any]:
    items = int(sys.argv[1])
    from _frontends import BucketHandler, sender_of

    if BucketHandler is None:
        return {"error": "BucketHandler is not available"}
    # The sender's drop reports (rate-limited) are expected here; keep them off stderr.
    diagnostics = logging.getLogger("bucket_logging")
    diagnostics.addHandler(logging.NullHandler())
    diagnostics.propagate = False

    url = _dead_url()
    handler = BucketHandler(KEY, base_url=url)
    logger = logging.getLogger("bench.memory")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    sender = sender_of(handler, KEY, url)
    run = stdlib_tracked(logger)

    warmup = min(1000, items)
    run(warmup)
    gc.collect()
    reset = _reset_peak()
    base_rss = _status_mb("VmRSS")
    base_peak = _maxrss_mb()
    t0 = time.perf_counter()
    elapsed_ns = run(items)
    wall = time.perf_counter() - t0
    peak = _status_mb("VmHWM")
    if peak is None or base_rss is None:  # not Linux: ru_maxrss, comparable here
        base_rss, peak, reset = base_peak, _maxrss_mb(), False
    stats = sender.stats
    assert sender.engine is not None
    held, held_bytes = sender.engine.queue.held()
    result = {
        "items": items,
        "warmup": warmup,
        "us_per_call": elapsed_ns / items / 1000,
        "seconds": wall,
        "baseline_rss_mb": base_rss,
        "peak_rss_mb": peak,
        "peak_growth_mb": peak - base_rss,
        "peak_source": "VmHWM" + (" (reset after the warm-up)" if reset else ""),
        "final_rss_mb": _status_mb("VmRSS"),
        "ru_maxrss_mb": _maxrss_mb(),
        "max_queue_items": sender.max_queue_items,
        "max_queue_bytes": sender.max_queue_bytes,
        "in_flight_max": sender.max_concurrent_requests * sender.max_batch_items,
        "queue_items": held,
        "queue_bytes": held_bytes,
        "pending": stats.pending,
        "accepted": stats.queued,
        "dropped": dict(stats.dropped),
        "sent": stats.sent,
    }
    sender.close(timeout=0)
    return result


if __name__ == "__main__":
    print(json.dumps(main()))
