"""What hostile peers cost the relay (issue 30): decoding CPU of bodies built to be costly,
and how ``--workers`` spread connections beside 100 half-open ones.

    .venv/bin/python benchmarks/relay_hostile_bench.py --rounds 3

Part 1 decodes 32 MiB protobuf bodies that hold nothing (empty ScopeLogs, empty records,
unknown varints in one record, empty attributes) with the relay's budget (the default
``--max-objects`` and ``--max-pending``), in this process, and prints the CPU seconds of
each (``time.process_time``), the median of the rounds. Part 2 starts ``bucket-logging
relay --workers 2``, holds 100 connections with half-sent heads, posts 200 small requests
on fresh connections, and prints how many 200s each worker answered (from its summary).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import time

import httpx

from bucket_logging import TrackingServer
from bucket_logging._frontends.otlp import decode_export_logs
from bucket_logging._relay.limits import Limits
from bucket_logging._relay.objects import otlp_budget

N = 32 * 1024 * 1024


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


SHAPES = {
    "empty ScopeLogs": lambda: _field(1, b"\x12\x00" * (N // 2 - 4)),
    "empty records": lambda: _field(1, _field(2, b"\x12\x00" * (N // 2 - 8))),
    "unknown varints in one record": lambda: _field(
        1, _field(2, _field(2, b"\x38\x01" * (N // 2 - 12)))
    ),
    "empty attributes": lambda: _field(1, _field(2, _field(2, b"\x32\x00" * (N // 2 - 12)))),
}


def decode_cpu(rounds: int) -> None:
    limits = Limits()
    print(f"{'body (32 MiB decoded)':34} {'CPU s (median)':>14}  answer")
    for name, make in SHAPES.items():
        body = make()
        times = []
        outcome = ""
        for _ in range(rounds):
            started = time.process_time()
            try:
                decode_export_logs(
                    body,
                    "application/x-protobuf",
                    max_records=limits.max_pending,
                    max_values=otlp_budget(body, False, limits.max_objects),
                )
                outcome = "decoded"
            except Exception as exc:
                outcome = f"{type(exc).__name__}: {str(exc)[:50]}"
            times.append(time.process_time() - started)
        print(f"{name:34} {statistics.median(times):14.2f}  {outcome}")


def worker_split() -> None:
    with TrackingServer() as server:
        base = {k: v for k, v in os.environ.items() if not k.startswith("BUCKET_")}
        relay = subprocess.Popen(
            [sys.executable, "-m", "bucket_logging", "relay", "--port", "0", "--workers", "2"],
            env={**base, "BUCKET_TRACKING_KEY": "trBENCH", "BUCKET_TRACKING_URL": server.url},
            stderr=subprocess.PIPE,
            text=True,
        )
        assert relay.stderr is not None
        banner = ""
        while "relay on http://" not in banner:
            banner += relay.stderr.readline()
        port = int(banner.split("relay on http://")[1].split()[0].rsplit(":", 1)[1])
        held = []
        for _ in range(100):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            held.append(sock)
        ok = 0
        for _ in range(200):
            answer = httpx.post(
                f"http://127.0.0.1:{port}/",
                content=b"[]",
                headers={"Content-Type": "application/json"},
                timeout=30,
            )
            ok += answer.status_code == 200
        relay.send_signal(signal.SIGTERM)
        _, err = relay.communicate(timeout=60)
        for sock in held:
            sock.close()
    print(f"200 answers: {ok} of 200")
    for line in err.splitlines():
        if "worker" in line and "stopped" in line:
            print(" ", line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"load average: {os.getloadavg()[0]:.1f}")
    decode_cpu(args.rounds)
    worker_split()


if __name__ == "__main__":
    main()
