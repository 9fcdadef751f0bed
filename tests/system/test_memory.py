"""Queued items hold what their size says: the memory bound counts real bytes.

An item is its encoded body, a 16-byte digest for an update, and one small object:
measured with tracemalloc, 2,000 of them cost exactly the sum of those objects plus a
list slot each, nothing hidden (before, each body kept orjson's 4 KiB output buffer).
"""

from __future__ import annotations

import sys
import tracemalloc
from collections.abc import Callable

from bucket_logging import Item

#: 2,000 items are measured.
COUNT = 2000

#: A list's slot (8 bytes) and its over-allocation (at most an eighth more, and a few
#: bytes of rounding): what holding the items in the measuring list costs.
SLOT = 16


def _bytes_per_item(build: Callable[[int], Item]) -> float:
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        items = [build(i) for i in range(COUNT)]
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(items) == COUNT
    return (after - before) / len(items)


def _parts(item: Item) -> int:
    """The bytes of the objects an item holds of its own (its kind is a shared string)."""
    key = sys.getsizeof(item.dedupe_key) if item.dedupe_key is not None else 0
    return sys.getsizeof(item) + sys.getsizeof(item.body) + key


def test_an_event_item_costs_about_its_encoded_size() -> None:
    item = Item.event("Sent message", 1, {"position": "popover"})
    assert item.dedupe_key is None
    per_item = _bytes_per_item(lambda i: Item.event("Sent message", i, {"position": "popover"}))
    # the body, its bytes header, the Item object and a list slot: no 4 KiB buffer kept
    assert _parts(item) <= per_item <= _parts(item) + SLOT, (per_item, _parts(item))
    assert sys.getsizeof(item.body) - len(item.body) < 64  # a bytes object's header alone


def test_a_user_item_and_its_dedupe_key_are_right_sized() -> None:
    item = Item.user(1, {"name": "Ada"})
    assert item.dedupe_key is not None and len(item.dedupe_key) == 16  # a digest, no copy
    per_item = _bytes_per_item(lambda i: Item.user(i, {"name": "Ada"}))
    assert _parts(item) <= per_item <= _parts(item) + SLOT, (per_item, _parts(item))
