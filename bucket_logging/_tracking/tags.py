"""The tags a log record carries, and the fields that are never its attributes.

A record asks for tracking calls with ``bucket_*`` tags (:data:`TAGS`); a front
end's first, cheapest step is :func:`has_tags`. :data:`RESERVED` lists the fields a
rule's ``"attributes": "*"`` never takes.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from .._runtime.state import state as _state

__all__ = [
    "CALL_TAGS",
    "EVENT",
    "MODIFIER_TAGS",
    "ORPHAN",
    "RESERVED",
    "TAGGED",
    "TAGS",
    "TAG_TABLE",
    "TYPO_PROBE",
    "UNKNOWN",
    "beyond_event",
    "checked_templates",
    "has_call",
    "has_modifier",
    "has_tags",
    "membership_test",
    "misspelled",
    "unchecked",
]

#: THE tag vocabulary, the one source of it: each tag and what it asks for. A *call*
#: tag is a call on its own; a *modifier* needs a call tag (or a matching rule) beside
#: it (an *event modifier* only beside the event). Every check below is derived
#: from this table.
TAG_TABLE: Final[dict[str, str]] = {
    "bucket_event": "call",  # an event (with the record's user and company ids)
    "bucket_user": "call",  # a user call: True or the user's attributes
    "bucket_company": "call",  # a company call: True or the company's attributes
    "bucket_feedback": "call",  # a feedback call: a dict of its fields
    "bucket_attributes": "event modifier",  # the event's attributes
    "bucket_active": "modifier",  # context.active of every call of the record
}
#: Every tag a record can carry, in the table's order.
TAGS: Final = tuple(TAG_TABLE)
#: The tag of the everyday call (the front ends' first test is ``EVENT in fields``).
EVENT: Final = TAGS[0]
#: The tags that are a call on their own.
CALL_TAGS: Final = frozenset(t for t, role in TAG_TABLE.items() if role == "call")
#: The tags that need a call tag beside them.
MODIFIER_TAGS: Final = frozenset(t for t, role in TAG_TABLE.items() if role.endswith("modifier"))

#: Plan: the record carries at least one call tag.
TAGGED: Final = "tagged"
#: Plan: the record carries only ``bucket_attributes`` / ``bucket_active`` and no
#: rule matched; nothing can be sent, the misuse is reported.
ORPHAN: Final = "orphan"

#: Plan: the record's only ``bucket_*`` key is not a tag (a typo such as
#: ``bucket_events``); nothing can be sent, the closest tag is named.
UNKNOWN: Final = "unknown"

#: The one misspelling looked for on an otherwise untagged record: the plural of the
#: one tag that is a call on its own. Other typos sit beside a tag (``bucket_attribute``
#: next to ``bucket_event``) and are found once the record reaches the tracker.
TYPO_PROBE: Final = "bucket_events"

_TAG_SET: Final = frozenset(TAGS)


#: The templates (log statements) whose records were checked by :func:`misspelled`;
#: past :data:`_CHECKED_MAX` no more are kept.
checked_templates: Final = _state.checked_templates
_CHECKED_MAX: Final = 4096


def unchecked(template: object) -> bool:
    """Whether no record of ``template`` was checked by :func:`misspelled` yet."""
    try:
        return template not in checked_templates
    except TypeError:  # unhashable
        return True


def misspelled(fields: Mapping[str, Any], template: object) -> list[str]:
    """The record's ``bucket_*`` keys that are not tags, as problems naming the closest
    tag; ``template`` is remembered (a misspelling is in the code: the tracker checks
    once per log statement, which keeps the tracked call's cost one look-up)."""
    if len(checked_templates) < _CHECKED_MAX:
        with contextlib.suppress(TypeError):  # an unhashable one: checked every time
            checked_templates[template] = None
    problems = []
    for key in list(fields):
        if type(key) is str and key.startswith("bucket_") and key not in _TAG_SET:
            close = difflib.get_close_matches(key, TAGS, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}? " if close else ""
            problems.append(f"{key!r} is not a tag ({hint}it was ignored)")
    return problems


# Fields that are never "structured" for a rule's ``"attributes": "*"``: the standard
# LogRecord attributes and structlog's bookkeeping keys (plus, per tracker, the ids).
RESERVED: Final = frozenset(
    {
        *logging.LogRecord("", 0, "", 0, "", (), None).__dict__,
        "args",
        "asctime",
        "message",
        "taskName",
        "event",
        "timestamp",
        "level",
        "logger",
        "logger_name",
        "exception",
        "exc_info",
        "stack",
        "stack_info",
        "stacklevel",
        "positional_args",
        *TAGS,
    }
)


def membership_test(
    name: str, keys: Iterable[str], doc: str
) -> Callable[[Mapping[str, Any]], bool]:
    """A function telling whether a mapping holds any of ``keys``: ``k1 in m or k2 in m ...``.

    Built once at import from the table (as :mod:`dataclasses` builds ``__init__``), so
    that the hot path runs the same chain of ``in`` tests a hand-written check would:
    ``frozenset.isdisjoint`` iterates the record's keys instead, about twice as slow on
    a LogRecord's two dozen fields (measured: ``benchmarks/README.md``, "Tag checks").
    """
    names = sorted(keys)
    if not names or not all(n.isidentifier() for n in names):
        raise ValueError(f"not tag names: {names!r}")
    body = " or ".join(f"{n!r} in fields" for n in names)
    namespace: dict[str, Any] = {}
    exec(f"def {name}(fields):\n    return {body}\n", namespace)  # tag names only (checked above)
    function: Callable[[Mapping[str, Any]], bool] = namespace[name]
    function.__doc__ = doc
    function.__module__ = __name__
    return function


has_tags: Final = membership_test(
    "has_tags",
    (set(TAGS) - {EVENT}) | {TYPO_PROBE},
    """Whether a record *without* ``bucket_event`` carries another ``bucket_*`` tag.

    The front ends' first, cheapest step is one ``in`` test: a record with
    ``bucket_event`` goes to :meth:`Tracker.track_event` (which reads the other tags
    itself); for any other record this tells a tagged one (for :meth:`Tracker.wants`
    and :meth:`Tracker.track`) from an untagged one, which only a rule can ask for.
    A record whose only ``bucket_*`` key is :data:`TYPO_PROBE` counts as tagged, so
    that the tracker can name the tag meant.
    """,
)
#: Whether a record carries a call tag (:meth:`Tracker.wants`).
has_call: Final = membership_test("has_call", CALL_TAGS, "Whether a record carries a call tag.")
#: Whether a record with ``bucket_event`` carries more than the everyday event: another
#: call, or ``bucket_active`` (:meth:`Tracker.track_event`'s test for its fast path).
beyond_event: Final = membership_test(
    "beyond_event",
    (CALL_TAGS - {EVENT}) | {t for t, role in TAG_TABLE.items() if role == "modifier"},
    "Whether an event record carries another call tag or ``bucket_active``.",
)
#: Whether a record carries a modifier tag (an orphan when nothing else asks).
has_modifier: Final = membership_test(
    "has_modifier", MODIFIER_TAGS, "Whether a record carries a modifier tag."
)
