"""The tags a log record carries, and the fields that are never its attributes.

A record asks for tracking calls with ``bucket_*`` tags (:data:`TAGS`); a front
end's first, cheapest step is :func:`has_tags`. :data:`RESERVED` lists the fields a
rule's ``"attributes": "*"`` never takes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Final

__all__ = ["ORPHAN", "RESERVED", "TAGGED", "TAGS", "has_tags"]

#: Every tag a record can carry.
TAGS: Final = (
    "bucket_event",
    "bucket_user",
    "bucket_company",
    "bucket_feedback",
    "bucket_attributes",
    "bucket_active",
)

#: Plan: the record carries at least one call tag.
TAGGED: Final = "tagged"
#: Plan: the record carries only ``bucket_attributes`` / ``bucket_active`` and no
#: rule matched; nothing can be sent, the misuse is reported.
ORPHAN: Final = "orphan"

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


def has_tags(fields: Mapping[str, Any]) -> bool:
    """Whether a record *without* ``bucket_event`` carries another ``bucket_*`` tag.

    The front ends' first, cheapest step is one ``in`` test: a record with
    ``bucket_event`` goes to :meth:`Tracker.track_event` (which reads the other tags
    itself); for any other record this tells a tagged one (for :meth:`Tracker.wants`
    and :meth:`Tracker.track`) from an untagged one, which only a rule can ask for.
    """
    return (
        "bucket_user" in fields
        or "bucket_company" in fields
        or "bucket_feedback" in fields
        or "bucket_attributes" in fields
        or "bucket_active" in fields
    )
