"""The spool's row format: one row is one batch (see :mod:`bucket_logging._spool.store`).

One row is one batch (up to ``max_batch_items`` items, at most 2,000,000 bytes),
not one item: the items' encoded bytes are stored back to back with their sizes,
so that persisting and deleting 1,000 items is one insert and one
delete. The bytes live in a table of their own, so that claiming, renewing and
releasing (small updates) never rewrite them. Schema (version 1)::

    batches(id        INTEGER PRIMARY KEY AUTOINCREMENT  -- spool order, oldest first
            dest      TEXT     -- sha256 of the tracking key: a spool shared by
                               -- several apps never sends a batch to the wrong one
            created   REAL     -- time.time() when written, for spool_max_age
            items     INTEGER  -- how many items
            bytes     INTEGER  -- size of its payload
            owner     TEXT     -- "host/pid-namespace/pid/token" of the holder, or NULL
            lease     REAL     -- time.time() until which the owner's claim holds
            attempted INTEGER) -- 1: a request may have carried it (a replay may
                               -- then be a duplicate; counted as ``redelivered``)
    payloads(id       INTEGER PRIMARY KEY  -- the batch's id
             kinds    BLOB     -- a JSON list, one entry per item ("item"; 0.1.0
                               -- wrote each item's kind and needs the length)
             sizes    BLOB     -- JSON list of the items' sizes in bytes
             bodies   BLOB)    -- the items' encoded JSON objects, back to back
"""

from __future__ import annotations

import hashlib
import itertools
import sqlite3
from collections.abc import Sequence
from typing import Final

import orjson

from .._items.validation import MAX_ITEM_BYTES, validate_wire
from . import marks

__all__ = [
    "SCHEMA",
    "SCHEMA_VERSION",
    "check_entries",
    "destination",
    "payload",
    "split_payload",
]

#: The version of the format below; a file of another is refused.
SCHEMA_VERSION: Final = "1"

#: The statements that make the tables (idempotent), the journal's marks among them.
SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS batches ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " dest TEXT NOT NULL,"
    " created REAL NOT NULL,"
    " items INTEGER NOT NULL,"
    " bytes INTEGER NOT NULL,"
    " owner TEXT,"
    " lease REAL NOT NULL DEFAULT 0,"
    " attempted INTEGER NOT NULL DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS payloads ("
    " id INTEGER PRIMARY KEY,"
    " kinds BLOB NOT NULL,"
    " sizes BLOB NOT NULL,"
    " bodies BLOB NOT NULL)",
    "CREATE TRIGGER IF NOT EXISTS batches_delete AFTER DELETE ON batches"
    " BEGIN DELETE FROM payloads WHERE id = old.id; END",
    "CREATE INDEX IF NOT EXISTS batches_dest ON batches (dest, id)",
    "CREATE INDEX IF NOT EXISTS batches_owner ON batches (owner)",
    "CREATE INDEX IF NOT EXISTS batches_created ON batches (created)",
    marks.SCHEMA,
)


def payload(bodies: Sequence[bytes]) -> tuple[bytes, bytes, bytes]:
    """A batch's ``kinds``, ``sizes`` and ``bodies`` columns (read back by :func:`split_payload`).

    The entries name their ``type`` themselves: ``kinds`` lists ``"item"`` for each,
    kept for version 0.1.0, which reads it (for its messages) and refuses a row whose
    list is not as long as the batch. This version accepts that list or an empty one.
    """
    kinds = orjson.dumps(["item"] * len(bodies))
    return kinds, orjson.dumps([len(b) for b in bodies]), b"".join(bodies)


def split_payload(kinds_blob: bytes, sizes_blob: bytes, bodies: bytes) -> list[bytes]:
    """Cut a batch's payload back into its entries (deduplicated once already)."""
    try:
        kinds = orjson.loads(kinds_blob)
        sizes = orjson.loads(sizes_blob)
    except (orjson.JSONDecodeError, TypeError) as exc:
        raise sqlite3.DatabaseError(f"a spooled batch is inconsistent ({exc})") from None
    if (
        type(kinds) is not list
        or type(sizes) is not list
        or not all(type(n) is int and n >= 0 for n in sizes)
        or (kinds and len(kinds) != len(sizes))
        or type(bodies) is not bytes
        or sum(sizes) != len(bodies)
    ):
        raise sqlite3.DatabaseError("a spooled batch is inconsistent")
    ends = list(itertools.accumulate(sizes))
    return list(map(bodies.__getitem__, map(slice, [0, *ends[:-1]], ends)))


def destination(tracking_key: str) -> str:
    """The spool's id of a tracking key (its SHA-256: the key is never stored)."""
    return hashlib.sha256(tracking_key.encode("utf-8", "replace")).hexdigest()[:32]


def check_entries(entries: Sequence[bytes]) -> None:
    """The checks a fresh item passes, for entries read back from a spool written by
    another process (or version): each at most ``MAX_ITEM_BYTES``, a JSON object the
    API accepts. Raises :class:`sqlite3.DatabaseError` naming the first bad entry."""
    for n, entry in enumerate(entries):
        if len(entry) > MAX_ITEM_BYTES:
            problem = f"{len(entry):,} bytes, over the {MAX_ITEM_BYTES:,}-byte limit"
        else:
            try:
                problems = validate_wire(orjson.loads(entry))
            except orjson.JSONDecodeError as exc:
                problems = [f"not JSON ({exc})"]
            if not problems:
                continue
            problem = "; ".join(problems[:3])
        raise sqlite3.DatabaseError(f"entry {n} of a spooled batch is invalid: {problem}")
