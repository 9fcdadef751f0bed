"""The tracking calls a JSON-lines log asks for, read as ``ship`` reads it, for the
``plan`` commands (``bucket-logging plan check`` and ``plan infer``).

:func:`logged_calls` hands each line to :class:`~bucket_logging._frontends.jsonlines.JsonLines`
(the tags, ids, rules and times ``ship`` would read) and collects the calls it builds,
sending nothing; a line that is a call already (``{"type": "event", ...}``, as
``bucket-logging serve --json`` prints them or ``GET /_calls`` answers) is taken as it is.

Imports: the JSON-lines front end, the capture lists of the tracking path.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Final

import orjson

from .._items.item import KINDS
from .._tracking import capture as _capture
from .._tracking.tags import TAGS
from .jsonlines import JsonLines

__all__ = ["logged_calls"]

_KINDS: Final = frozenset(KINDS)


def _is_call(obj: dict[str, Any]) -> bool:
    return obj.get("type") in _KINDS and not any(tag in obj for tag in TAGS)


def logged_calls(
    sources: Iterable[tuple[str, Iterable[bytes]]], rules: list[dict[str, Any]] | None = None
) -> Iterator[tuple[dict[str, Any], str]]:
    """Each call the lines of ``sources`` (name, lines) ask for, with its place
    (``name:line``); nothing is sent."""
    front = JsonLines(rules=rules, offline=True)
    front.track_marked = True  # (what the application tracked is in the plan's scope too)
    caught: list[dict[str, Any]] = []
    _capture.start(caught)
    try:
        for name, lines in sources:
            for number, line in enumerate(lines, 1):
                if not line or line.isspace():
                    continue
                try:
                    obj = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                if type(obj) is not dict:
                    continue
                place = f"{name}:{number}"
                if _is_call(obj):
                    yield obj, place
                    continue
                front.track(obj)
                while caught:
                    yield caught.pop(0), place
    finally:
        _capture.stop(caught)
