"""The tag table is the one source of the vocabulary: every check is derived from it."""

from __future__ import annotations

import pytest

from bucket_logging._tracking import tags
from bucket_logging._tracking.tags import (
    CALL_TAGS,
    EVENT,
    MODIFIER_TAGS,
    TAG_TABLE,
    TAGS,
    TYPO_PROBE,
    beyond_event,
    has_call,
    has_modifier,
    has_tags,
    membership_test,
)

NOT_TAGS = ["user_id", "event", "bucket", "bucket_", "bucket_eventx", "message"]


def test_the_table_lists_each_tag_once_with_a_known_role() -> None:
    assert tuple(TAG_TABLE) == TAGS
    assert set(TAG_TABLE.values()) <= {"call", "modifier", "event modifier"}
    assert EVENT == "bucket_event" and TAG_TABLE[EVENT] == "call"
    assert set(TAGS) == CALL_TAGS | MODIFIER_TAGS
    assert not CALL_TAGS & MODIFIER_TAGS


@pytest.mark.parametrize("tag", [*TAGS, TYPO_PROBE, *NOT_TAGS])
def test_every_check_answers_from_the_table(tag: str) -> None:
    record = {"user_id": 1, "msg": "x", tag: "v"}
    role = TAG_TABLE.get(tag)
    assert has_call(record) is (role == "call")
    assert has_modifier(record) is (role in ("modifier", "event modifier"))
    assert has_tags(record) is ((role is not None and tag != EVENT) or tag == TYPO_PROBE)
    assert beyond_event(record) is (tag in CALL_TAGS - {EVENT} or role == "modifier")


def test_a_record_without_any_tag_passes_every_check() -> None:
    record = dict.fromkeys(NOT_TAGS, 1)
    assert not (has_call(record) or has_modifier(record) or has_tags(record))
    assert not beyond_event(record)


def test_a_check_is_an_ordinary_function_of_this_module() -> None:
    assert has_tags.__module__ == tags.__name__
    assert "bucket_event" in (has_tags.__doc__ or "")


@pytest.mark.parametrize("keys", [[], ["ok", "not a name"], ["x'); import os; ('"]])
def test_only_tag_names_make_a_check(keys: list[str]) -> None:
    with pytest.raises(ValueError, match="not tag names"):
        membership_test("probe", keys, "")
