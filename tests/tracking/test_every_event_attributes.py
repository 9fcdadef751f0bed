"""Attributes on every event (environment, release, region: posthog's super properties,
sentry's ``environment``/``release``): the ``attributes`` option, or the environment's
``BUCKET_ATTRIBUTES`` (JSON) and ``BUCKET_ATTRIBUTES_<NAME>=value``. An event's own
attributes win; user and company calls keep their own (a user's traits, not a deploy's)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from support import KEY

from bucket_logging import BucketHandler, BulkSender, ConfigurationError, TrackingServer
from bucket_logging.testing import capture_tracking


@pytest.fixture
def log() -> Iterator[logging.Logger]:
    logger = logging.getLogger("tests.every_event")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger
    for handler in list(logger.handlers):
        logger.removeHandler(handler)


@pytest.fixture(autouse=True)
def _no_attributes_env(monkeypatch: pytest.MonkeyPatch, clean_env: None) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("BUCKET_ATTRIBUTES"):
            monkeypatch.delenv(name)


def _calls(log: logging.Logger, **options: Any) -> list[dict[str, Any]]:
    sender = BulkSender(offline=True, **options)
    log.addHandler(BucketHandler(sender=sender))
    with capture_tracking() as calls:
        log.info("a", extra={"bucket_event": "Plain", "user_id": 1})
        log.info("b", extra={"bucket_event": "Own", "user_id": 1, "bucket_attributes": {"n": 5}})
        log.info("c", extra={"bucket_event": "Inactive", "user_id": 1, "bucket_active": False})
        log.info("u", extra={"user_id": 1, "bucket_user": {"name": "Ada"}})
        log.info("o", extra={"user_id": 1, "company_id": "acme", "bucket_company": {"plan": "x"}})
    return list(calls)


def test_the_option_adds_attributes_to_every_event_and_an_events_own_win(
    log: logging.Logger,
) -> None:
    calls = _calls(log, attributes={"environment": "prod", "n": 0})
    assert [c.get("attributes") for c in calls] == [
        {"environment": "prod", "n": 0},  # the everyday path
        {"environment": "prod", "n": 5},  # the event's own n wins
        {"environment": "prod", "n": 0},  # the general path (bucket_active beside it)
        {"name": "Ada"},  # a user's traits are its own
        {"plan": "x"},
    ]


def test_from_the_environment_json_then_one_variable_per_attribute(
    log: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BUCKET_ATTRIBUTES", '{"environment": "staging", "region": "eu"}')
    monkeypatch.setenv("BUCKET_ATTRIBUTES_ENVIRONMENT", "prod")  # wins over the JSON's
    monkeypatch.setenv("BUCKET_ATTRIBUTES_RELEASE", "1.2.3")
    [plain, own, *_] = _calls(log)
    assert plain["attributes"] == {"environment": "prod", "region": "eu", "release": "1.2.3"}
    assert own["attributes"] == {"environment": "prod", "region": "eu", "release": "1.2.3", "n": 5}
    # the argument, when given, is the whole setting (the one rule of every option)
    assert BulkSender(offline=True, attributes={"a": "b"}).config.attributes == {"a": "b"}


@pytest.mark.parametrize("text", ["[1, 2]", "{not json", '{"a": 1'])
def test_a_bad_json_variable_is_named(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setenv("BUCKET_ATTRIBUTES", text)
    with pytest.raises(ConfigurationError, match=r"^BUCKET_ATTRIBUTES must be a"):
        BulkSender(offline=True)


def test_a_bad_argument_is_named() -> None:
    with pytest.raises(ConfigurationError, match=r"^attributes must be a dict"):
        BulkSender(offline=True, attributes=["environment"])  # type: ignore[arg-type]


def test_the_attributes_reach_the_server(log: logging.Logger) -> None:
    with TrackingServer() as server:
        sender = BulkSender(KEY, base_url=server.url, attributes={"release": "1.2.3"})
        log.addHandler(BucketHandler(sender=sender))
        try:
            log.info("a", extra={"bucket_event": "Shipped", "user_id": "u1"})
            assert sender.flush(10)
        finally:
            sender.close(5)
        [call] = server.calls
    assert call["attributes"] == {"release": "1.2.3"}
