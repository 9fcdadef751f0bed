"""The everyday event's hot path and what it rests on.

``event_body`` (the fast encoder) and ``Tracker.track_event`` (which queues its bytes,
or hands everything else to the general path), ``kind_of``, the timestamp cache of
``format_timestamp``, the sender's queue of sealed batches and the spool's ``split_payload``.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import math
import random
import sqlite3
import threading
import tracemalloc
import types
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st
from support import Endpoint, FakeSender, make_queue

from bucket_logging import BucketHandler, BulkSender, InvalidItemError, Item
from bucket_logging._items import item as _items
from bucket_logging._items.item import (
    MAX_BODY_BYTES,
    MAX_ITEM_BYTES,
    event_body,
    format_timestamp,
    kind_of,
)
from bucket_logging._sender.queue import Batch
from bucket_logging._spool.rows import split_payload as _split
from bucket_logging._tracking import tracker as _tracker
from bucket_logging._tracking.tracker import Tracker

Make = Callable[..., BulkSender]

#: The time of the log calls below, and its text.
NOW = 1_700_000_000.25
NOW_TEXT = "2023-11-14T22:13:20.250Z"


class EventDict(dict):  # type: ignore[type-arg]
    """A dict subclass, as a structlog event dict may be."""


class SubStr(str):
    """A str subclass: valid, but not for the fast path."""

    __slots__ = ()


class SubInt(int):
    """An int subclass: valid, but not for the fast path."""


def reports(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "bucket_logging"]


def track_event(tracker: Tracker, fields: Any, template: object = "msg") -> None:
    tracker.track_event(fields, NOW, "app", template)


def general_item(fields: dict[str, Any]) -> Item:
    """The item the general path (Tracker.track) makes of ``fields``."""
    sender = FakeSender()
    Tracker(sender).track(fields, NOW, "app", "msg")
    assert len(sender.items) == 1
    return sender.items[0]


def sized_event(size: int, user_id: int = 1) -> Item:
    """An event whose encoded body is exactly ``size`` bytes."""
    base = len(Item.event("e", user_id, {"p": ""}, timestamp=NOW).body)
    item = Item.event("e", user_id, {"p": "x" * (size - base)}, timestamp=NOW)
    assert len(item.body) == size
    return item


# --------------------------------------------------------------------------- event_body

ATTRS = {"plan": "pro", "seats": 3, "ratio": 0.5, "ok": True, "none": None, "list": [1, "a"]}


@pytest.mark.parametrize(
    ("user_id", "company_id", "attributes", "expected"),
    [
        pytest.param(
            42,
            None,
            ATTRS,
            {"type": "event", "event": "Sent", "userId": 42, "attributes": ATTRS},
            id="no company, attributes",
        ),
        pytest.param(
            "u1",
            None,
            None,
            {"type": "event", "event": "Sent", "userId": "u1"},
            id="no company, no attributes",
        ),
        pytest.param(
            "u1",
            "acme",
            ATTRS,
            {
                "type": "event",
                "event": "Sent",
                "userId": "u1",
                "companyId": "acme",
                "attributes": ATTRS,
            },
            id="str company, attributes",
        ),
        pytest.param(
            42,
            7,
            ATTRS,
            {"type": "event", "event": "Sent", "userId": 42, "companyId": 7, "attributes": ATTRS},
            id="int company, attributes",
        ),
        pytest.param(
            0,
            0,
            None,
            {"type": "event", "event": "Sent", "userId": 0, "companyId": 0},
            id="int company 0, no attributes",
        ),
        pytest.param(
            2**64 - 1,
            -(2**63),
            {},
            {
                "type": "event",
                "event": "Sent",
                "userId": 2**64 - 1,
                "companyId": -(2**63),
                "attributes": {},
            },
            id="64-bit ids, empty attributes",
        ),
    ],
)
def test_event_body_is_the_orjson_encoding_in_wire_order(
    user_id: Any, company_id: Any, attributes: Any, expected: dict[str, Any]
) -> None:
    """event_body gives orjson's bytes of the event in the wire order, as encode() would."""
    body = event_body("Sent", user_id, company_id, attributes, NOW)
    assert body == orjson.dumps({**expected, "timestamp": NOW_TEXT})
    same = Item.event("Sent", user_id, attributes, company_id=company_id, timestamp=NOW)
    assert body == same.body


def _too_deep() -> list[Any]:
    nested: list[Any] = []
    for _ in range(300):
        nested = [nested]
    return nested


@pytest.mark.parametrize(
    ("event", "user_id", "company_id", "attributes"),
    [
        pytest.param(None, 1, None, None, id="event None"),
        pytest.param("", 1, None, None, id="event empty"),
        pytest.param(5, 1, None, None, id="event int"),
        pytest.param(SubStr("E"), 1, None, None, id="event str subclass"),
        pytest.param("E", None, None, None, id="user None"),
        pytest.param("E", "", None, None, id="user empty"),
        pytest.param("E", True, None, None, id="user True"),
        pytest.param("E", False, None, None, id="user False"),
        pytest.param("E", 1.5, None, None, id="user float"),
        pytest.param("E", uuid.UUID(int=1), None, None, id="user UUID"),
        pytest.param("E", SubStr("u1"), None, None, id="user str subclass"),
        pytest.param("E", SubInt(1), None, None, id="user int subclass"),
        pytest.param("E", 2**64, None, None, id="user over 64 bits"),
        pytest.param("E", 1, "", None, id="company empty"),
        pytest.param("E", 1, True, None, id="company True"),
        pytest.param("E", 1, False, {"a": 1}, id="company False"),
        pytest.param("E", 1, 2.5, None, id="company float"),
        pytest.param("E", 1, [1], {"a": 1}, id="company list"),
        pytest.param("E", 1, -(2**63) - 1, None, id="company over 64 bits"),
        pytest.param("E", 1, None, [1], id="attributes list"),
        pytest.param("E", 1, None, "x", id="attributes str"),
        pytest.param("E", 1, None, collections.OrderedDict(a=1), id="attributes OrderedDict"),
        pytest.param("E", 1, "c", EventDict(a=1), id="attributes dict subclass, company"),
        pytest.param("E", 1, "c", types.MappingProxyType({"a": 1}), id="attributes mappingproxy"),
        pytest.param("E", 1, None, {"price": Decimal("9.5")}, id="Decimal"),
        pytest.param("E", 1, None, {"tags": {"a"}}, id="set"),
        pytest.param("E", 1, "c", {"tags": frozenset()}, id="frozenset"),
        pytest.param("E", 1, None, {"n": 2**64}, id="int over 64 bits"),
        pytest.param("E", 1, None, {"n": [-(2**63) - 1]}, id="nested int below 64 bits"),
        pytest.param("E", 1, None, {1: "x"}, id="int key"),
        pytest.param("E", 1, "c", {"a": {None: 1}}, id="nested None key"),
        pytest.param("E", 1, None, {"s": "a\udcffb"}, id="lone surrogate"),
        pytest.param("E", 1, None, {"o": object()}, id="object"),
        pytest.param("E", 1, None, {"b": b"bytes"}, id="bytes"),
        pytest.param("E", 1, None, {"d": _too_deep()}, id="too deep"),
    ],
)
def test_event_body_leaves_everything_else_to_the_general_path(
    event: Any, user_id: Any, company_id: Any, attributes: Any
) -> None:
    """event_body returns None for whatever encode() must validate, convert or explain."""
    assert event_body(event, user_id, company_id, attributes, NOW) is None


def test_event_body_raises_for_an_event_over_the_item_limit() -> None:
    """An event of MAX_ITEM_BYTES is encoded; one byte more raises InvalidItemError."""
    base = len(event_body("E", 1, None, {"blob": ""}, NOW) or b"")
    fits = event_body("E", 1, None, {"blob": "x" * (MAX_ITEM_BYTES - base)}, NOW)
    assert fits is not None and len(fits) == MAX_ITEM_BYTES
    with pytest.raises(InvalidItemError, match="over the 1,999,998-byte limit") as raised:
        event_body("E", 1, None, {"blob": "x" * (MAX_ITEM_BYTES - base + 1)}, NOW)
    assert raised.value.kind == "event"


# --------------------------------------------------------------------------- track_event


@pytest.mark.parametrize(
    ("attributes", "converted"),
    [
        pytest.param(
            {"price": Decimal("9.5"), "tags": {"a"}},
            {"price": 9.5, "tags": ["a"]},
            id="Decimal+set",
        ),
        pytest.param({"count": Decimal("3")}, {"count": 3}, id="integral Decimal"),
        pytest.param({1: "x"}, {"1": "x"}, id="int key"),
        pytest.param({"n": 2**64}, {"n": "18446744073709551616"}, id="int over 64 bits"),
        pytest.param({"s": "a\udcffb"}, {"s": "a\ufffdb"}, id="lone surrogate"),
        pytest.param({"b": b"raw"}, {"b": "raw"}, id="bytes"),
        pytest.param(collections.OrderedDict(a=1), {"a": 1}, id="OrderedDict attributes"),
    ],
)
def test_values_event_body_refuses_are_converted_by_the_general_path(
    attributes: Any, converted: dict[str, Any]
) -> None:
    """track_event hands refused values to track(), which converts them and sends the event."""
    assert event_body("E", 42, None, attributes, NOW) is None  # not the fast path's
    sender = FakeSender()
    track_event(
        Tracker(sender), {"user_id": 42, "bucket_event": "E", "bucket_attributes": attributes}
    )
    assert [item.to_dict() for item in sender.items] == [
        {
            "type": "event",
            "event": "E",
            "userId": 42,
            "attributes": converted,
            "timestamp": NOW_TEXT,
        }
    ]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        pytest.param({"user_id": 1.5}, {"userId": 1.5}, id="float user id"),
        pytest.param(
            {"user_id": uuid.UUID(int=1)},
            {"userId": "00000000-0000-0000-0000-000000000001"},
            id="UUID user id",
        ),
        pytest.param({"user_id": SubStr("u1")}, {"userId": "u1"}, id="str subclass user id"),
        pytest.param(
            {"user_id": 1, "company_id": uuid.UUID(int=2)},
            {"userId": 1, "companyId": "00000000-0000-0000-0000-000000000002"},
            id="UUID company id",
        ),
        pytest.param(
            {"user_id": 1, "bucket_event": SubStr("E")}, {"userId": 1}, id="str subclass event"
        ),
    ],
)
def test_ids_event_body_refuses_are_normalised_by_the_general_path(
    fields: dict[str, Any], expected: dict[str, Any]
) -> None:
    """Valid ids the fast path does not take (float, UUID, subclasses) are still sent."""
    sender = FakeSender()
    track_event(Tracker(sender), {"bucket_event": "E", **fields})
    assert [item.to_dict() for item in sender.items] == [
        {"type": "event", "event": "E", **expected, "timestamp": NOW_TEXT}
    ]


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        pytest.param(
            {"user_id": True}, "userId must be a string or a number, not a bool", id="user"
        ),
        pytest.param(
            {"user_id": 1, "company_id": False},
            "companyId must be a string or a number, not a bool",
            id="company",
        ),
        pytest.param({"user_id": ""}, "userId must not be empty", id="empty user"),
        pytest.param({}, "needs a user id", id="no user"),
    ],
)
def test_a_bad_id_is_reported_and_not_sent(
    caplog: pytest.LogCaptureFixture, fields: dict[str, Any], fragment: str
) -> None:
    """A bool (or missing) id is not sent: the general path reports it on bucket_logging."""
    sender = FakeSender()
    with caplog.at_level(logging.WARNING, logger="bucket_logging"):
        track_event(Tracker(sender), {"bucket_event": "E", **fields}, template="Saved %s")
    assert sender.items == []
    messages = reports(caplog)
    assert len(messages) == 1, messages
    assert fragment in messages[0]
    assert "'app'" in messages[0] and "'Saved %s'" in messages[0]


def test_an_event_over_the_limit_is_reported_once_and_not_encoded_again(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """track_event reports a too-large everyday event itself; encode() never sees it."""
    encoded: list[Any] = []
    monkeypatch.setattr(_tracker, "encode", lambda wire, ts: encoded.append(wire))
    sender = FakeSender()
    fields = {
        "user_id": 1,
        "bucket_event": "E",
        "bucket_attributes": {"blob": "x" * MAX_BODY_BYTES},
    }
    with caplog.at_level(logging.WARNING, logger="bucket_logging"):
        track_event(Tracker(sender), fields)
    assert sender.items == [] and encoded == []
    messages = reports(caplog)
    assert len(messages) == 1, messages
    assert "over the 1,999,998-byte limit" in messages[0]


@pytest.mark.parametrize(
    "mapping",
    [EventDict, collections.OrderedDict, types.MappingProxyType],
    ids=["dict subclass", "OrderedDict", "mappingproxy"],
)
def test_a_fields_mapping_that_is_not_a_plain_dict_gives_the_same_item(
    mapping: Callable[[dict[str, Any]], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fields that are not exactly a dict take the general path and make the same item."""
    fields = {
        "user_id": 42,
        "company_id": "acme",
        "bucket_event": "Sent",
        "bucket_attributes": {"a": 1},
    }
    routed: list[type] = []
    real_track = Tracker.track

    def spy(self: Tracker, fields: Any, *args: Any, **kwargs: Any) -> None:
        routed.append(type(fields))
        real_track(self, fields, *args, **kwargs)

    monkeypatch.setattr(Tracker, "track", spy)
    plain = FakeSender()
    track_event(Tracker(plain), dict(fields))
    other = FakeSender()
    track_event(Tracker(other), mapping(dict(fields)))
    assert routed == [type(mapping({}))]  # the plain dict took the fast path
    assert len(plain.items) == 1
    assert [i.body for i in other.items] == [i.body for i in plain.items]


EVENT_CALL = {"type": "event", "event": "E", "userId": "u1", "timestamp": NOW_TEXT}


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        pytest.param(
            {"bucket_active": False},
            [{**EVENT_CALL, "context": {"active": False}}],
            id="bucket_active",
        ),
        pytest.param(
            {"bucket_user": True},
            [{"type": "user", "userId": "u1", "timestamp": NOW_TEXT}, EVENT_CALL],
            id="bucket_user",
        ),
        pytest.param(
            {"company_id": "c1", "bucket_company": {"plan": "pro"}},
            [
                {
                    "type": "company",
                    "companyId": "c1",
                    "userId": "u1",
                    "attributes": {"plan": "pro"},
                    "timestamp": NOW_TEXT,
                },
                {**EVENT_CALL, "companyId": "c1"},
            ],
            id="bucket_company",
        ),
        pytest.param(
            {"bucket_feedback": {"key": "k", "score": 4}},
            [
                EVENT_CALL,
                {"type": "feedback", "key": "k", "score": 4, "userId": "u1", "timestamp": NOW_TEXT},
            ],
            id="bucket_feedback",
        ),
    ],
)
def test_other_tags_beside_bucket_event_take_the_general_path(
    tags: dict[str, Any], expected: list[dict[str, Any]]
) -> None:
    """Each other tag beside bucket_event is honoured, not skipped by the fast path."""
    sender = FakeSender()
    track_event(Tracker(sender), {"user_id": "u1", "bucket_event": "E", **tags})
    assert [item.to_dict() for item in sender.items] == expected


def test_the_fast_path_takes_bound_ids_from_contextvars() -> None:
    """An id bound with structlog.contextvars is used by the everyday event too."""
    sender = FakeSender()
    structlog.contextvars.bind_contextvars(user_id="bound-u", company_id=9)
    track_event(Tracker(sender), {"bucket_event": "E"})
    assert sender.items[0].body == orjson.dumps(
        {"type": "event", "event": "E", "userId": "bound-u", "companyId": 9, "timestamp": NOW_TEXT}
    )


def test_the_everyday_event_reaches_a_bulk_sender_as_the_general_path_encodes_it(
    make_sender: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    """track_event queues event_body's bytes on a BulkSender: the same entry track() makes."""
    endpoint = Endpoint()
    sender = make_sender(transport=endpoint.transport(), flush_interval=60)
    fields = {
        "user_id": "u1",
        "company_id": 7,
        "bucket_event": "Sent message",
        "bucket_attributes": {"position": "popover", "n": 3, "f": 1.5, "l": [1, None, "é"]},
    }
    encoded: list[dict[str, Any]] = []
    real_encode = _items.encode

    def spy(wire: dict[str, Any], timestamp: str | None) -> Item:
        encoded.append(wire)
        return real_encode(wire, timestamp)

    monkeypatch.setattr(_tracker, "encode", spy)
    track_event(Tracker(sender), dict(fields))
    assert encoded == []  # the fast path: nothing validated or encoded again
    assert sender.flush(10)
    wire = {
        "type": "event",
        "event": "Sent message",
        "userId": "u1",
        "companyId": 7,
        "attributes": fields["bucket_attributes"],
    }
    expected = real_encode(wire, NOW_TEXT)  # the general encoder's bytes
    assert endpoint.delivered == [expected.to_dict()]
    assert endpoint.requests[0].body == b"[" + expected.body + b"]"
    assert expected.to_dict()["timestamp"] == NOW_TEXT


def test_the_fast_path_on_a_closed_bulk_sender_counts_a_dropped_event(
    make_sender: Make, caplog: pytest.LogCaptureFixture
) -> None:
    """An everyday event queued on a closed BulkSender is dropped, counted and reported."""
    sender = make_sender(transport=Endpoint().transport())
    tracker = Tracker(sender)
    sender.close(1)
    with caplog.at_level(logging.WARNING, logger="bucket_logging"):
        track_event(tracker, {"user_id": 1, "bucket_event": "E"})
    assert sender.stats.dropped == {"closed": 1}
    assert any("dropped an event item" in m for m in reports(caplog)), reports(caplog)


def test_a_custom_sender_gets_a_right_sized_item() -> None:
    """The Item a custom sender gets holds only its bytes, not orjson's 4 KiB buffer.

    (sys.getsizeof cannot tell: it reports the length, not the allocation; tracemalloc
    sees orjson's result take ~4 KiB whatever its length.)
    """
    sender = FakeSender()
    tracker = Tracker(sender)
    fields = {"user_id": 42, "bucket_event": "Sent message", "bucket_attributes": {"t": "x" * 60}}
    track_event(tracker, fields)  # warm-up
    n = 200
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(n):
            track_event(tracker, fields)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(sender.items) == n + 1
    item = sender.items[-1]
    assert type(item) is Item and item.kind == "event" and item.dedupe_key is None
    assert item.body == event_body("Sent message", 42, None, {"t": "x" * 60}, NOW)
    assert 100 < len(item.body) < 200
    assert held / n < 1000, f"{held / n:.0f} bytes held per ~{len(item.body)}-byte item"


# --------------------------------------------------------------------------- kind_of


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        pytest.param(Item.user("u1", {"a": 1}).body, "user", id="user"),
        pytest.param(Item.company("c1", user_id="u1").body, "company", id="company"),
        pytest.param(Item.event("e", 1).body, "event", id="event"),
        pytest.param(Item.feedback(1, key="k", score=3).body, "feedback", id="feedback"),
        pytest.param(event_body("e", 1, "c", None, NOW), "event", id="event_body"),
        pytest.param(b'{"x":1, "type":"event"}', "event", id="type not first"),
        pytest.param(b'{ "type" : "user" }', "user", id="spaces"),
        pytest.param(b"[1]", "item", id="list"),
        pytest.param(b"not json", "item", id="not json"),
        pytest.param(b'{"type":5}', "item", id="type not a str"),
        pytest.param(b"{}", "item", id="no type"),
        pytest.param(b"null", "item", id="null"),
        pytest.param(b"", "item", id="empty"),
    ],
)
def test_kind_of(body: bytes, kind: str) -> None:
    """kind_of names an entry by its type, and says "item" when it has none."""
    assert kind_of(body) == kind


# --------------------------------------------------------------------------- timestamps


def reference(when: float) -> str:
    """datetime's text of ``when``: rounded to the microsecond, then cut to the millisecond."""
    moment = dt.datetime.fromtimestamp(when, dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def test_the_reference_rounds_to_the_microsecond_then_cuts() -> None:
    """The reference has format_timestamp's documented semantics (checked on known values)."""
    assert reference(1.001) == "1970-01-01T00:00:01.001Z"  # 1.000999999... rounds up
    assert reference(1.0009994) == "1970-01-01T00:00:01.000Z"
    assert reference(1.0009996) == "1970-01-01T00:00:01.001Z"
    assert reference(1.9999996) == "1970-01-01T00:00:02.000Z"
    assert reference(NOW) == NOW_TEXT
    assert reference(-0.0005) == "1969-12-31T23:59:59.999Z"
    for when in (1.001, 1.0009994, 1.0009996, 1.9999996, NOW, -0.0005):
        assert format_timestamp(when) == reference(when)


TINY = (0.0, 1e-7, 5e-7, 1e-6, 2e-6, 3e-6)
MILLIS = 2**32 * 1000


@st.composite
def near_an_edge(draw: st.DrawFn, millis: int | None = None) -> float:
    """A time just before, at or after a millisecond's edge k/1000."""
    k = draw(st.integers(0, MILLIS - 1)) if millis is None else millis
    tiny = draw(st.sampled_from(TINY))
    return k / 1000 + tiny * draw(st.sampled_from((1, -1)))


@st.composite
def close_pairs(draw: st.DrawFn) -> tuple[float, float]:
    """Two times close together: the second is formatted right after the first."""
    if draw(st.booleans()):
        x = draw(st.floats(min_value=0, max_value=2**32, exclude_max=True))
    else:
        x = draw(near_an_edge())
    if draw(st.booleans()):
        y = x + draw(
            st.floats(min_value=-0.002, max_value=0.002)
            | st.sampled_from((1e-6, -1e-6, 2e-6, -2e-6, 3e-6, 1e-3, -1e-3))
        )
    else:  # the same, the next or the previous millisecond's edge
        k = max(0, round(x * 1000) + draw(st.integers(-1, 1)))
        y = draw(near_an_edge(k))
    return x, y


@settings(max_examples=600, deadline=None)
@given(close_pairs())
def test_format_timestamp_with_its_cache_matches_datetime(pair: tuple[float, float]) -> None:
    """Consecutive calls with close times (the cache reused or not) give datetime's text."""
    x, y = pair
    for when in (x, y, x, y, y):
        assert format_timestamp(when) == reference(when), when


def test_format_timestamp_with_its_cache_matches_datetime_on_random_pairs() -> None:
    """Many seeded pairs of close times, mostly within one millisecond: datetime's text."""
    rng = random.Random(20240611)
    for _ in range(20_000):
        x = rng.uniform(0, 2**32) if rng.random() < 0.5 else rng.randrange(MILLIS) / 1000
        y = x + rng.choice((rng.uniform(-1e-3, 1e-3), rng.uniform(-5e-6, 5e-6)))
        for when in (x, y, x):
            assert format_timestamp(when) == reference(when), when


def test_format_timestamp_of_close_times_from_2_32_on_matches_datetime() -> None:
    """From 2**32 s on, where a float's step nears a microsecond, no text is reused wrongly."""
    rng = random.Random(4242)
    for _ in range(10_000):
        x = rng.uniform(2**32, 253_402_300_000)
        step = math.ulp(x)
        y = x + step * rng.randint(-40, 40)
        for when in (x, y, x):
            assert format_timestamp(when) == reference(when), when


@pytest.mark.parametrize(
    "when",
    [
        -0.0005,
        -1e-7,
        -1.5,
        -86_400.0001,
        -1_234_567.891,
        -(2**31) + 0.0015,
        float(2**32),
        2**32 + 0.0015,
        2**32 + 0.9999996,
        4_102_444_800.999,
        253_402_300_799.5,
    ],
)
def test_format_timestamp_outside_the_cached_range(when: float) -> None:
    """Negative times and times from 2**32 on give datetime's text, after a cached call too."""
    assert format_timestamp(when) == reference(when)
    neighbour = abs(when) % 2**32  # a time that fills the cache, then the time again
    assert format_timestamp(neighbour) == reference(neighbour)
    assert format_timestamp(when) == reference(when)
    assert format_timestamp(when + 1e-4) == reference(when + 1e-4)


def test_format_timestamp_never_reuses_the_text_of_another_millisecond() -> None:
    """Right after a millisecond's edge (beyond the rounding) the next text is given."""
    for k in (1, 999, 1_700_000_000_250, MILLIS - 1):
        inside = k / 1000 + 0.0005
        assert format_timestamp(inside) == reference(inside)
        for when in (
            (k + 1) / 1000 + 1e-6,
            (k + 1) / 1000 + 4e-7,
            (k + 1) / 1000 - 1e-6,
            (k + 1) / 1000 - 4e-7,
            (k + 1) / 1000,
        ):
            format_timestamp(inside)
            assert format_timestamp(when) == reference(when), (k, when)


# --------------------------------------------------------------------------- batches


def gated_endpoint() -> tuple[Endpoint, threading.Event]:
    """An endpoint whose answers wait for the gate (the sender's loop waits with them)."""
    gate = threading.Event()

    def answer(request: httpx.Request, n: int) -> None:
        assert gate.wait(10)

    return Endpoint(answer=answer), gate


def test_batches_are_sealed_by_count_and_cut_back_into_their_entries() -> None:
    """max_batch_items=3 seals batches of 3; Batch.entries() and body() give the items back."""
    queue, wakes = make_queue(max_batch_items=3)
    items = [Item.event(f"e{i}", i, {"i": i, "pad": "x" * i}) for i in range(8)]
    for item in items:
        assert queue.put_locked(item.body)
    assert wakes == [1]  # one wake-up until the sender takes a batch
    assert queue.sizes() == (0, [3, 3, 2])
    assert queue.ledger.stats().queued == 8
    taken = queue.take(partial=False)
    assert taken is not None
    batch, ticket = taken
    assert len(batch) == 3 and ticket.count == 3
    assert batch.entries() == [item.body for item in items[:3]]
    assert batch.entry_bytes() == sum(len(item.body) for item in items[:3])
    assert orjson.loads(batch.body()) == [item.to_dict() for item in items[:3]]
    assert batch.entries() == [item.body for item in items[:3]]  # body() kept them
    second = queue.take(partial=False)
    assert second is not None and second[0].entries() == [i.body for i in items[3:6]]
    assert queue.take(partial=False) is None  # the one being filled waits
    last = queue.take(partial=True)
    assert last is not None and last[0].entries() == [i.body for i in items[6:]]
    assert queue.take() is None
    assert queue.sizes() == (0, [0])
    assert queue.ledger.pending == 8  # in flight until delivery counts them


def test_a_sender_sends_full_batches_and_the_rest_on_a_flush(make_sender: Make) -> None:
    """max_batch_items=3: full batches go out at once, the partial one on the flush."""
    endpoint, gate = gated_endpoint()
    sender = make_sender(
        transport=endpoint.transport(),
        max_batch_items=3,
        max_concurrent_requests=1,
        flush_interval=60,
    )
    items = [Item.event(f"e{i}", i, {"i": i, "pad": "x" * i}) for i in range(8)]
    try:
        for item in items[:3]:
            assert sender.enqueue(item)
        assert endpoint.wait_requests(1)  # the first batch is in flight: the loop waits
        for item in items[3:]:
            assert sender.enqueue(item)
        assert sender.pending == 8
    finally:
        gate.set()
    assert sender.flush(10)
    assert endpoint.delivered == [item.to_dict() for item in items]
    assert [len(seen.items) for seen in endpoint.requests] == [3, 3, 2]


def test_batch_entries_of_an_open_batch() -> None:
    """A Batch cuts its body back into entries whatever their sizes."""
    bodies = [Item.event("e", i, {"pad": "x" * i}).body for i in range(5)]
    buf = bytearray(b"[")
    ends = []
    for body in bodies:
        buf.extend(body)
        ends.append(len(buf))
        buf.append(0x2C)
    assert Batch(buf, ends).entries() == bodies


@pytest.mark.parametrize(
    ("sizes", "bodies"),
    [
        pytest.param((1_000_000, 999_997), [2_000_000], id="two fill one body exactly"),
        pytest.param((1_000_000, 999_998), [1_000_002, 1_000_000], id="one byte over: sealed"),
        pytest.param((MAX_ITEM_BYTES, 100), [MAX_BODY_BYTES, 102], id="a maximal item"),
        pytest.param((700_000, 700_000, 700_000), [1_400_003, 700_002], id="two of three fit"),
    ],
)
def test_batches_are_sealed_by_bytes(
    make_sender: Make, sizes: tuple[int, ...], bodies: list[int]
) -> None:
    """No body exceeds 2,000,000 bytes, a body of exactly that is allowed, all are delivered."""
    endpoint = Endpoint()
    sender = make_sender(transport=endpoint.transport(), flush_interval=60)
    items = [sized_event(size, user_id=i) for i, size in enumerate(sizes)]
    for item in items:
        assert sender.enqueue(item)
    assert sender.flush(10)
    assert [len(seen.body) for seen in endpoint.requests] == bodies
    assert endpoint.delivered == [item.to_dict() for item in items]
    assert sender.stats.sent == len(items)


# --------------------------------------------------------------------------- spool


@pytest.mark.parametrize(
    "kinds", [b"[]", b'["event","user","company"]'], ids=["no kinds", "legacy kinds"]
)
def test_spool_split_cuts_a_payload_into_its_entries(kinds: bytes) -> None:
    """_split takes the current empty kinds list and a legacy one of the right length."""
    entries = [Item.event("e", 1).body, Item.user("u", {"a": 1}).body, Item.company("c").body]
    sizes = orjson.dumps([len(e) for e in entries])
    assert _split(kinds, sizes, b"".join(entries)) == entries


def test_spool_split_of_an_empty_payload() -> None:
    """An empty payload has no entries."""
    assert _split(b"[]", b"[]", b"") == []


@pytest.mark.parametrize(
    ("kinds", "sizes", "bodies"),
    [
        pytest.param(b"[]", b"[3,3]", b"abcde", id="sizes over"),
        pytest.param(b"[]", b"[3,1]", b"abcde", id="sizes under"),
        pytest.param(b"[]", b"[]", b"abc", id="no sizes"),
        pytest.param(b'["event"]', b"[3,2]", b"abcde", id="legacy kinds short"),
        pytest.param(b'["event","user","user"]', b"[3,2]", b"abcde", id="legacy kinds long"),
    ],
)
def test_spool_split_refuses_an_inconsistent_payload(
    kinds: bytes, sizes: bytes, bodies: bytes
) -> None:
    """Sizes that do not add up, or a legacy kinds list of another length, are an error."""
    with pytest.raises(sqlite3.DatabaseError, match="inconsistent"):
        _split(kinds, sizes, bodies)


def test_a_rule_event_takes_the_everyday_encoder_and_keeps_the_guard() -> None:
    """track() encodes a plain event with event_body too; a custom sender's enqueue,
    called inside track(), still runs with the re-entry guard held."""
    log = logging.getLogger("hot.rules")
    nested: list[bool] = []

    class Audit(FakeSender):
        def enqueue(self, item: Item) -> bool:
            log.info("audit %s", item.kind, extra={"user_id": "a"})  # matches the rule
            nested.append(True)
            return super().enqueue(item)

    sender = Audit()
    handler = BucketHandler(
        sender=sender,
        rules=[{"match": "audit %s", "event": "Audited"}, {"match": "hi", "event": "Hi"}],
    )
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        log.info("hi", extra={"user_id": "u1", "company_id": 7})
        # beside another tag: the event first, then the feedback, both inside track()
        log.info(
            "tagged",
            extra={
                "user_id": "u1",
                "bucket_event": "Rated",
                "bucket_feedback": {"feature_id": "f1", "score": 4},
            },
        )
    finally:
        log.handlers[:] = []
    calls = [item.to_dict() for item in sender.items]
    assert [c.get("event", c["type"]) for c in calls] == ["Hi", "Rated", "feedback"]
    assert nested == [True, True, True]  # what enqueue logged was never tracked
    body = sender.items[0].body
    expected = _items.encode(
        {"type": "event", "event": "Hi", "userId": "u1", "companyId": 7},
        orjson.loads(body)["timestamp"],
    )
    assert body == expected.body


# --------------------------------------------------------------------------- the inbox


def test_the_inbox_keeps_the_order_of_the_fast_path_and_enqueue(make_sender: Make) -> None:
    """Entries put lock-free (the trackers' path) and enqueued under the lock go out in
    the order they were queued: the lock's path moves the inbox first."""
    endpoint = Endpoint()
    sender = make_sender(transport=endpoint.transport(), flush_interval=60)
    items = [Item.event(f"e{i}", i) for i in range(6)]
    for i, item in enumerate(items):
        if i % 3 == 2:
            assert sender.enqueue(item)
        else:
            assert sender.put_encoded(orjson.dumps(item.to_dict()))
    assert sender.flush(10)
    assert endpoint.delivered == [item.to_dict() for item in items]


def test_a_batch_worth_in_the_inbox_is_sent_without_waiting(make_sender: Make) -> None:
    """With max_batch_items=3, the third entry put lock-free seals a batch and wakes the
    sender: it goes out long before the flush interval."""
    endpoint = Endpoint()
    sender = make_sender(transport=endpoint.transport(), flush_interval=60, max_batch_items=3)
    for i in range(3):
        assert sender.put_encoded(Item.event("e", i).body)
    assert endpoint.wait_delivered(3)


def test_a_large_entry_skips_the_inbox() -> None:
    """Entries over 4 KiB are counted at once (the inbox's memory stays bounded)."""
    queue, _ = make_queue()
    small = Item.event("e", 1).body
    large = Item.event("e", 2, {"pad": "x" * 5000}).body
    assert queue.put(small)
    assert queue.sizes() == (1, [0])  # in the inbox: not counted yet
    assert queue.put(large)
    assert queue.sizes() == (0, [2])  # moved into the batch first, in order
    taken = queue.take()
    assert taken is not None and taken[0].entries() == [small, large]


def test_an_inbox_entry_dropped_for_a_full_queue_is_counted_and_reported(
    make_sender: Make, caplog: pytest.LogCaptureFixture
) -> None:
    sender = make_sender(transport=Endpoint().transport(), flush_interval=60, max_queue_items=2)
    with caplog.at_level(logging.WARNING, logger="bucket_logging"):
        for i in range(3):
            assert sender.put_encoded(Item.event("e", i).body)  # accepted into the inbox
        stats = sender.stats  # counts: the inbox is moved into the batches
        assert sender.flush(10)
    assert stats.queued == 2 and stats.dropped == {"queue_full": 1}
    assert any("queue is full" in m for m in reports(caplog)), reports(caplog)


def test_entries_put_while_closing_are_counted(make_sender: Make) -> None:
    """An entry in the inbox when close() gives up is counted as not delivered."""
    gate = threading.Event()

    def answer(request: httpx.Request) -> httpx.Response:
        gate.wait(10)
        return httpx.Response(200, json={"success": True})

    sender = make_sender(transport=httpx.MockTransport(answer), flush_interval=60)
    for i in range(5):
        assert sender.put_encoded(Item.event("e", i).body)
    sender.close(0.2)
    gate.set()
    stats = sender.stats
    assert stats.pending == 0
    assert stats.sent + sum(stats.dropped.values()) == 5, stats
