"""A proxy: httpx honours ``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY`` (and ``NO_PROXY``)
for a sender's requests, and ``transport=httpx.AsyncHTTPTransport(proxy=...)`` sets one
for tracking alone. Tested through a real forwarding proxy (a threaded HTTP server that
relays absolute-form requests, as a corporate proxy does for ``http://`` targets)."""

from __future__ import annotations

import http.client
import http.server
import threading
import urllib.parse
from collections.abc import Iterator

import httpx
import pytest
from support import KEY

from bucket_logging import BulkSender, Item, TrackingServer


class _Forward(http.server.BaseHTTPRequestHandler):
    """Relays ``POST http://host:port/path`` to the host, and notes each target."""

    seen: list[str]

    def do_POST(self) -> None:
        target = urllib.parse.urlsplit(self.path)
        self.seen.append(f"{target.hostname}:{target.port}{target.path}")
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("proxy-connection",)}
        upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
        try:
            upstream.request("POST", target.path or "/", body=body, headers=headers)
            answer = upstream.getresponse()
            data = answer.read()
        finally:
            upstream.close()
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.getheader("Content-Type") or "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # (quiet: URLs hold the key)
        pass


@pytest.fixture
def proxy() -> Iterator[tuple[str, list[str]]]:
    seen: list[str] = []
    handler = type("Forward", (_Forward,), {"seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _deliver(sender: BulkSender, server: TrackingServer) -> None:
    try:
        sender.enqueue(Item.event("Through the proxy", user_id="u1"))
        assert sender.flush(10)
    finally:
        sender.close(5)
    assert [c["event"] for c in server.calls] == ["Through the proxy"]


def test_the_proxy_variables_are_honoured(
    proxy: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch, clean_env: None
) -> None:
    url, seen = proxy
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        for spelled in (name, name.lower()):
            monkeypatch.delenv(spelled, raising=False)
    monkeypatch.setenv("HTTP_PROXY", url)  # (HTTPS_PROXY for https:// URLs, the same way)
    with TrackingServer() as server:
        _deliver(BulkSender(KEY, base_url=f"http://localhost:{server.port}"), server)
    assert seen == [f"localhost:{server.port}/{KEY}/bulk"]


def test_a_proxy_for_tracking_alone(proxy: tuple[str, list[str]], clean_env: None) -> None:
    url, seen = proxy
    with TrackingServer() as server:
        transport = httpx.AsyncHTTPTransport(proxy=url)
        _deliver(BulkSender(KEY, base_url=server.url, transport=transport), server)
    assert seen == [f"127.0.0.1:{server.port}/{KEY}/bulk"]
