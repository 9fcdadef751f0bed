"""What the on-disk spool costs: the calling thread and throughput, with and without it.

    .venv/bin/python benchmarks/spool_bench.py [--items 100000] [--rounds 5]

For each round, a fresh :class:`~bucket_logging.BulkSender` without a spool and one
with ``spool_dir=`` (a fresh directory) each take a burst of ``--items`` typical
items (~200 bytes, encoded beforehand) and deliver them to a local
:class:`~bucket_logging._server.server.TrackingServer`. Measured:

* the cost on the calling thread: the burst's ``enqueue`` loop, per call;
* the throughput: items divided by the time from the first ``enqueue`` until
  ``flush()`` returned (every item accepted by the server, and with the spool, its
  rows deleted);
* with the spool only: how fast a new sender delivers a backlog of ``--items`` that
  an earlier sender left in the spool (an outage that outlasted it);
* the steady-rate shape: one thread logging ``--rate`` events a second (paced) for
  ``--seconds`` to a server that answers after 50 ms, as a service logs; measured are
  the requests made, what is still pending when the logging stops, and how long the
  final ``flush()`` takes. The spool is held to the memory path's figures here (a
  burst alone hides a sender that sends the batch being filled too eagerly).

The server runs in a child process (this script with ``--serve``) so that its
request parsing does not share the client's GIL. Medians over the rounds; the
memory-only and spool runs alternate (in a rotating order) to spread out noise from
other processes, and the ratios are the medians of the per-round ratios.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bucket_logging import BulkSender, Item

KEY = "spool-bench-key"


def serve() -> None:
    """The child: a TrackingServer driven over stdin (``wait N``, ``clear``, ``stop``)."""
    from bucket_logging._server.server import TrackingServer

    with TrackingServer() as srv:
        print(srv.url, flush=True)
        for line in sys.stdin:
            command, *args = line.split()
            if command == "wait":
                ok = srv.wait_for(int(args[0]), timeout=float(args[1]))
                print(f"{'ok' if ok else 'timeout'} {srv.call_count}", flush=True)
            elif command == "clear":
                srv.clear()
                print("ok 0", flush=True)
            elif command == "delay":
                srv.delay(float(args[0]))
                print("ok 0", flush=True)
            elif command == "received":
                print(f"ok {srv.received}", flush=True)
            else:
                break


class Server:
    """The parent's handle on the child server."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()

    def ask(self, line: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def close(self) -> None:
        self.ask("stop")
        self.proc.wait(timeout=10)


def make_items(n: int) -> list[Item]:
    """Typical items: events of about 200 bytes encoded."""
    return [
        Item.event(
            "Sent message",
            f"user-{i}",
            {"position": "popover", "version": 3, "plan": "enterprise", "path": "/app/inbox"},
            company_id="acme-corporation",
        )
        for i in range(n)
    ]


def warm(sender: BulkSender, item: Item) -> None:
    """The connection is open and, with a spool, the database too (a process opens it
    once at start, not per burst)."""
    sender.enqueue(item)
    if not sender.flush(timeout=10):
        raise SystemExit("the warm-up item was not delivered")


def burst(server: Server, items: list[Item], spool: str | None) -> tuple[float, float]:
    """(µs per enqueue, items/s end to end) for one sender and one burst."""
    sender = BulkSender(KEY, base_url=server.url, spool_dir=spool)
    try:
        warm(sender, items[0])
        server.ask("clear")
        enqueue = sender.enqueue
        started = time.perf_counter()
        for item in items:
            enqueue(item)
        queued = time.perf_counter()
        if not sender.flush(timeout=120):
            raise SystemExit(f"not delivered within 120 s: {sender.stats}")
        done = time.perf_counter()
    finally:
        sender.close()
    answer = server.ask(f"wait {len(items)} 10")
    if not answer.startswith("ok"):
        raise SystemExit(f"the server has {answer}, expected {len(items)}")
    return (queued - started) / len(items) * 1e6, len(items) / (done - started)


def steady(
    server: Server, items: list[Item], spool: str | None, rate: float, seconds: float
) -> tuple[int, int, float]:
    """(requests, items pending when the logging stopped, seconds of the final flush)."""
    sender = BulkSender(KEY, base_url=server.url, spool_dir=spool)
    try:
        warm(sender, items[0])
        server.ask("delay 0.05")
        before = int(server.ask("received").split()[1])
        count = int(rate * seconds)
        began = time.perf_counter()
        for i in range(count):
            wait = began + i / rate - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            sender.enqueue(items[i % len(items)])
        pending = sender.pending
        flushing = time.perf_counter()
        if not sender.flush(timeout=120):
            raise SystemExit(f"not delivered within 120 s: {sender.stats}")
        flushed = time.perf_counter() - flushing
        requests = int(server.ask("received").split()[1]) - before
    finally:
        server.ask("delay 0")
        sender.close()
    return requests, pending, flushed


def replay(server: Server, items: list[Item], spool: str) -> float:
    """Items/s at which a new sender delivers a backlog left in the spool."""
    with socket.socket() as s:  # a port where nothing listens: an outage
        s.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{s.getsockname()[1]}"
    writer = BulkSender(KEY, base_url=down, spool_dir=spool, shutdown_timeout=0.5)
    for item in items:
        writer.enqueue(item)
    writer.close()
    if writer.stats.spooled != len(items):
        raise SystemExit(f"the spool did not take the burst: {writer.stats}")
    server.ask("clear")
    started = time.perf_counter()
    reader = BulkSender(KEY, base_url=server.url, spool_dir=spool)
    try:
        answer = server.ask(f"wait {len(items)} 120")
        done = time.perf_counter()
    finally:
        reader.close()
    if not answer.startswith("ok"):
        raise SystemExit(f"the backlog was not delivered: {answer}")
    return len(items) / (done - started)


def main() -> None:
    """Run the rounds and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rate", type=float, default=2000.0, help="steady shape: events/s")
    parser.add_argument("--seconds", type=float, default=10.0, help="steady shape: duration")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    items = make_items(args.items)
    size = statistics.mean(len(item.body) for item in items[:1000])
    server = Server()
    results: dict[str, list[tuple[float, float]]] = {"memory": [], "spool": []}
    replays: list[float] = []
    steadies: dict[str, tuple[int, int, float]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="spool-bench-") as tmp:
            burst(server, items[:2000], None)  # warm up: imports, connections
            for n in range(args.rounds):
                # the order alternates, so that neither side always runs after the other
                for name in ("memory", "spool") if n % 2 == 0 else ("spool", "memory"):
                    spool = None if name == "memory" else str(Path(tmp, f"b{n}"))
                    results[name].append(burst(server, items, spool))
                replays.append(replay(server, items, str(Path(tmp, f"r{n}"))))
            steadies["memory"] = steady(server, items, None, args.rate, args.seconds)
            steadies["spool"] = steady(server, items, str(Path(tmp, "s")), args.rate, args.seconds)
    finally:
        server.close()

    def median(name: str, index: int) -> float:
        return statistics.median(r[index] for r in results[name])

    def ratio(index: int) -> float:  # the median of the per-round ratios
        pairs = zip(results["spool"], results["memory"], strict=True)
        return statistics.median(spool[index] / memory[index] for spool, memory in pairs)

    mem_us, spool_us = median("memory", 0), median("spool", 0)
    mem_tp, spool_tp = median("memory", 1), median("spool", 1)
    print(
        f"spool_bench: {args.items:,} items of ~{size:.0f} B, {args.rounds} rounds (medians; "
        "spool/memory: the median of the per-round ratios), TrackingServer in a child "
        f"process, Python {sys.version.split()[0]}"
    )
    print(f"{'':34}{'memory only':>14}{'with spool':>14}{'spool/memory':>14}")
    print(
        f"{'enqueue, calling thread (µs/call)':34}{mem_us:>14.2f}{spool_us:>14.2f}"
        f"{ratio(0):>13.2f}x"
    )
    print(
        f"{'throughput, end to end (items/s)':34}{mem_tp:>14,.0f}{spool_tp:>14,.0f}"
        f"{ratio(1):>13.2f}x"
    )
    print(
        f"{'replay of a spooled backlog':34}{'':>14}{statistics.median(replays):>14,.0f}"
        f"{'items/s':>14}"
    )
    for name in ("memory", "spool"):
        rounds = ", ".join(f"{tp:,.0f}" for _, tp in results[name])
        print(f"  {name} rounds (items/s): {rounds}")
    print(
        f"steady rate: {args.rate:,.0f} events/s for {args.seconds:g} s, one thread, "
        "server latency 50 ms"
    )
    (m_req, m_pend, m_flush), (s_req, s_pend, s_flush) = steadies["memory"], steadies["spool"]
    print(f"{'requests':34}{m_req:>14,}{s_req:>14,}{s_req / max(m_req, 1):>13.2f}x")
    print(f"{'pending when logging stopped':34}{m_pend:>14,}{s_pend:>14,}")
    print(f"{'final flush (s)':34}{m_flush:>14.2f}{s_flush:>14.2f}")


if __name__ == "__main__":
    main()
