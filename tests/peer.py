"""A hostile or broken HTTP peer for the sender's and ``check``'s tests.

A real threaded HTTP server on 127.0.0.1 whose answers a test scripts: the status,
the headers (any ``Retry-After`` text), a body of any size, sent at once or dripped.
It counts the requests it received.
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field


@dataclass
class Answer:
    """What the peer answers to one request."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    #: The body, or its size in bytes (that many ``x``, streamed, never held whole).
    body: bytes | int = b""
    #: Seconds between the bytes of the body (a drip), 0 for at once.
    drip: float = 0.0


class Peer:
    """A local HTTP server answering as ``script(n)`` says for the n-th request (from 0)."""

    def __init__(self, script: Callable[[int], Answer]) -> None:
        self.script = script
        self.requests = 0
        self.bytes_sent = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        peer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                with peer._lock:
                    n = peer.requests
                    peer.requests += 1
                answer = peer.script(n)
                body = answer.body
                size = body if isinstance(body, int) else len(body)
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(size))
                self.end_headers()
                try:
                    if answer.drip:
                        for _ in range(size):
                            if peer._stop.is_set():
                                return
                            self.wfile.write(b"x")
                            self.wfile.flush()
                            peer.bytes_sent += 1
                            time.sleep(answer.drip)
                    elif isinstance(body, int):
                        chunk = b"x" * 65536
                        left = body
                        while left > 0 and not peer._stop.is_set():
                            piece = chunk[: min(left, len(chunk))]
                            self.wfile.write(piece)
                            left -= len(piece)
                            peer.bytes_sent += len(piece)
                    else:
                        self.wfile.write(body)
                        peer.bytes_sent += len(body)
                except OSError:
                    self.close_connection = True

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Peer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()


def peer(script: Callable[[int], Answer]) -> Iterator[Peer]:
    """A running :class:`Peer` (for fixtures)."""
    with Peer(script) as p:
        yield p
