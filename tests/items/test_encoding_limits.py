"""The 2 MB item limit holds before encoding, not after (issue 15 item 9).

A value with shared references (``a = [x, x]; b = [a, a]; ...``, like YAML aliases)
encodes to 2**levels leaves: before the fix, 27 levels took seconds and a gigabyte on
the logging thread before the size was checked. Every path that encodes attributes
(the everyday event's encoder, the general path of every kind) now stops at the
limit; each test asserts that it is quick and small.
"""

from __future__ import annotations

import logging
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest
from support import FakeSender

from bucket_logging import InvalidItemError, Item
from bucket_logging._items import encoding as _encoding
from bucket_logging._items.encoding import dumps
from bucket_logging._items.item import MAX_ITEM_BYTES, event_body
from bucket_logging._tracking.tracker import Tracker

NOW = 1_700_000_000.25
LEVELS = 27

#: Generous for a shared machine: the bomb took ~4.5 s and 1.2 GB before the fix.
MAX_SECONDS = 0.5
MAX_PEAK_BYTES = 5 * 1024 * 1024


def bomb(
    leaf: Any = "x", levels: int = LEVELS, fan: Callable[[Any], Any] = lambda a: [a, a]
) -> Any:
    value = leaf
    for _ in range(levels):
        value = fan(value)
    return value


class Bounded:
    """Asserts that what runs inside is quick and small."""

    def __enter__(self) -> Bounded:
        tracemalloc.start()
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        elapsed = time.perf_counter() - self.started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert elapsed < MAX_SECONDS, f"took {elapsed:.2f} s"
        assert peak < MAX_PEAK_BYTES, f"peaked at {peak:,} bytes"


SHAPES = [
    pytest.param(lambda: {"a": bomb()}, id="list-of-lists"),
    pytest.param(lambda: {"a": bomb(fan=lambda a: {"l": a, "r": a})}, id="dict-of-dicts"),
    pytest.param(lambda: {"a": bomb(fan=lambda a: (a, a))}, id="tuple-of-tuples"),
    pytest.param(lambda: {"ok": 1, "deep": [1, {"b": bomb()}]}, id="nested-inside"),
    pytest.param(lambda: {"a": bomb(fan=lambda a: [a] * 1000, levels=3)}, id="wide"),
]


@pytest.mark.parametrize("make", SHAPES)
def test_the_everyday_encoder_stops_at_the_limit(make: Callable[[], Any]) -> None:
    attributes = make()
    with Bounded(), pytest.raises(InvalidItemError, match="over the 1,999,998-byte limit"):
        event_body("E", 1, None, attributes, NOW)
    with Bounded(), pytest.raises(InvalidItemError, match="over the 1,999,998-byte limit"):
        event_body("E", 1, "acme", attributes, NOW)


@pytest.mark.parametrize("make", SHAPES)
@pytest.mark.parametrize("kind", ["user", "company", "event"])
def test_the_general_path_stops_at_the_limit(make: Callable[[], Any], kind: str) -> None:
    attributes = make()
    builders: dict[str, Callable[[], Item]] = {
        "user": lambda: Item.user(1, attributes),
        "company": lambda: Item.company("acme", attributes, active=True),
        "event": lambda: Item.event("E", 1, attributes, active=False),
    }
    with Bounded(), pytest.raises(InvalidItemError, match="over the 1,999,998-byte limit"):
        builders[kind]()


def test_a_logged_bomb_is_reported_and_the_next_call_goes_through(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sender = FakeSender()
    tracker = Tracker(sender)
    fields = {"user_id": 1, "bucket_event": "E", "bucket_attributes": {"a": bomb()}}
    with caplog.at_level(logging.WARNING, logger="bucket_logging"), Bounded():
        tracker.track_event(fields, NOW, "app", "msg")  # the everyday path
        tracker.track({"user_id": 1, "bucket_user": {"a": bomb()}}, NOW, "app", "msg")
    messages = [r.getMessage() for r in caplog.records if r.name == "bucket_logging"]
    assert len(messages) == 2, messages  # the event (everyday path), the user (general)
    assert all("over the 1,999,998-byte limit" in m for m in messages)
    tracker.track_event({"user_id": 1, "bucket_event": "E"}, NOW, "app", "msg")
    assert len(sender.items) == 1


def test_shared_references_under_the_limit_are_encoded_in_full() -> None:
    shared = {"k": "v"}
    small = bomb(levels=10)  # 1,024 leaves
    body = event_body("E", 1, None, {"a": shared, "b": shared, "c": small}, NOW)
    assert body is not None
    assert body.count(b'"k":"v"') == 2 and body.count(b'"x"') == 1024
    item = Item.user(1, {"a": shared, "b": shared, "c": small})
    assert item.body.count(b'"x"') == 1024


def test_the_floor_is_a_lower_bound_of_the_encoding() -> None:
    values: list[Any] = [
        {"a": [1, 2.5, None, True, "text", {"b": ("t", "u")}]},
        bomb(levels=8),
        {"é": "ü" * 10, "n": 10**6},
        [],
        {},
    ]
    for value in values:
        assert 0 < _encoding.encoded_floor(value, MAX_ITEM_BYTES) <= len(dumps(value))


def test_a_cycle_with_a_wide_fan_is_cut_at_once() -> None:
    # Cut only at depth 64 before, a list holding itself twice took 2**64 steps.
    loop: list[Any] = []
    loop.extend([loop, loop])
    with Bounded():
        item = Item.event("E", 1, {"loop": loop})
    assert item.to_dict()["attributes"] == {"loop": ["<cycle>", "<cycle>"]}


def test_attributes_with_objects_leave_the_everyday_encoder_without_running_them() -> None:
    class Loud:
        def __str__(self) -> str:
            raise AssertionError("application code ran on the everyday path")

    assert event_body("E", 1, None, {"a": [Loud()]}, NOW) is None
