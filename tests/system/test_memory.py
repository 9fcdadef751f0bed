"""Queued items hold what their size says: the memory bound counts real bytes."""

from __future__ import annotations

import tracemalloc

from bucket_logging import Item


def _bytes_per_item(build: object) -> float:
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        items = [build(i) for i in range(2000)]  # type: ignore[operator]
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(items) == 2000
    return (after - before) / len(items)


def test_an_event_item_costs_about_its_encoded_size() -> None:
    body = len(Item.event("Sent message", 1, {"position": "popover"}).body)
    per_item = _bytes_per_item(lambda i: Item.event("Sent message", i, {"position": "popover"}))
    # body bytes + bytes object header + Item object + list slot; not orjson's 4 KiB buffer
    assert per_item < body + 300, per_item


def test_a_user_item_and_its_dedupe_key_are_right_sized() -> None:
    item = Item.user(1, {"name": "Ada"})
    assert item.dedupe_key is not None and len(item.dedupe_key) == 16  # a digest, no copy
    size = len(item.body) + len(item.dedupe_key)
    per_item = _bytes_per_item(lambda i: Item.user(i, {"name": "Ada"}))
    assert per_item < size + 400, per_item
