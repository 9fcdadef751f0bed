"""A server's ``Retry-After`` never makes the sender retry faster than its own back-off,
and a long one is clamped to the retry budget left (the batch is retried, not dropped).

Against a real local HTTP server answering 429/503 with hostile ``Retry-After`` values
(counting the requests), and as unit tests of the policy and with ``httpx.MockTransport``.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable

import httpx
import pytest
from peer import Answer, Peer
from support import KEY

from bucket_logging import BulkSender, Item
from bucket_logging._sender.retry import RetryPolicy, parse_retry_after

#: Values that asked for no wait at all (0, negative, a past date, nan).
EAGER = ["0", "-5", "Mon, 01 Jan 2001 00:00:00 GMT", "nan", "-inf", "0.0001"]
#: Values asking for longer than any budget.
LONG = ["400", "1e12", "inf", "Fri, 31 Dec 9999 23:59:59 GMT"]

BUDGET = 1.5


def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def sender_for(url: str, **kwargs: object) -> BulkSender:
    options: dict[str, object] = {
        "base_url": url,
        "retry_budget": BUDGET,
        "backoff_base": 0.1,
        "backoff_max": 5.0,
        "flush_interval": 0.05,
        "handle_sigterm": False,
    }
    options.update(kwargs)
    return BulkSender(KEY, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", EAGER)
@pytest.mark.parametrize("status", [429, 503])
def test_an_eager_retry_after_keeps_the_backoff(value: str, status: int) -> None:
    with Peer(lambda n: Answer(status, {"Retry-After": value})) as peer:
        sender = sender_for(peer.url)
        try:
            sender.enqueue(Item.event("e", 1))
            wait_until(lambda: sender.stats.dropped_total == 1)
            # the own back-off (0.1 s doubled, jittered) over 1.5 s: about 6 tries;
            # with no back-off at all, thousands
            assert 2 <= peer.requests <= 12, peer.requests
            assert sender.stats.dropped == {"retries_exhausted": 1}
        finally:
            sender.close(0)


@pytest.mark.parametrize("value", LONG)
def test_a_long_retry_after_is_clamped_to_the_budget_left(value: str) -> None:
    def script(n: int) -> Answer:
        return Answer(503, {"Retry-After": value}) if n == 0 else Answer(200, body=b"{}")

    with Peer(script) as peer:
        sender = sender_for(peer.url)
        try:
            started = time.monotonic()
            sender.enqueue(Item.event("e", 1))
            wait_until(lambda: sender.stats.sent == 1)
            took = time.monotonic() - started
            assert peer.requests == 2
            assert sender.stats.dropped_total == 0
            assert took < BUDGET + 3  # clamped: waited the budget left, not the ask
        finally:
            sender.close(0)


def test_mock_transport_nan_retry_after_is_not_a_hammer() -> None:
    seen: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(time.monotonic())
        return httpx.Response(429, headers={"Retry-After": "nan"})

    sender = BulkSender(
        KEY,
        base_url="http://127.0.0.1:9",
        transport=httpx.MockTransport(handler),
        retry_budget=1.0,
        backoff_base=0.1,
        flush_interval=0.05,
        handle_sigterm=False,
    )
    try:
        sender.enqueue(Item.event("e", 1))
        wait_until(lambda: sender.stats.dropped_total == 1)
        assert 2 <= len(seen) <= 10, len(seen)
        gaps = [b - a for a, b in itertools.pairwise(seen)]
        assert min(gaps) >= 0.04  # at least half the first back-off (jitter)
    finally:
        sender.close(0)


# ------------------------------------------------------------------- the policy, unit


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0.0),
        ("-5", 0.0),
        ("nan", None),
        ("-inf", 0.0),
        ("Mon, 01 Jan 2001 00:00:00 GMT", 0.0),
        ("2.5", 2.5),
        ("not a number", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


@pytest.mark.parametrize("value", ["inf", "1e12", "1e400"])
def test_parse_retry_after_long_is_finite(value: str) -> None:
    parsed = parse_retry_after(value)
    assert parsed is not None and math.isfinite(parsed) and parsed >= 3600


@pytest.mark.parametrize("ask", [0.0, 0.001, None])
@pytest.mark.parametrize("attempt", [1, 2, 5, 8])
def test_never_faster_than_the_own_backoff(ask: float | None, attempt: int) -> None:
    policy = RetryPolicy(budget=1000.0, base=0.5, cap=30.0)
    own_floor = 0.5 * min(30.0, 0.5 * 2.0 ** (attempt - 1))
    for _ in range(50):
        delay = policy.next_delay(attempt, ask, elapsed=0.0)
        assert delay is not None and delay >= own_floor


@pytest.mark.parametrize("ask", [400.0, 1e12, 1e300])
def test_a_long_ask_is_clamped_not_given_up(ask: float) -> None:
    policy = RetryPolicy(budget=300.0)
    assert policy.next_delay(1, ask, elapsed=0.0) == 300.0
    assert policy.next_delay(3, ask, elapsed=250.0) == pytest.approx(50.0)
    assert policy.next_delay(3, ask, elapsed=300.0) is None  # the budget is spent


def test_a_server_ask_longer_than_the_backoff_is_honoured() -> None:
    policy = RetryPolicy(budget=300.0, base=0.5)
    assert policy.next_delay(1, 7.0, elapsed=0.0) == 7.0
