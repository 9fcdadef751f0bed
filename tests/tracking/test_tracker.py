"""The shared path from fields to items: every tag, ids, contextvars, bad input, safety."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import structlog
from support import FakeSender

from bucket_logging import ConfigurationError, Item
from bucket_logging._items.item import format_timestamp
from bucket_logging._tracking.senders import resolve_sender
from bucket_logging._tracking.tracker import ORPHAN, TAGGED, Tracker


@pytest.fixture
def sender() -> FakeSender:
    return FakeSender()


@pytest.fixture
def tracker(sender: FakeSender) -> Tracker:
    return Tracker(sender)


NOW = 1_700_000_000.25


def track(tracker: Tracker, fields: dict[str, Any], template: object = "msg") -> None:
    plan = tracker.wants(fields, "app", template)
    if plan is not None:
        tracker.track(fields, NOW, "app", template, plan)


def reports(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "bucket_logging"]


# --------------------------------------------------------------------------- wants


def test_untagged_fields_want_nothing(tracker: Tracker) -> None:
    assert tracker.wants({"user_id": 1, "msg": "x"}, "app", "x") is None


@pytest.mark.parametrize(
    "tag", ["bucket_event", "bucket_user", "bucket_company", "bucket_feedback"]
)
def test_call_tags_are_tagged(tracker: Tracker, tag: str) -> None:
    assert tracker.wants({tag: True}, "app", "x") is TAGGED


@pytest.mark.parametrize("tag", ["bucket_attributes", "bucket_active"])
def test_modifiers_alone_are_orphans(tracker: Tracker, tag: str) -> None:
    assert tracker.wants({tag: True}, "app", "x") is ORPHAN


# --------------------------------------------------------------------------- each tag


def test_event_with_attributes(tracker: Tracker, sender: FakeSender) -> None:
    track(
        tracker,
        {
            "user_id": 42,
            "bucket_event": "Sent message",
            "bucket_attributes": {"position": "popover", "version": 3},
        },
    )
    assert sender.calls == [
        {
            "type": "event",
            "event": "Sent message",
            "userId": 42,
            "attributes": {"position": "popover", "version": 3},
        }
    ]


def test_timestamp_is_the_time_of_the_log_call(tracker: Tracker, sender: FakeSender) -> None:
    track(tracker, {"user_id": 1, "bucket_event": "E"})
    assert sender.items[0].to_dict()["timestamp"] == format_timestamp(NOW)


def test_user_true_and_dict(tracker: Tracker, sender: FakeSender) -> None:
    track(tracker, {"user_id": "u1", "bucket_user": True})
    track(tracker, {"user_id": "u1", "bucket_user": {"name": "Ada", "plan": "pro"}})
    assert sender.calls == [
        {"type": "user", "userId": "u1"},
        {"type": "user", "userId": "u1", "attributes": {"name": "Ada", "plan": "pro"}},
    ]


def test_false_or_none_tags_send_nothing(
    tracker: Tracker, sender: FakeSender, caplog: pytest.LogCaptureFixture
) -> None:
    track(tracker, {"user_id": 1, "bucket_user": False, "bucket_company": None})
    track(tracker, {"user_id": 1, "bucket_event": None})
    assert sender.calls == []
    assert reports(caplog) == []


def test_company_is_associated_with_known_user(tracker: Tracker, sender: FakeSender) -> None:
    track(tracker, {"company_id": "acme", "bucket_company": {"name": "Acme"}})
    track(tracker, {"company_id": "acme", "user_id": 5, "bucket_company": True})
    assert sender.calls == [
        {"type": "company", "companyId": "acme", "attributes": {"name": "Acme"}},
        {"type": "company", "companyId": "acme", "userId": 5},
    ]


def test_sign_in_record_makes_user_company_and_event(tracker: Tracker, sender: FakeSender) -> None:
    track(
        tracker,
        {
            "user_id": 5,
            "company_id": 9,
            "bucket_user": {"name": "Ada"},
            "bucket_company": {"name": "Acme"},
            "bucket_event": "Signed in",
            "bucket_attributes": {"method": "sso"},
            "bucket_active": False,
        },
    )
    off = {"active": False}
    assert sender.calls == [
        {"type": "user", "userId": 5, "attributes": {"name": "Ada"}, "context": off},
        {
            "type": "company",
            "companyId": 9,
            "userId": 5,
            "attributes": {"name": "Acme"},
            "context": off,
        },
        {
            "type": "event",
            "event": "Signed in",
            "userId": 5,
            "companyId": 9,
            "attributes": {"method": "sso"},
            "context": off,
        },
    ]


def test_feedback_snake_case_becomes_camel_case(tracker: Tracker, sender: FakeSender) -> None:
    track(
        tracker,
        {
            "user_id": 5,
            "company_id": 9,
            "bucket_feedback": {
                "feature_id": "f1",
                "score": 4,
                "comment": "Nice",
                "question": "How was it?",
                "prompted_question": "How was it, really?",
                "source": "widget",
                "prompt_id": "prompt-0123456",
                "feedback_id": "fb1",
                "key": "export",
            },
        },
    )
    assert sender.calls == [
        {
            "type": "feedback",
            "featureId": "f1",
            "score": 4,
            "comment": "Nice",
            "question": "How was it?",
            "promptedQuestion": "How was it, really?",
            "source": "widget",
            "promptId": "prompt-0123456",
            "feedbackId": "fb1",
            "key": "export",
            "userId": 5,
            "companyId": 9,
        }
    ]


def test_feedback_ids_override_the_records(tracker: Tracker, sender: FakeSender) -> None:
    track(
        tracker,
        {
            "user_id": 5,
            "company_id": 9,
            "bucket_feedback": {"feature_id": "f1", "score": 2, "user_id": 6, "company_id": None},
        },
    )
    assert sender.calls == [
        {"type": "feedback", "featureId": "f1", "score": 2, "userId": 6, "companyId": 9}
    ]


def test_bucket_active_alone_on_user(tracker: Tracker, sender: FakeSender) -> None:
    track(tracker, {"user_id": 1, "bucket_user": True, "bucket_active": True})
    assert sender.calls == [{"type": "user", "userId": 1, "context": {"active": True}}]


# --------------------------------------------------------------------------- ids


def test_ids_from_contextvars(tracker: Tracker, sender: FakeSender) -> None:
    structlog.contextvars.bind_contextvars(user_id="ctx-user", company_id="ctx-co")
    track(tracker, {"bucket_event": "E"})
    assert sender.calls == [
        {"type": "event", "event": "E", "userId": "ctx-user", "companyId": "ctx-co"}
    ]


def test_record_ids_win_over_contextvars(tracker: Tracker, sender: FakeSender) -> None:
    structlog.contextvars.bind_contextvars(user_id="ctx-user", company_id="ctx-co")
    track(tracker, {"bucket_event": "E", "user_id": "rec-user"})
    assert sender.calls == [
        {"type": "event", "event": "E", "userId": "rec-user", "companyId": "ctx-co"}
    ]


def test_unbound_and_none_contextvars_are_missing(
    tracker: Tracker, sender: FakeSender, caplog: pytest.LogCaptureFixture
) -> None:
    structlog.contextvars.bind_contextvars(user_id="gone", company_id=None)
    structlog.contextvars.unbind_contextvars("user_id")
    track(tracker, {"bucket_event": "E"})
    assert sender.calls == []
    assert any("needs a user id" in m for m in reports(caplog))


def test_id_field_names_are_configurable(sender: FakeSender) -> None:
    tracker = Tracker(sender, user_id_field="uid", company_id_field="org")
    structlog.contextvars.bind_contextvars(org="o1")
    track(tracker, {"uid": 3, "user_id": 99, "bucket_event": "E"})
    assert sender.calls == [{"type": "event", "event": "E", "userId": 3, "companyId": "o1"}]


def test_uuid_ids_are_sent_as_strings(tracker: Tracker, sender: FakeSender) -> None:
    uid = uuid.UUID(int=7)
    track(tracker, {"user_id": uid, "bucket_user": True})
    assert sender.calls == [{"type": "user", "userId": str(uid)}]


@pytest.mark.parametrize("field", ["", 3, None])
def test_bad_field_names_are_configuration_errors(sender: FakeSender, field: Any) -> None:
    with pytest.raises(ConfigurationError, match="user_id_field"):
        Tracker(sender, user_id_field=field)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        (
            {"user_id": 1, "bucket_event": 5},
            "bucket_event must be the event name (a string), not int",
        ),
        ({"user_id": 1, "bucket_event": ""}, "bucket_event must not be empty"),
        ({"bucket_event": "E"}, "event 'E' needs a user id"),
        ({"user_id": 1, "bucket_user": "x"}, "bucket_user must be True or a dict of attributes"),
        ({"bucket_user": True}, "bucket_user needs a user id"),
        ({"user_id": 1, "bucket_company": True}, "bucket_company needs a company id"),
        ({"company_id": 1, "bucket_company": 3}, "bucket_company must be True or a dict"),
        (
            {"user_id": 1, "bucket_feedback": {"feature_id": "f", "score": 9}},
            "score must be a number from 1 to 5, got 9",
        ),
        ({"user_id": 1, "bucket_feedback": "great"}, "bucket_feedback must be a dict"),
        (
            {"user_id": 1, "bucket_feedback": {"feature_id": "f", "score": 3, "rating": 3}},
            "bucket_feedback has unknown key(s) 'rating'",
        ),
        ({"bucket_feedback": {"feature_id": "f", "score": 3}}, "bucket_feedback needs a user id"),
        (
            {"user_id": 1, "bucket_event": "E", "bucket_attributes": "x"},
            "bucket_attributes must be a dict, not str",
        ),
        ({"user_id": 1, "bucket_user": True, "bucket_active": "no"}, "bucket_active must be True"),
        ({"user_id": True, "bucket_event": "E"}, "userId must be a string or a number, not a bool"),
        (
            {"user_id": 1, "bucket_event": "E", "bucket_attributes": {"blob": "x" * 2_000_001}},
            "over the 1,999,998-byte limit",
        ),
        ({"user_id": 1, "bucket_attributes": {"a": 1}}, "need bucket_event, bucket_user"),
        ({"user_id": 1, "bucket_active": False}, "need bucket_event, bucket_user"),
    ],
)
def test_bad_tags_are_reported_not_sent(
    tracker: Tracker,
    sender: FakeSender,
    caplog: pytest.LogCaptureFixture,
    fields: dict[str, Any],
    fragment: str,
) -> None:
    with caplog.at_level(logging.WARNING, logger="bucket_logging"):
        track(tracker, fields, template="Saved %s")
    assert sender.calls == []
    messages = reports(caplog)
    assert len(messages) == 1, messages
    assert fragment in messages[0]
    assert "'app'" in messages[0] and "'Saved %s'" in messages[0]
    assert all(r.exc_info is None and r.levelno == logging.WARNING for r in caplog.records)


def test_valid_siblings_of_an_invalid_call_are_sent(
    tracker: Tracker, sender: FakeSender, caplog: pytest.LogCaptureFixture
) -> None:
    track(
        tracker,
        {
            "user_id": 1,
            "bucket_user": {"name": "Ada"},
            "bucket_company": True,  # no company id
            "bucket_event": 12,  # not a name
            "bucket_feedback": {"feature_id": "f", "comment": "ok"},
        },
    )
    assert sender.calls == [
        {"type": "user", "userId": 1, "attributes": {"name": "Ada"}},
        {"type": "feedback", "featureId": "f", "comment": "ok", "userId": 1},
    ]
    assert len(reports(caplog)) == 2


def test_attributes_without_event_are_reported_but_user_sent(
    tracker: Tracker, sender: FakeSender, caplog: pytest.LogCaptureFixture
) -> None:
    track(tracker, {"user_id": 1, "bucket_user": True, "bucket_attributes": {"a": 1}})
    assert sender.calls == [{"type": "user", "userId": 1}]
    assert any("bucket_attributes are the attributes of bucket_event" in m for m in reports(caplog))


def test_reports_are_rate_limited(
    tracker: Tracker, sender: FakeSender, caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(50):
        track(tracker, {"bucket_event": 5})
    assert len(reports(caplog)) == 1


# --------------------------------------------------------------------------- safety


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no str for you")

    __repr__ = __str__


def test_unprintable_attribute_never_raises(tracker: Tracker, sender: FakeSender) -> None:
    track(tracker, {"user_id": 1, "bucket_event": "E", "bucket_attributes": {"x": Unprintable()}})
    assert sender.calls == [
        {
            "type": "event",
            "event": "E",
            "userId": 1,
            "attributes": {"x": "<unprintable Unprintable>"},
        }
    ]


def test_unprintable_tag_value_is_reported_safely(
    tracker: Tracker, sender: FakeSender, caplog: pytest.LogCaptureFixture
) -> None:
    track(tracker, {"user_id": 1, "bucket_event": Unprintable()}, template=Unprintable())
    assert sender.calls == []
    assert "<Unprintable>" in reports(caplog)[0]


def test_enqueue_that_raises_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(FakeSender):
        def enqueue(self, item: Item) -> bool:
            raise RuntimeError("queue on fire")

    tracker = Tracker(Broken())
    track(tracker, {"user_id": 1, "bucket_user": True, "bucket_event": "E"})
    messages = reports(caplog)
    assert messages and "queue on fire" in messages[0]


def test_fields_that_raise_are_reported(caplog: pytest.LogCaptureFixture) -> None:
    class Exploding(dict[str, Any]):
        def get(self, key: str, default: Any = None) -> Any:
            raise KeyError("boom")

    tracker = Tracker(FakeSender())
    tracker.track(Exploding(bucket_event="E"), NOW, "app", "m", TAGGED)
    assert any("failed (KeyError" in m for m in reports(caplog))


def test_tracking_does_not_reenter_itself(sender: FakeSender) -> None:
    tracker = Tracker(sender)

    class LogsWhenPrinted:
        def __str__(self) -> str:
            track(tracker, {"user_id": 2, "bucket_event": "Inner"})
            return "outer-value"

    track(
        tracker,
        {"user_id": 1, "bucket_event": "Outer", "bucket_attributes": {"v": LogsWhenPrinted()}},
    )
    assert [c["event"] for c in sender.calls] == ["Outer"]
    assert sender.calls[0]["attributes"] == {"v": "outer-value"}


def test_resolve_sender_checks_its_arguments() -> None:
    with pytest.raises(ConfigurationError, match="either sender="):
        resolve_sender(FakeSender(), "key", None, {})
    with pytest.raises(ConfigurationError, match="either sender="):
        resolve_sender(FakeSender(), None, None, {"offline": True})
    with pytest.raises(ConfigurationError, match="enqueue"):
        resolve_sender(object(), None, None, {})


def test_resolve_sender_gets_the_shared_sender() -> None:
    first = resolve_sender(None, None, "http://127.0.0.1:9", {"offline": True})
    second = resolve_sender(None, None, "http://127.0.0.1:9", {"offline": True})
    assert first is second


def test_untagged_wants_is_cheap(tracker: Tracker) -> None:
    """An untagged record costs a few key probes: wants() never reads a value, walks
    the fields or renders the message (the benchmark measures the time itself)."""

    class Probed(Mapping[str, Any]):
        def __init__(self, data: dict[str, Any]) -> None:
            self.data = data
            self.probes: list[object] = []

        def __contains__(self, key: object) -> bool:
            self.probes.append(key)
            return key in self.data

        def __getitem__(self, key: str) -> Any:
            raise AssertionError(f"read the value of {key!r}")

        def __iter__(self) -> Iterator[str]:
            raise AssertionError("walked the fields")

        def __len__(self) -> int:
            raise AssertionError("counted the fields")

    class Template:
        def __str__(self) -> str:
            raise AssertionError("rendered the message")

        __repr__ = __str__

    fields = Probed(logging.LogRecord("app", 20, "f.py", 1, "m", (), None).__dict__)
    assert tracker.wants(fields, "app", Template()) is None
    # the four call tags, the two modifiers and the typo probe: one hash lookup each
    assert 0 < len(fields.probes) <= 7, fields.probes
    assert len(set(fields.probes)) == len(fields.probes), fields.probes
