"""The local server says what it accepted: ``GET /_calls`` and a line when it stops."""

from __future__ import annotations

import logging

from support import FAST, KEY

from bucket_logging import BulkSender, Item, TrackingServer
from bucket_logging._runtime import diagnostics as _diagnostics


def _event(name: str = "Signed in", user: str = "u1") -> Item:
    return Item.event(name, user_id=user)


def test_get_calls_answers_what_the_server_accepted(host: str) -> None:
    import httpx

    with TrackingServer(host="127.0.0.1") as srv:
        base = srv.url.replace("127.0.0.1", host)
        sender = BulkSender(KEY, base_url=base, **FAST)
        try:
            sender.enqueue(_event())
            sender.enqueue(Item.user("u1", attributes={"plan": "pro"}))
            assert sender.flush(5)
        finally:
            sender.close(1)
        answer = httpx.get(f"{base}/_calls", timeout=5)
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("application/json")
        calls = answer.json()
        assert [c["type"] for c in calls] == ["event", "user"]
        assert calls == srv.calls
        assert all(r.http_method == "POST" for r in srv.requests)  # the GET is not an API request


def test_a_stopped_server_says_what_it_accepted(lines: list[str]) -> None:
    _diagnostics.logger.setLevel(logging.INFO)
    try:
        srv = TrackingServer().start()
        sender = BulkSender(KEY, base_url=srv.url, **FAST)
        try:
            sender.enqueue(_event())
            sender.enqueue(_event(user="u2"))
            sender.enqueue(Item.user("u1"))
            assert sender.flush(5)
        finally:
            sender.close(1)
        srv.stop()
    finally:
        _diagnostics.logger.setLevel(logging.NOTSET)
    stopped = [line for line in lines if "stopped:" in line]
    assert len(stopped) == 1, lines
    assert stopped[0].startswith(
        f"bucket_logging: tracking server 127.0.0.1:{srv.port} stopped: 3 call(s) accepted "
        "(2 event, 1 user) in "
    )
    assert stopped[0].endswith(" request(s), 0 request(s) refused")
