"""Tracking items: validation, conversion, encoding once, size limit, timestamps."""

from __future__ import annotations

import datetime as dt
import math
import uuid
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import KEY, Endpoint

from bucket_logging import InvalidItemError, Item
from bucket_logging._items.item import (
    MAX_BODY_BYTES,
    MAX_ITEM_BYTES,
    bulk_body,
    dumps,
    encode,
    format_timestamp,
    validate_wire,
)

TS = "2021-01-01T13:37:00.000Z"


def problems_of(build: Any) -> str:
    with pytest.raises(InvalidItemError) as info:
        build()
    return str(info.value)


# --------------------------------------------------------------------------- building


def test_each_kind_builds_with_type_and_timestamp() -> None:
    user = Item.user(1, {"name": "Ada"}, active=False, timestamp=TS)
    company = Item.company("acme", {"plan": "pro"}, user_id=1, timestamp=TS)
    event = Item.event("Sent message", 1, {"v": 3}, company_id="acme", timestamp=TS)
    feedback = Item.feedback(1, feature_id="f1", score=4, comment="nice", timestamp=TS)
    assert user.to_dict() == {
        "type": "user",
        "userId": 1,
        "attributes": {"name": "Ada"},
        "context": {"active": False},
        "timestamp": TS,
    }
    assert company.to_dict() == {
        "type": "company",
        "companyId": "acme",
        "userId": 1,
        "attributes": {"plan": "pro"},
        "timestamp": TS,
    }
    assert event.to_dict() == {
        "type": "event",
        "event": "Sent message",
        "userId": 1,
        "companyId": "acme",
        "attributes": {"v": 3},
        "timestamp": TS,
    }
    assert feedback.to_dict() == {
        "type": "feedback",
        "userId": 1,
        "featureId": "f1",
        "score": 4,
        "comment": "nice",
        "timestamp": TS,
    }
    for item in (user, company, event, feedback):
        assert validate_wire(item.to_dict()) == []
        assert item.kind == item.to_dict()["type"]
    # only user and company updates are deduplicated, and their key has no timestamp
    assert user.dedupe_key is not None and b"timestamp" not in user.dedupe_key
    assert company.dedupe_key is not None
    assert event.dedupe_key is None and feedback.dedupe_key is None


def test_default_timestamp_is_now_in_utc() -> None:
    before = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)
    stamp = Item.event("e", 1).to_dict()["timestamp"]
    after = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1)
    assert stamp.endswith("Z")
    assert before <= dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")) <= after


class CountingStr:
    """Counts how often it is converted: once per encoding."""

    calls = 0

    def __str__(self) -> str:
        CountingStr.calls += 1
        return "counted"


def test_items_are_encoded_once_and_sent_as_is(make_sender: Any) -> None:
    CountingStr.calls = 0
    items = [
        Item.user(1, {"c": CountingStr()}, timestamp=TS),
        Item.company(2, {"c": CountingStr()}, timestamp=TS),
        Item.event("e", 3, {"c": CountingStr()}, timestamp=TS),
        Item.feedback(4, key="feature-key", comment="ok", timestamp=TS),
    ]
    assert CountingStr.calls == 3  # one conversion per item, at build time
    endpoint = Endpoint()
    sender = make_sender(transport=endpoint.transport())
    for item in items:
        assert sender.enqueue(item)
    assert sender.flush(10)
    assert CountingStr.calls == 3  # the sender never encodes again
    sent = b"".join(seen.body for seen in endpoint.requests)
    assert sent == bulk_body(item.body for item in items)
    assert endpoint.requests[0].url == f"https://tracking.bucket.co/{KEY}/bulk"
    assert endpoint.requests[0].headers["content-type"] == "application/json"


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "userId must not be empty"),
        (True, "userId must be a string or a number, not a bool"),
        (False, "userId must be a string or a number, not a bool"),
        (None, "userId is required"),
        (float("nan"), "userId must be a finite number"),
        (float("inf"), "userId must be a finite number"),
        ([1], "userId must be a non-empty string or a number, not list"),
    ],
)
def test_invalid_user_id(value: Any, message: str) -> None:
    for build in (
        lambda: Item.user(value),
        lambda: Item.event("e", value),
        lambda: Item.feedback(value, feature_id="f", score=3),
    ):
        assert message in problems_of(build)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "companyId must not be empty"),
        (True, "companyId must be a string or a number, not a bool"),
        (None, "companyId is required"),
        (float("nan"), "companyId must be a finite number"),
    ],
)
def test_invalid_company_id(value: Any, message: str) -> None:
    assert message in problems_of(lambda: Item.company(value))


def test_optional_ids_are_checked_when_given() -> None:
    assert "userId must not be empty" in problems_of(lambda: Item.company("c", user_id=""))
    assert "companyId must be a string or a number, not a bool" in problems_of(
        lambda: Item.event("e", 1, company_id=True)
    )
    assert "featureId must be a finite number" in problems_of(
        lambda: Item.feedback(1, feature_id=float("nan"), score=1)
    )


def test_valid_ids_are_sent_as_given() -> None:
    assert Item.user(0).to_dict()["userId"] == 0
    assert Item.user(-5).to_dict()["userId"] == -5
    assert Item.user(1.5).to_dict()["userId"] == 1.5
    assert Item.user("u-1").to_dict()["userId"] == "u-1"
    uid = uuid.uuid4()
    assert Item.user(uid).to_dict()["userId"] == str(uid)
    assert Item.company(uid, user_id=uid).to_dict()["companyId"] == str(uid)
    assert Item.feedback(1, feature_id=uid, score=2).to_dict()["featureId"] == str(uid)


def test_invalid_event_name() -> None:
    assert "event must be a non-empty string, not int" in problems_of(lambda: Item.event(5, 1))  # type: ignore[arg-type]
    assert "event must not be empty" in problems_of(lambda: Item.event("", 1))
    assert "event is required" in problems_of(lambda: Item.event(None, 1))  # type: ignore[arg-type]


def test_attributes_must_be_an_object() -> None:
    for bad, name in (([1, 2], "list"), ("x", "str"), (5, "int")):
        assert f"attributes must be an object, not {name}" in problems_of(
            lambda bad=bad: Item.event("e", 1, bad)
        )


def test_context_only_active_bool() -> None:
    assert "context.active must be true or false" in problems_of(
        lambda: Item.user(1, active="yes")  # type: ignore[arg-type]
    )
    assert "context.active must be true or false" in problems_of(
        lambda: Item.event("e", 1, active=1)  # type: ignore[arg-type]
    )
    wire = {"type": "user", "userId": 1, "context": {"active": True, "groupId": 3}}
    assert "context supports only 'active', got groupId" in problems_of(lambda: encode(wire, TS))
    wire = {"type": "event", "event": "e", "userId": 1, "context": [True]}
    assert "context must be an object, not list" in problems_of(lambda: encode(wire, TS))
    # feedback has no context at all
    wire = {"type": "feedback", "userId": 1, "key": "k", "score": 1, "context": {}}
    assert "unknown field(s) for a feedback: context" in problems_of(lambda: encode(wire, TS))


def test_unknown_fields_and_types() -> None:
    wire = {"type": "user", "userId": 1, "email": "a@b"}
    assert "unknown field(s) for a user: email" in problems_of(lambda: encode(wire, None))
    assert "type must be one of user, company, event, feedback" in problems_of(
        lambda: encode({"type": "track", "userId": 1}, None)
    )
    assert validate_wire([1]) == ["an item must be a JSON object, not list"]
    assert validate_wire({"userId": 1}, "event") == ["event is required"]
    assert validate_wire({"type": "user", "userId": 1}, "event") == [
        "type 'user' does not match the event endpoint"
    ]


@pytest.mark.parametrize(
    "stamp",
    [
        "2021-01-01T13:37:00Z",
        "2021-01-01T13:37:00.123Z",
        "2021-01-01T13:37:00.123456789Z",
        "2021-01-01T13:37:00+02:00",
        "2021-01-01T13:37:00-0530",
        "2021-01-01 13:37:00,5+01",
        "2021-01-01T13:37Z",
    ],
)
def test_valid_timestamp_strings(stamp: str) -> None:
    assert Item.event("e", 1, timestamp=stamp).to_dict()["timestamp"] == stamp


@pytest.mark.parametrize(
    "stamp",
    [
        "2021-01-01T13:37:00",  # no zone
        "2021-01-01",
        "yesterday",
        "",
        "2021-13-01T13:37:00Z",  # month 13
        "2021-02-30T13:37:00Z",
        "2021-01-01T25:00:00Z",
        "2021-01-01T13:37:00Z trailing",
    ],
)
def test_invalid_timestamp_strings(stamp: str) -> None:
    message = problems_of(lambda: Item.event("e", 1, timestamp=stamp))
    assert "timestamp must be ISO 8601 with a time zone" in message


def test_timestamp_types() -> None:
    assert "timestamp must be a datetime, a POSIX time or an ISO 8601 string, not bool" in (
        problems_of(lambda: Item.event("e", 1, timestamp=True))
    )
    assert "not list" in problems_of(lambda: Item.event("e", 1, timestamp=[]))  # type: ignore[arg-type]
    # the wire format also allows milliseconds since the epoch, but not negative ones
    assert validate_wire({"type": "event", "event": "e", "userId": 1, "timestamp": 5}) == []
    assert validate_wire({"type": "event", "event": "e", "userId": 1, "timestamp": -5}) == [
        "timestamp must be an ISO 8601 string, not int"
    ]
    assert validate_wire({"type": "event", "event": "e", "userId": 1, "timestamp": 1.5}) == [
        "timestamp must be an ISO 8601 string, not float"
    ]
    when = dt.datetime(2021, 1, 1, 14, 37, 0, 250_000, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert Item.event("e", 1, timestamp=when).to_dict()["timestamp"] == "2021-01-01T13:37:00.250Z"
    assert Item.event("e", 1, timestamp=1609508220.25).to_dict()["timestamp"] == (
        "2021-01-01T13:37:00.250Z"
    )
    assert Item.event("e", 1, timestamp=1609508220).to_dict()["timestamp"] == (
        "2021-01-01T13:37:00.000Z"
    )


def feedback(**fields: Any) -> Item:
    fields.setdefault("feature_id", "f1")
    return Item.feedback(1, **fields)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"score": 9}, "score must be a number from 1 to 5, got 9"),
        ({"score": 0}, "score must be a number from 1 to 5, got 0"),
        ({"score": True}, "score must be a number from 1 to 5, got True"),
        ({"score": "4"}, "score must be a number from 1 to 5, got '4'"),
        ({"score": 3, "feature_id": None}, "feedback needs featureId or key"),
        ({}, "feedback needs a score (1-5), a non-empty comment, or both"),
        ({"comment": ""}, "feedback needs a score (1-5), a non-empty comment, or both"),
        ({"comment": "x" * 4001}, "comment must be 1 to 4000 characters long, got 4001"),
        ({"comment": 5}, "comment must be a string, not int"),
        (
            {"score": 3, "source": "email"},
            "source must be one of api, manual, prompt, sdk, widget, got 'email'",
        ),
        ({"score": 3, "prompt_id": "short"}, "promptId must be 10 to 40 characters long, got 5"),
        ({"score": 3, "prompt_id": "p" * 41}, "promptId must be 10 to 40 characters long, got 41"),
        ({"score": 3, "question": "q" * 257}, "question must be 0 to 256 characters long"),
        (
            {"score": 3, "prompted_question": "q" * 257},
            "promptedQuestion must be 0 to 256 characters long",
        ),
        ({"score": 3, "feature_id": None, "key": ""}, "key must be 1 to 255 characters long"),
        ({"score": 3, "feedback_id": ""}, "feedbackId must be 1 to 255 characters long"),
    ],
)
def test_invalid_feedback(fields: dict[str, Any], message: str) -> None:
    assert message in problems_of(lambda: feedback(**fields))


def test_valid_feedback_variants() -> None:
    assert feedback(score=1).to_dict()["score"] == 1
    assert "comment" not in feedback(score=5, comment="").to_dict()  # no comment
    assert feedback(comment="x" * 4000).to_dict()["comment"] == "x" * 4000
    assert feedback(score=2.5).to_dict()["score"] == 2.5
    item = Item.feedback(1, key="my-feature", score=3, source="widget", prompt_id="p" * 10)
    assert item.to_dict()["key"] == "my-feature"
    assert feedback(score=3, prompt_id="p" * 40, source="api").to_dict()["source"] == "api"


def test_every_problem_is_listed_in_one_error() -> None:
    with pytest.raises(InvalidItemError) as info:
        Item.feedback(True, score=9)
    err = info.value
    assert err.kind == "feedback"
    assert len(err.errors) == 3
    assert str(err).startswith("invalid feedback item: ")
    assert isinstance(err, ValueError)


# --------------------------------------------------------------------------- conversion


class Opaque:
    def __str__(self) -> str:
        return "opaque!"


class BadStr:
    def __str__(self) -> str:
        raise RuntimeError("no str for you")

    def __repr__(self) -> str:
        raise RuntimeError("no repr either")


class BadGetattr:
    """An object whose attribute look-ups blow up (a broken proxy, say)."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"no attribute {name}")

    def __str__(self) -> str:
        return "bad-getattr"


def attrs_of(value: Any) -> Any:
    return Item.event("e", 1, {"v": value}).to_dict()["attributes"]["v"]


def test_values_orjson_cannot_encode_are_converted() -> None:
    uid = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert attrs_of(Decimal("1.5")) == 1.5
    assert attrs_of(Decimal("10")) == 10
    assert attrs_of(Decimal("NaN")) == "NaN"
    assert attrs_of(Decimal("1e30")) == 1e30
    assert sorted(attrs_of({3, 1, 2})) == [1, 2, 3]
    assert attrs_of(frozenset({"a"})) == ["a"]
    assert attrs_of(uid) == str(uid)
    assert attrs_of(b"bytes \xff") == "bytes \ufffd"
    assert attrs_of(bytearray(b"ba")) == "ba"
    assert attrs_of(Opaque()) == "opaque!"
    assert attrs_of(BadStr()) == "<unprintable BadStr>"
    assert attrs_of(BadGetattr()) == "bad-getattr"
    assert attrs_of((1, "two")) == [1, "two"]
    assert attrs_of(dt.date(2021, 1, 2)) == "2021-01-02"


def test_big_ints_are_strings_not_errors() -> None:
    assert attrs_of(2**64 - 1) == 2**64 - 1
    assert attrs_of(-(2**63)) == -(2**63)
    assert attrs_of(2**64) == str(2**64)
    assert attrs_of(-(2**63) - 1) == str(-(2**63) - 1)
    assert attrs_of(10**40) == str(10**40)
    # inside a nested structure, next to values that are fine
    nested = attrs_of({"a": [1, 2**70, {"b": 3}], "c": "d"})
    assert nested == {"a": [1, str(2**70), {"b": 3}], "c": "d"}
    # and as an id: a number, but not one JSON can carry as is
    assert Item.user(2**70).to_dict()["userId"] == str(2**70)


def test_non_str_keys_are_converted_not_dropped() -> None:
    uid = uuid.UUID(int=7)
    value = attrs_of({1: "int", 2.5: "float", None: "none", False: "bool", uid: "uuid"})
    assert value == {"1": "int", "2.5": "float", "null": "none", "false": "bool", str(uid): "uuid"}
    value = attrs_of({(1, 2): "tuple", Opaque(): "object", BadStr(): "bad", "s": 1})
    assert len(value) == 4
    assert value["(1, 2)"] == "tuple"
    assert value["opaque!"] == "object"
    assert value["<unprintable BadStr>"] == "bad"
    assert value["s"] == 1


def test_mixed_values_in_one_item_are_all_kept() -> None:
    attrs: dict[Any, Any] = {
        "dec": Decimal("2.25"),
        "set": {1},
        "big": 2**65,
        "obj": Opaque(),
        "bad": BadStr(),
        (1,): "tuple key",
        "ok": [1, "x", None, True],
    }
    got = Item.company("c", attrs).to_dict()["attributes"]
    assert got == {
        "dec": 2.25,
        "set": [1],
        "big": str(2**65),
        "obj": "opaque!",
        "bad": "<unprintable BadStr>",
        "(1,)": "tuple key",
        "ok": [1, "x", None, True],
    }


def test_lone_surrogates_do_not_raise() -> None:
    # os.fsdecode() and surrogateescape produce these; orjson refuses them
    value = attrs_of("file-\udcff.txt")
    assert value.startswith("file-") and value.endswith(".txt")
    got = Item.event("e\ud800", "user-\udc80", {"k\udcfe": 1}).to_dict()
    assert got["event"].startswith("e")
    assert list(got["attributes"].values()) == [1]
    orjson.loads(dumps({"\udcff": "\udcff"}))


def test_self_referencing_and_deep_values_are_converted() -> None:
    loop: dict[str, Any] = {"a": 1}
    loop["self"] = loop
    got = attrs_of(loop)
    assert got["a"] == 1
    deep: Any = "bottom"
    for _ in range(300):
        deep = [deep]
    item = Item.event("e", 1, {"deep": deep})
    assert "bottom" in item.body.decode()


def test_size_limit_boundary() -> None:
    base = Item.event("e", 1, {"blob": ""}, timestamp=TS)
    overhead = len(base.body)
    exact = Item.event("e", 1, {"blob": "x" * (MAX_ITEM_BYTES - overhead)}, timestamp=TS)
    assert len(exact.body) == MAX_ITEM_BYTES
    assert len(bulk_body([exact.body])) == MAX_BODY_BYTES
    message = problems_of(
        lambda: Item.event("e", 1, {"blob": "x" * (MAX_ITEM_BYTES - overhead + 1)}, timestamp=TS)
    )
    assert "the item is 1,999,999 bytes encoded, over the 1,999,998-byte limit" in message


def test_oversized_item_is_rejected_with_a_message() -> None:
    with pytest.raises(InvalidItemError) as info:
        Item.user(1, {"blob": "é" * 1_500_000})  # 3,000,000 bytes of UTF-8
    assert info.value.kind == "user"
    assert "over the 1,999,998-byte limit" in str(info.value)


# --------------------------------------------------------------------------- timestamps


def reference(when: float) -> str:
    """What datetime says, to the millisecond (truncated, as isoformat does)."""
    stamp = dt.datetime.fromtimestamp(when, dt.timezone.utc).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


@pytest.mark.parametrize(
    "when",
    [
        0.0,
        1.0,
        1.001,
        1.999,
        1.0005,
        59.9999999,  # rounds to the next second at microsecond precision
        1609507020.5,
        1609507020.123456,
        1700000000.001,
        1700000000.999,
        1700000000.9999996,
        1719791999.9995,
        2**31 + 0.25,
        -1.5,
    ],
)
def test_format_timestamp_matches_datetime(when: float) -> None:
    assert format_timestamp(when) == reference(when)


def test_format_timestamp_of_datetimes_keeps_their_millisecond() -> None:
    for micro in (0, 1_000, 1_999, 123_000, 500_500, 998_999, 999_000, 999_999):
        when = dt.datetime(2024, 6, 30, 23, 59, 59, micro, tzinfo=dt.timezone.utc)
        expected = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        assert Item.event("e", 1, timestamp=when).to_dict()["timestamp"] == expected


def test_format_timestamp_cache_is_per_second() -> None:
    assert format_timestamp(1609507020.1) == "2021-01-01T13:17:00.100Z"
    assert format_timestamp(1609507021.2) == "2021-01-01T13:17:01.200Z"
    assert format_timestamp(1609507020.3) == "2021-01-01T13:17:00.300Z"


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=0, max_value=4e9, allow_nan=False))
def test_format_timestamp_property(when: float) -> None:
    assert format_timestamp(when) == reference(when)


# --------------------------------------------------------------------------- properties

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)
json_attributes = st.dictionaries(st.text(max_size=10), json_values, max_size=8)


@settings(max_examples=100, deadline=None)
@given(json_attributes)
def test_json_attributes_round_trip(attributes: dict[str, Any]) -> None:
    for item in (Item.event("e", 1, attributes), Item.user(1, attributes)):
        decoded = orjson.loads(item.body)
        assert decoded["attributes"] == attributes
        assert validate_wire(decoded) == []
        assert len(item.body) <= MAX_ITEM_BYTES


odd_scalars = (
    json_scalars
    | st.integers()
    | st.decimals()
    | st.uuids()
    | st.binary(max_size=10)
    | st.builds(Opaque)
    | st.builds(BadStr)
    | st.datetimes()
    | st.floats()
    | st.text(alphabet=st.characters(codec=None, categories=["Cs", "L"]), max_size=5)
)
odd_values = st.recursive(
    odd_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.frozensets(st.integers(), max_size=3)
        | st.tuples(children)
        | st.dictionaries(st.one_of(st.text(max_size=5), st.integers(), st.uuids()), children)
    ),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.text(max_size=10), odd_values, max_size=6))
def test_anything_encodes_without_raising(attributes: dict[str, Any]) -> None:
    item = Item.event("e", 1, attributes)
    decoded = orjson.loads(item.body)
    assert set(decoded["attributes"]) == set(attributes)
    assert validate_wire(decoded) == []
    for value in decoded["attributes"].values():
        assert value is None or isinstance(value, (bool, int, float, str, list, dict))
        if isinstance(value, float):
            assert math.isfinite(value)


def test_bulk_body_is_a_json_array_of_the_items() -> None:
    items = [Item.event("e", i, timestamp=TS) for i in range(3)]
    body = bulk_body(item.body for item in items)
    assert orjson.loads(body) == [item.to_dict() for item in items]
    assert bulk_body([]) == b"[]"


def test_item_repr_and_equality() -> None:
    a = Item.event("e", 1, timestamp=TS)
    b = Item.event("e", 1, timestamp=TS)
    assert a == b and hash(a) == hash(b)
    assert a != Item.event("e", 2, timestamp=TS)
    assert repr(a) == f"<Item event {len(a.body)} bytes>"


def test_httpx_sees_the_same_bytes() -> None:
    # the body the sender posts is exactly bulk_body(...) of the items
    item = Item.event("e", 1, {"d": Decimal("1.1")}, timestamp=TS)
    request = httpx.Request("POST", "http://x/k/bulk", content=bulk_body([item.body]))
    assert request.read() == b"[" + item.body + b"]"
