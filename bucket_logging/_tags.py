"""The tags a log record carries, and the fields that are never its attributes.

A record asks for tracking calls with ``bucket_*`` tags (:data:`TAGS`); a front
end's first, cheapest step is :func:`has_tags`. :data:`RESERVED` lists the fields a
rule's ``"attributes": "*"`` never takes.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
from collections.abc import Mapping
from typing import Any, Final

__all__ = [
    "ORPHAN",
    "RESERVED",
    "TAGGED",
    "TAGS",
    "TRACKED_MARK",
    "TYPO_PROBE",
    "UNKNOWN",
    "checked_templates",
    "has_tags",
    "misspelled",
    "unchecked",
]

#: Every tag a record can carry.
TAGS: Final = (
    "bucket_event",
    "bucket_user",
    "bucket_company",
    "bucket_feedback",
    "bucket_attributes",
    "bucket_active",
)

#: The key a :class:`~bucket_logging.BucketProcessor` adds to an event it tracked
#: (``mark_tracked``): ``bucket-logging ship`` and ``relay`` skip a line that carries it,
#: so that a log the application already tracked is not tracked twice. Not a tag.
TRACKED_MARK: Final = "bucket_tracked"

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
checked_templates: dict[object, None] = {}
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
        if (
            type(key) is str
            and key.startswith("bucket_")
            and key not in _TAG_SET
            and key != TRACKED_MARK
        ):
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
        TRACKED_MARK,
        *TAGS,
    }
)


def has_tags(fields: Mapping[str, Any]) -> bool:
    """Whether a record *without* ``bucket_event`` carries another ``bucket_*`` tag.

    The front ends' first, cheapest step is one ``in`` test: a record with
    ``bucket_event`` goes to :meth:`Tracker.track_event` (which reads the other tags
    itself); for any other record this tells a tagged one (for :meth:`Tracker.wants`
    and :meth:`Tracker.track`) from an untagged one, which only a rule can ask for.
    A record whose only ``bucket_*`` key is :data:`TYPO_PROBE` counts as tagged, so
    that the tracker can name the tag meant.
    """
    return (
        "bucket_user" in fields
        or "bucket_company" in fields
        or "bucket_feedback" in fields
        or "bucket_attributes" in fields
        or "bucket_active" in fields
        or TYPO_PROBE in fields
    )
