"""A web page open in the developer's browser cannot act through the relay (issue 30,
item 1): the JSON intake takes only JSON and NDJSON content types, a request with an
``Origin`` (or a ``Sec-Fetch-Site`` other than ``none``) is refused unless its origin is
allowed, and on loopback the ``Host`` must name an address or localhost. A form
(``enctype=text/plain``) and a cross-origin ``fetch`` in headless Chromium change nothing;
the pipelines' own requests still go through."""

from __future__ import annotations

import functools
import http.server
import io
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import KEY

from bucket_logging import BulkSender, TrackingServer
from bucket_logging._frontends.jsonlines import JsonLines
from bucket_logging._relay.inprocess import Relay
from bucket_logging._relay.origin import BrowserRules
from bucket_logging._relay.sender import RelaySender

EVENT = json.dumps({"bucket_event": "CSRF", "user_id": "victim"}).encode()
NDJSON = EVENT + b"\n" + EVENT + b"\n"


@pytest.fixture
def relay(server: TrackingServer) -> Iterator[Relay]:
    sender = RelaySender(BulkSender(KEY, base_url=server.url, flush_interval=0.05))
    running = Relay(
        JsonLines(sender=sender),
        sender,
        port=0,
        log=io.StringIO(),
        browser=BrowserRules(allow_origins=["https://app.example"], allow_hosts=["proxy.local"]),
    ).start()
    try:
        yield running
    finally:
        running.stop(5)
        sender.real.close(5)


def _url(relay: Relay, host: str = "127.0.0.1") -> str:
    return f"http://{host}:{relay.address[1]}"


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "text/plain", "Origin": "http://evil.example"},
        {"Content-Type": "text/plain"},
        {"Content-Type": "application/x-www-form-urlencoded"},
        {"Content-Type": "multipart/form-data; boundary=x"},
        {},
        {"Content-Type": "application/json", "Origin": "http://evil.example"},
        {"Content-Type": "application/json", "Origin": "null"},
        {"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"},
        {"Content-Type": "application/json", "Sec-Fetch-Site": "same-site"},
        {"Content-Type": "application/json", "Host": "attacker.example"},
        {"Content-Type": "application/json", "Host": "attacker.example:8788"},
    ],
)
def test_what_a_web_page_can_send_is_refused(
    relay: Relay, server: TrackingServer, headers: dict[str, str]
) -> None:
    answer = httpx.post(_url(relay) + "/", content=EVENT, headers=headers, timeout=10)
    assert answer.status_code in (403, 415), answer.text
    otlp = httpx.post(
        _url(relay) + "/v1/logs",
        content=b"{}",
        headers={**headers, "Content-Type": "application/json"},
        timeout=10,
    )
    assert otlp.status_code in (200, 403)
    assert (otlp.status_code == 403) == (
        set(headers) & {"Origin", "Sec-Fetch-Site", "Host"} != set()
    )
    assert relay.front.flush(5)
    assert server.calls == []


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "application/x-ndjson",  # Vector's newline_delimited framing, Fluent Bit's json_lines
        "application/ndjson",
        "application/jsonl",
    ],
)
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_pipelines_content_types_and_local_names_go_through(
    relay: Relay, server: TrackingServer, content_type: str, host: str
) -> None:
    answer = httpx.post(
        _url(relay, host) + "/", content=NDJSON, headers={"Content-Type": content_type}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    assert server.wait_for(2, 10)


def test_an_allowed_origin_and_an_allowed_host_go_through(
    relay: Relay, server: TrackingServer
) -> None:
    allowed = {"Content-Type": "application/json", "Origin": "https://app.example"}
    answer = httpx.post(_url(relay) + "/", content=EVENT, headers=allowed, timeout=10)
    assert answer.status_code == 200, answer.text
    proxied = {"Content-Type": "application/json", "Host": "proxy.local:443"}
    # another body: an identical one would be taken for a retry and not tracked again
    other = json.dumps({"bucket_event": "Proxied", "user_id": "u2"}).encode()
    answer = httpx.post(_url(relay) + "/", content=other, headers=proxied, timeout=10)
    assert answer.status_code == 200, answer.text
    assert server.wait_for(2, 10)


# ------------------------------------------------------------------ a real browser


def _chromium() -> Any:
    import shutil

    browser = shutil.which("chromium") or "/usr/bin/chromium"
    driver = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:  # pragma: no cover - selenium is in the dev extra
        webdriver = None  # type: ignore[assignment]
    if webdriver is None or not (os.access(browser, os.X_OK) and os.access(driver, os.X_OK)):
        reason = "needs Chromium, its driver and selenium: run .ci/install-chromium.sh"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"):  # fmt: skip
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(driver))


ATTACK = """<!doctype html>
<form id="f" method="POST" enctype="text/plain" action="{relay}/">
  <input name='{{"bucket_event":"CSRF form","user_id":"victim","x":"' value='"}}'>
</form>
<script>
  fetch("{relay}/", {{method: "POST", mode: "no-cors", body: '{event}',
                      headers: {{"Content-Type": "text/plain"}}}})
    .catch(() => null)
    .then(() => fetch("{relay}/", {{method: "POST", mode: "no-cors", body: new Blob(['{event}'])}}))
    .catch(() => null)
    .then(() => document.getElementById("f").submit());
</script>
"""


def test_a_form_and_a_fetch_from_another_site_change_nothing(
    relay: Relay, server: TrackingServer, tmp_path: Path
) -> None:
    (tmp_path / "attack.html").write_text(ATTACK.format(relay=_url(relay), event=EVENT.decode()))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    chrome = _chromium()
    try:
        before = relay.counts[403] + relay.counts[415]
        # another site: "localhost" is not "127.0.0.1" (the relay's name in the page)
        chrome.get(f"http://localhost:{site.server_address[1]}/attack.html")
        deadline = time.monotonic() + 20
        while relay.counts[403] + relay.counts[415] - before < 3:  # the form and 2 fetches
            assert time.monotonic() < deadline, dict(relay.counts)
            time.sleep(0.05)
    finally:
        chrome.quit()
        site.shutdown()
        site.server_close()
    assert relay.front.flush(5)
    assert server.calls == []
    assert relay.counts[200] == 0
