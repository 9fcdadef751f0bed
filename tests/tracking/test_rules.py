"""Zero-code rules: validation, exact and glob matching, logger globs, attributes, caching."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from support import FakeSender

from bucket_logging import ConfigurationError
from bucket_logging._frontends.handler import BucketHandler
from bucket_logging._tracking.rules import MAX_CACHE, Rule, RuleSet, compile_rules


@pytest.fixture
def make_logger() -> Iterator[Any]:
    made: list[logging.Logger] = []

    def make(rules: list[dict[str, Any]], name: str = "app") -> tuple[logging.Logger, FakeSender]:
        sender = FakeSender()
        logger = logging.getLogger(name)
        logger.handlers[:] = [BucketHandler(sender=sender, rules=rules)]
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
        made.append(logger)
        return logger, sender

    yield make
    for logger in made:
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(logging.NOTSET)


# --------------------------------------------------------------------------- validation


def test_no_rules_compile_to_none() -> None:
    assert compile_rules(None) is None
    assert compile_rules([]) is None


@pytest.mark.parametrize(
    ("rules", "fragment"),
    [
        ("match it", "must be a list"),
        ({"match": "x", "event": "E"}, "must be a list"),
        (["x"], "rule #0 'x': a rule must be a dict"),
        ([{"event": "E"}], "rule #0 {'event': 'E'}: 'match' must be a non-empty string"),
        ([{"match": "", "event": "E"}], "'match' must be a non-empty string"),
        ([{"match": "x"}], "'event' must be a non-empty string"),
        ([{"match": "x", "event": 3}], "'event' must be a non-empty string"),
        ([{"match": "x", "event": "E", "logger": 5}], "'logger' must be a non-empty string"),
        ([{"match": "x", "event": "E", "active": "no"}], "'active' must be true or false"),
        ([{"match": "x", "event": "E", "attributes": "plan"}], "'attributes' must be a list"),
        ([{"match": "x", "event": "E", "attributes": {"a": 1}}], "'attributes' must be a list"),
        ([{"match": "x", "event": "E", "attributes": [1]}], "must hold field names"),
        ([{"match": "x", "event": "E", "evnt": "typo"}], "unknown key(s) evnt"),
    ],
)
def test_bad_rules_are_named(rules: Any, fragment: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        compile_rules(rules)
    assert fragment in str(info.value)


def test_the_bad_rule_is_named_by_position() -> None:
    rules = [{"match": "ok", "event": "Fine"}, {"match": "bad", "event": ""}]
    with pytest.raises(ConfigurationError, match=r"rule #1 \{'match': 'bad'"):
        compile_rules(rules)


def test_handler_rejects_bad_rules_at_construction() -> None:
    with pytest.raises(ConfigurationError, match="rule #0"):
        BucketHandler(sender=FakeSender(), rules=[{"match": "x"}])


# --------------------------------------------------------------------------- matching


def test_exact_and_glob_templates() -> None:
    rules = compile_rules(
        [
            {"match": "User %s signed in", "event": "Exact"},
            {"match": "User * signed out", "event": "Glob"},
            {"match": "Job [0-9]?", "event": "Class"},
        ]
    )
    assert rules is not None
    assert _event(rules.lookup("User %s signed in", "a")) == "Exact"
    assert rules.lookup("User %s signed in!", "a") is None
    assert _event(rules.lookup("User %s signed out", "a")) == "Glob"
    assert _event(rules.lookup("User bob signed out", "a")) == "Glob"
    assert rules.lookup("user bob signed out", "a") is None  # case-sensitive
    assert _event(rules.lookup("Job 7x", "a")) == "Class"
    assert rules.lookup("Job x7", "a") is None


def _event(rule: Rule | None) -> str | None:
    return None if rule is None else rule.event


def test_logger_exact_and_glob() -> None:
    rules = compile_rules(
        [
            {"match": "m", "logger": "app.auth*", "event": "Auth"},
            {"match": "m", "logger": "app.billing", "event": "Billing"},
            {"match": "m", "event": "Anywhere"},
        ]
    )
    assert rules is not None
    assert _event(rules.lookup("m", "app.auth")) == "Auth"
    assert _event(rules.lookup("m", "app.auth.oauth")) == "Auth"
    assert _event(rules.lookup("m", "app.billing")) == "Billing"
    assert _event(rules.lookup("m", "app.billing.invoices")) == "Anywhere"
    assert _event(rules.lookup("m", "other")) == "Anywhere"


def test_first_matching_rule_wins_and_non_strings_never_match() -> None:
    rules = compile_rules([{"match": "*", "event": "First"}, {"match": "x", "event": "Second"}])
    assert rules is not None
    assert _event(rules.lookup("x", "a")) == "First"
    assert rules.lookup(None, "a") is None
    assert rules.lookup(ValueError("x"), "a") is None
    assert rules.lookup(["unhashable"], "a") is None


def test_lookups_are_cached_and_bounded() -> None:
    rules = compile_rules([{"match": "hit *", "logger": "app*", "event": "Hit"}])
    assert isinstance(rules, RuleSet)
    for i in range(MAX_CACHE + 10):
        rules.lookup(f"miss {i}", "app")
    assert len(rules._by_template) <= MAX_CACHE
    assert "miss 0" in rules._by_template  # full: the templates seen first stay cached
    # past the bound, lookups still answer right, uncached
    assert rules.lookup("hit 1", "app.x") is rules.rules[0]
    assert "hit 1" not in rules._by_template
    assert rules.lookup("hit 1", "other") is None
    fresh = compile_rules([{"match": "hit *", "logger": "app*", "event": "Hit"}])
    assert isinstance(fresh, RuleSet)
    assert fresh.lookup("hit 1", "app.x") is fresh.rules[0]
    assert fresh._by_template["hit 1"] == (fresh.rules[0],)
    assert fresh._by_pair[("hit 1", "app.x")] is fresh.rules[0]
    assert fresh.lookup("hit 1", "other") is None
    assert fresh._by_pair[("hit 1", "other")] is None


# --------------------------------------------------------------------------- end to end


def test_rule_turns_untagged_record_into_event(make_logger: Any) -> None:
    logger, sender = make_logger(
        [{"match": "User * signed in", "logger": "app*", "event": "Signed in"}]
    )
    logger.info("User %s signed in", "bob", extra={"user_id": 7, "company_id": "acme"})
    logger.info("Something else", extra={"user_id": 7})
    assert sender.calls == [
        {"type": "event", "event": "Signed in", "userId": 7, "companyId": "acme"}
    ]


def test_rule_logger_glob_excludes_other_loggers(make_logger: Any) -> None:
    logger, sender = make_logger(
        [{"match": "Signed in", "logger": "app.auth*", "event": "Signed in"}], name="web"
    )
    logger.info("Signed in", extra={"user_id": 7})
    assert sender.calls == []


def test_rule_attributes_list(make_logger: Any) -> None:
    logger, sender = make_logger(
        [{"match": "Exported *", "event": "Exported", "attributes": ["format", "rows", "gone"]}]
    )
    logger.info(
        "Exported %d rows", 5, extra={"user_id": 1, "format": "csv", "rows": 5, "secret": "x"}
    )
    assert sender.calls == [
        {
            "type": "event",
            "event": "Exported",
            "userId": 1,
            "attributes": {"format": "csv", "rows": 5},
        }
    ]


def test_rule_attributes_star_takes_structured_fields_only(make_logger: Any) -> None:
    logger, sender = make_logger([{"match": "Viewed", "event": "Viewed", "attributes": "*"}])
    logger.warning(
        "Viewed",
        extra={"user_id": 1, "company_id": 2, "report": "q3", "pages": 4, "_private": 1},
    )
    assert sender.calls == [
        {
            "type": "event",
            "event": "Viewed",
            "userId": 1,
            "companyId": 2,
            "attributes": {"report": "q3", "pages": 4},
        }
    ]


def test_rule_without_fields_sends_no_attributes(make_logger: Any) -> None:
    logger, sender = make_logger([{"match": "Viewed", "event": "Viewed", "attributes": ["a"]}])
    logger.info("Viewed", extra={"user_id": 1})
    assert sender.calls == [{"type": "event", "event": "Viewed", "userId": 1}]


def test_rule_active_and_record_modifiers(make_logger: Any) -> None:
    logger, sender = make_logger(
        [{"match": "Ping", "event": "Pinged", "attributes": ["a"], "active": False}]
    )
    logger.info("Ping", extra={"user_id": 1, "a": 1})
    logger.info("Ping", extra={"user_id": 1, "a": 1, "bucket_attributes": {"b": 2}})
    logger.info("Ping", extra={"user_id": 1, "bucket_active": True})
    assert sender.calls == [
        {
            "type": "event",
            "event": "Pinged",
            "userId": 1,
            "attributes": {"a": 1},
            "context": {"active": False},
        },
        {
            "type": "event",
            "event": "Pinged",
            "userId": 1,
            "attributes": {"a": 1, "b": 2},
            "context": {"active": False},
        },
        {"type": "event", "event": "Pinged", "userId": 1, "context": {"active": True}},
    ]


def test_tags_take_precedence_over_rules(make_logger: Any) -> None:
    logger, sender = make_logger([{"match": "Ping", "event": "From rule"}])
    logger.info("Ping", extra={"user_id": 1, "bucket_event": "From tag"})
    assert sender.calls == [{"type": "event", "event": "From tag", "userId": 1}]


def test_rule_event_without_user_is_reported(
    make_logger: Any, caplog: pytest.LogCaptureFixture
) -> None:
    logger, sender = make_logger([{"match": "Ping", "event": "Pinged"}])
    with caplog.at_level(logging.WARNING, logger="bucket_logging"):
        logger.info("Ping")
    assert sender.calls == []
    assert "event 'Pinged' needs a user id" in caplog.text


def test_rules_never_track_internal_loggers(make_logger: Any) -> None:
    logger, sender = make_logger([{"match": "*", "event": "Anything"}], name="httpx")
    logger.info("HTTP Request: %s", "POST", extra={"user_id": 1})
    assert sender.calls == []
