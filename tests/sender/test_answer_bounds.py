"""A hostile server's answer costs bounded memory and time: the sender and ``check`` read
at most 64 KiB of a body, and the whole request has one deadline (``request_timeout``,
``check --timeout``), also when the body is dripped a byte at a time."""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import Callable

import httpx
import pytest
from peer import Answer, Peer
from support import KEY

from bucket_logging import BulkSender, Item
from bucket_logging._cli.check import check
from bucket_logging._cli.main import main
from bucket_logging._sender.answers import MAX_ANSWER_BYTES, post_bounded

#: A large answer (the issue measured 300 MB; 64 MB shows the bound as well).
HUGE = 64 * 1024 * 1024
#: What a client that stops reading at 64 KiB may still have been sent: the socket
#: buffers of both ends on the loopback.
SENT_BOUND = 16 * 1024 * 1024


def wait_until(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def sender_for(url: str, **kwargs: object) -> BulkSender:
    options: dict[str, object] = {
        "base_url": url,
        "retry_budget": 0.5,
        "backoff_base": 0.05,
        "flush_interval": 0.05,
        "handle_sigterm": False,
    }
    options.update(kwargs)
    return BulkSender(KEY, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("status", [400, 403, 500])
def test_the_sender_reads_at_most_a_diagnostic_of_a_huge_answer(status: int) -> None:
    with Peer(lambda n: Answer(status, body=HUGE)) as peer:
        sender = sender_for(peer.url)
        try:
            sender.enqueue(Item.event("e", 1))
            wait_until(lambda: sender.stats.dropped_total == 1, 30)
            assert peer.bytes_sent < SENT_BOUND * peer.requests, peer.bytes_sent
        finally:
            sender.close(0)


def test_a_dripped_answer_is_cut_by_request_timeout() -> None:
    with Peer(lambda n: Answer(200, body=40, drip=0.5)) as peer:
        sender = sender_for(peer.url, request_timeout=1.0)
        try:
            started = time.monotonic()
            sender.enqueue(Item.event("e", 1))
            # cut after 1 s (the budget of 0.5 s then spent): not after 20 s of drip
            wait_until(lambda: sender.stats.dropped_total == 1, 6)
            assert time.monotonic() - started < 6
            assert sender.stats.sent == 0
        finally:
            sender.close(0)


@pytest.mark.usefixtures("clean_env")
def test_check_reads_at_most_a_diagnostic_of_a_huge_answer() -> None:
    with Peer(lambda n: Answer(401, body=HUGE)) as peer:
        result = check("trHugeAnswerKey-12345678", peer.url, timeout=10)
        assert result.status == 1 and "refuses the key" in result.line
        assert peer.bytes_sent < SENT_BOUND, peer.bytes_sent


@pytest.mark.usefixtures("clean_env")
def test_check_timeout_bounds_a_dripped_answer(capsys: pytest.CaptureFixture[str]) -> None:
    with Peer(lambda n: Answer(401, body=60, drip=0.5)) as peer:
        started = time.monotonic()
        status = main(
            ["check", "--key", "trDripAnswerKey-12345678", "--url", peer.url, "--timeout", "2"]
        )
        took = time.monotonic() - started
        out, err = capsys.readouterr()
        assert status == 1
        assert took < 4, took
        assert "2s" in out + err  # the deadline is named
        assert "trDripAnswerKey-12345678" not in out + err


# ---------------------------------------------------------------- MockTransport, unit


def _post(handler: Callable[[httpx.Request], httpx.Response], timeout: float = 5) -> httpx.Response:
    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return await post_bounded(client, "http://127.0.0.1/bulk", b"[]", timeout=timeout)

    return asyncio.run(go())


def test_a_large_body_is_cut_to_the_bound() -> None:
    response = _post(lambda r: httpx.Response(400, content=b"y" * (10 * MAX_ANSWER_BYTES)))
    assert response.status_code == 400
    assert response.content == b"y" * MAX_ANSWER_BYTES


def test_a_gzip_bomb_is_decompressed_to_the_bound() -> None:
    bomb = gzip.compress(b"\0" * (50 * 1024 * 1024))
    response = _post(
        lambda r: httpx.Response(400, content=bomb, headers={"Content-Encoding": "gzip"})
    )
    assert len(response.content) == MAX_ANSWER_BYTES


def test_a_small_gzip_answer_reads_as_json() -> None:
    body = gzip.compress(b'{"error": {"code": "X", "message": "bad"}}')
    response = _post(
        lambda r: httpx.Response(400, content=body, headers={"Content-Encoding": "gzip"})
    )
    assert response.json()["error"]["code"] == "X"
    assert "Retry-After" not in response.headers


def test_headers_are_kept() -> None:
    response = _post(lambda r: httpx.Response(429, headers={"Retry-After": "3"}))
    assert response.headers["Retry-After"] == "3"


def test_a_streamed_gzip_bomb_is_decompressed_to_the_bound() -> None:
    from bucket_logging._sender.answers import _decoded

    bomb = gzip.compress(b"\0" * (50 * 1024 * 1024))[:MAX_ANSWER_BYTES]
    assert len(_decoded(bomb, "gzip", MAX_ANSWER_BYTES)) == MAX_ANSWER_BYTES
    assert _decoded(b"not gzip", "gzip", MAX_ANSWER_BYTES) == b""
    assert _decoded(b"plain", "identity", MAX_ANSWER_BYTES) == b"plain"
    assert _decoded(b"\x00\x01", "br", MAX_ANSWER_BYTES) == b""
