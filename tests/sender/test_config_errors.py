"""A wrong setting explains itself: the real cause, the option named, a bad key refused."""

from __future__ import annotations

import re
from typing import Any

import pytest
from support import KEY

from bucket_logging import BulkSender


def test_dictconfig_error_says_the_real_cause(monkeypatch: pytest.MonkeyPatch) -> None:
    import logging.config

    monkeypatch.delenv("BUCKET_TRACKING_KEY", raising=False)
    monkeypatch.delenv("BUCKET_OFFLINE", raising=False)
    monkeypatch.setenv("BUCKET_REQUIRE_KEY", "1")
    config: dict[str, Any] = {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"bucket": {"class": "bucket_logging.BucketHandler"}},
    }
    with pytest.raises(ValueError) as raised:
        logging.config.dictConfig(config)
    message = str(raised.value)
    assert message.startswith("Unable to configure handler 'bucket': ConfigurationError: ")
    assert "no Bucket tracking key" in message


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("flush_interval", "2", 2.0),
        ("max_batch_items", " 100 ", 100),
        ("shutdown_timeout", "0.5", 0.5),
    ],
)
def test_numeric_strings_are_accepted(option: str, value: str, expected: float) -> None:
    sender = BulkSender(KEY, offline=True, **{option: value})
    try:
        assert getattr(sender.config, option) == expected
    finally:
        sender.close(1)


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("flush_interval", "soon", "flush_interval must be a number, got 'soon'"),
        ("max_batch_items", "1.5", "max_batch_items must be a whole number, got '1.5'"),
        ("request_timeout", [1], "request_timeout must be a number, got [1]"),
    ],
)
def test_a_wrong_numeric_option_is_named(option: str, value: object, says: str) -> None:
    from bucket_logging import ConfigurationError

    with pytest.raises(ConfigurationError, match=re.escape(says)):
        BulkSender(KEY, offline=True, **{option: value})


@pytest.mark.parametrize("key", [KEY + "\n", " " + KEY, KEY[:10] + " " + KEY[10:]])
def test_a_key_with_whitespace_is_refused_at_construction(
    key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bucket_logging import BucketHandler, ConfigurationError

    with pytest.raises(ConfigurationError, match="tracking key has") as raised:
        BulkSender(key)
    assert KEY not in str(raised.value)
    monkeypatch.setenv("BUCKET_TRACKING_KEY", key)
    with pytest.raises(ConfigurationError, match="BUCKET_TRACKING_KEY"):
        BucketHandler()
