"""The benchmark's HTTP servers, run in a child process of their own.

The child serves two endpoints:

* ``tracking``: a :class:`bucket_logging._server.server.TrackingServer` (Bucket's API; it
  validates every item with the client's own rules and records it);
* ``sink``: a minimal HTTP/1.1 keep-alive server for the peers (posthog posts to
  ``/batch/``, segment to ``/v1/batch``): it answers 200 to anything and counts the
  items of each body (a JSON array, or an object with a ``batch`` array).

Why a child process: on the machine the client and the server would otherwise share
one GIL, and the server's parsing would be charged to whichever client is measured.
In production the server is remote; a child process is the closest local stand-in.

The parent drives the child over stdin/stdout, one line per command:

``wait NAME COUNT TIMEOUT``
    block (on the server's Condition, no polling) until at least COUNT items were
    accepted since the last clear; answers ``ok COUNT`` or ``timeout COUNT``.
``clear NAME``
    forget the items counted so far; answers ``ok 0``.
``count NAME``
    answers ``ok COUNT``.
``stop``
    stop both servers and exit.
"""

from __future__ import annotations

import gzip
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson

_OK_BODY = b'{"status":"Ok","success":true}'


class _SinkHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        """Print nothing."""

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if (self.headers.get("Content-Encoding") or "").lower() == "gzip":
            body = gzip.decompress(body)
        items = 0
        if body:
            try:
                data = orjson.loads(body)
            except orjson.JSONDecodeError:
                data = None
            if isinstance(data, list):
                items = len(data)
            elif isinstance(data, dict) and isinstance(data.get("batch"), list):
                items = len(data["batch"])
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(_OK_BODY)))
        self.end_headers()
        self.wfile.write(_OK_BODY)
        if items:
            sink: CountingSink = self.server.sink  # type: ignore[attr-defined]
            sink.add(items)

    do_POST = do_GET = do_PUT = _serve


class CountingSink:
    """Answers 200 to every request and counts the items it was sent."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._count = 0
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _SinkHandler)
        self._httpd.daemon_threads = True
        self._httpd.sink = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> CountingSink:
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def add(self, n: int) -> None:
        with self._changed:
            self._count += n
            self._changed.notify_all()

    @property
    def call_count(self) -> int:
        with self._changed:
            return self._count

    def clear(self) -> None:
        with self._changed:
            self._count = 0

    def wait_for(self, count: int, timeout: float | None) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._count >= count, timeout)


def _child_main() -> None:
    from bucket_logging._server.server import TrackingServer

    tracking = TrackingServer().start()
    sink = CountingSink().start()
    servers: dict[str, Any] = {"tracking": tracking, "sink": sink}
    out = sys.stdout
    out.write(f"ready {tracking.url} {sink.url}\n")
    out.flush()
    for line in sys.stdin:
        parts = line.split()
        if not parts:
            continue
        op = parts[0]
        if op == "stop":
            break
        srv = servers[parts[1]]
        if op == "wait":
            ok = srv.wait_for(int(parts[2]), float(parts[3]))
            answer = f"{'ok' if ok else 'timeout'} {srv.call_count}"
        elif op == "clear":
            srv.clear()
            answer = "ok 0"
        else:  # count
            answer = f"ok {srv.call_count}"
        out.write(answer + "\n")
        out.flush()
    tracking.stop(timeout=1)
    sink.stop()


class Servers:
    """The parent's handle on the child process serving both endpoints."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-u", str(Path(__file__).resolve()), "--child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._in = self._proc.stdin
        self._out = self._proc.stdout
        ready = self._out.readline().split()
        if not ready or ready[0] != "ready":
            raise RuntimeError(f"the benchmark servers did not start: {ready!r}")
        self.tracking_url = ready[1]
        self.sink_url = ready[2]
        self._lock = threading.Lock()

    def _ask(self, line: str) -> tuple[bool, int]:
        with self._lock:
            self._in.write(line + "\n")
            self._in.flush()
            answer = self._out.readline().split()
        if len(answer) != 2:
            raise RuntimeError(f"the benchmark servers stopped answering ({answer!r})")
        return answer[0] == "ok", int(answer[1])

    def wait(self, name: str, count: int, timeout: float = 120.0) -> tuple[bool, int]:
        """Block until ``name`` counted ``count`` items since its last clear."""
        return self._ask(f"wait {name} {count} {timeout}")

    def clear(self, name: str) -> None:
        self._ask(f"clear {name}")

    def count(self, name: str) -> int:
        return self._ask(f"count {name}")[1]

    def drain(self, name: str, count: int, timeout: float = 120.0) -> bool:
        """Wait for ``count`` items, then clear; False (and a note) when they never came."""
        ok, got = self.wait(name, count, timeout)
        self.clear(name)
        if not ok:
            print(
                f"  ! {name}: {got} of {count} items arrived within {timeout:.0f} s",
                file=sys.stderr,
            )
        return ok

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                self._in.write("stop\n")
                self._in.flush()
                self._proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait()
        self._in.close()
        self._out.close()

    def __enter__(self) -> Servers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


if __name__ == "__main__" and sys.argv[1:] == ["--child"]:
    _child_main()
