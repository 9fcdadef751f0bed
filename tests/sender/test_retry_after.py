"""A server's Retry-After is obeyed (seconds or an HTTP date, garbage ignored); a redirect
is a client error.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import time
from collections.abc import Callable

import httpx
import pytest
from support import Endpoint

from bucket_logging import BulkSender, DeliveryError, Item
from bucket_logging._sender.retry import parse_retry_after

Make = Callable[..., BulkSender]


def events(n: int, start: int = 0) -> list[Item]:
    return [Item.event("e", i, {"i": i}) for i in range(start, start + n)]


def enqueue_all(sender: BulkSender, items: list[Item]) -> None:
    results = [sender.enqueue(item) for item in items]  # every one, even after a False
    assert all(results)


def http_date(seconds_from_now: float) -> str:
    when = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=seconds_from_now)
    return email.utils.format_datetime(when, usegmt=True)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("2.5", 2.5),
        ("-3", 0.0),
        ("soon", None),
        ("Mon, 99 Foo 2024 99:99:99 GMT", None),
        (http_date(-3600), 0.0),  # a date in the past: at once
    ],
    # ids that do not depend on the clock: every parallel worker must collect the same
    ids=["none", "empty", "seconds", "negative", "word", "bad-date", "past-date"],
)
def test_retry_after_values(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_retry_after_as_a_future_http_date() -> None:
    delay = parse_retry_after(http_date(120))
    assert delay is not None
    assert 118 <= delay <= 121  # whole seconds in the date


def test_a_retry_after_date_in_the_past_keeps_the_backoff(make_sender: Make) -> None:
    times: list[float] = []

    def answer(r: httpx.Request, n: int) -> httpx.Response | None:
        times.append(time.monotonic())
        return httpx.Response(503, headers={"Retry-After": http_date(-60)}) if n == 0 else None

    endpoint = Endpoint(answer)
    # a date in the past asks for no wait: the back-off (0.4 s, jitter 0.5-1x) still applies
    sender = make_sender(
        transport=endpoint.transport(), flush_interval=0.01, backoff_base=0.4, backoff_max=0.4
    )
    enqueue_all(sender, events(1))
    assert endpoint.wait_delivered(1, timeout=10)  # no flush: nothing hurries the back-off
    assert sender.stats.retried == 1
    assert times[1] - times[0] >= 0.19


def test_a_garbage_retry_after_falls_back_to_the_backoff(make_sender: Make) -> None:
    endpoint = Endpoint(
        lambda r, n: httpx.Response(429, headers={"Retry-After": "later"}) if n < 2 else None
    )
    sender = make_sender(transport=endpoint.transport(), flush_interval=0.01)
    enqueue_all(sender, events(3))
    assert sender.flush(10)
    assert (sender.stats.sent, sender.stats.retried) == (3, 2)


@pytest.mark.parametrize("code", [301, 302, 304])
def test_a_redirect_is_a_client_error(make_sender: Make, code: int) -> None:
    errors: list[DeliveryError] = []
    endpoint = Endpoint(
        lambda r, n: httpx.Response(code, headers={"Location": "https://elsewhere.example/"})
    )
    sender = make_sender(transport=endpoint.transport(), on_error=errors.append, flush_interval=60)
    enqueue_all(sender, events(2))
    assert sender.flush(10)
    assert len(endpoint.requests) == 1  # neither followed nor retried
    assert sender.stats.dropped == {"client_error": 2}
    assert [(e.reason, e.count, e.status) for e in errors] == [("client_error", 2, code)]
