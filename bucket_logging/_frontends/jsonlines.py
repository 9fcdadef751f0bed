"""A JSON log line (one parsed object) as a front end: shared by ``ship`` and ``relay``.

Logs that already left the application as JSON (structlog's ``JSONRenderer``,
python-json-logger, loguru's ``serialize=True``, other languages) carry the same
tags at the top level as a structlog event dict::

    {"timestamp": "2026-11-29T12:00:00.123Z", "logger": "app.chat",
     "event": "message sent", "bucket_event": "Sent message", "user_id": 42}

:class:`JsonLines` reads, from one such object:

* the fields: the object itself (``bucket_*`` tags, ``user_id``, ``company_id``), or
  for a line of loguru's ``serialize=True`` (``{"text": ..., "record": {...}}``) its
  record's ``extra``, with the record's message, name and time;
* the message template, for rules: the first string among ``event`` (structlog),
  ``message`` (python-json-logger, Vector, Fluent Bit) and ``msg``;
* the logger name, for rules' ``logger``: ``logger``, ``logger_name`` or ``name``;
* the time of the log call, for the item's timestamp (:func:`parse_time`): the
  first of ``timestamp``, ``time``, ``@timestamp`` and ``asctime`` that holds ISO
  8601 text or epoch seconds / milliseconds. A line without one (or with one that
  cannot be read, reported) is stamped with the time it is tracked.

and hands them to the shared :class:`~bucket_logging._tracking.tracker.Tracker`, exactly
as :class:`~bucket_logging.BucketProcessor` hands it an event dict. A line marked
``"bucket_tracked": true`` was tracked by the application's processor already: it is
skipped (:attr:`JsonLines.track_marked` turns that off).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, Final

from .._runtime import diagnostics as _diagnostics
from .._runtime.diagnostics import internal_logger, internal_names
from .._tracking.configured import KeywordFrontEnd
from .._tracking.rules import Rule
from .._tracking.tags import TRACKED_MARK
from .._tracking.wire import watch_rejections

__all__ = ["NAME_KEYS", "TEMPLATE_KEYS", "TIME_KEYS", "JsonLines", "parse_time"]

#: Where a line's time of the log call is looked for, in this order.
TIME_KEYS: Final = ("timestamp", "time", "@timestamp", "asctime")
#: Where a line's message (the template rules match) is looked for, in this order.
TEMPLATE_KEYS: Final = ("event", "message", "msg")
#: Where a line's logger name is looked for, in this order.
NAME_KEYS: Final = ("logger", "logger_name", "name")

# Keys a rule's "attributes": "*" leaves out besides the Tracker's reserved ones.
_TIME_ONLY: Final = frozenset({"time", "@timestamp"})

_UTC: Final = timezone.utc
_fromisoformat: Final = datetime.fromisoformat
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=_UTC)

# Epoch numbers: larger than these are milli-, micro- or nanoseconds (1e11 seconds is
# the year 5138; 1e11 milliseconds is 1973).
_MS_FROM: Final = 1e11
_US_FROM: Final = 1e14
_NS_FROM: Final = 1e17

#: The POSIX seconds ISO 8601 writes with a four-digit year in UTC: [year 1, year 10000).
_FIRST_SECOND: Final = -62_135_596_800.0
_END_SECOND: Final = 253_402_300_800.0

_ISO: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?"
    r"\s*(Z|z|[+-]\d{2}(?::?\d{2})?)?"
)


def _parse_iso(text: str) -> float | None:
    """ISO 8601 text as POSIX time; without a zone it is taken as UTC."""
    parsed: datetime | None
    try:
        parsed = datetime.fromisoformat(text)  # Python 3.11+ reads nearly all of it
    except ValueError:
        parsed = _parse_iso_slowly(text)
        if parsed is None:
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=_UTC)
    return (parsed - _EPOCH).total_seconds()


def _parse_iso_slowly(text: str) -> datetime | None:
    """What ``fromisoformat`` of Python 3.10 does not read (``Z``, commas, 9 digits)."""
    match = _ISO.fullmatch(text.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        parsed = datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int((fraction or "0")[:6].ljust(6, "0")),
        )
    except ValueError:
        return None
    if zone and zone not in "Zz":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0))
        return parsed.replace(tzinfo=timezone(sign * offset))
    return parsed.replace(tzinfo=_UTC)


def parse_time(value: object) -> float | None:
    """A log line's timestamp as POSIX time, or None when it is not one.

    ISO 8601 text (``2026-11-29T12:00:00.123Z``, ``2026-11-29 12:00:00,123``,
    with or without a zone: none means UTC), or epoch seconds, milliseconds,
    microseconds or nanoseconds as a number or a numeric string (told apart by
    magnitude).
    """
    if type(value) is str:
        if not value[:1].isdigit() or "-" in value[:5]:
            return _parse_iso(value)
        try:
            number = float(value)
        except ValueError:
            return _parse_iso(value)
    elif type(value) is float or type(value) is int:
        number = float(value)
    else:
        return None
    if not math.isfinite(number) or number < 0:  # NaN, infinite or before 1970
        return None
    if number >= _NS_FROM:
        return number / 1e9
    if number >= _US_FROM:
        return number / 1e6
    if number >= _MS_FROM:
        return number / 1e3
    return number


def _first_text(obj: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    """The value of the first of ``keys`` that holds a string, or None."""
    for key in keys:
        value = obj.get(key)
        if type(value) is str:
            return value
    return None


def _created(obj: Mapping[str, Any], logger_name: str, template: object) -> float:
    for key in TIME_KEYS:
        if key in obj:
            value = obj[key]
            if type(value) is str:  # the common case, inline: ISO 8601 with a zone
                try:
                    parsed = _fromisoformat(value)
                except ValueError:
                    pass
                else:
                    if parsed.tzinfo is None:
                        parsed = parsed.replace(tzinfo=_UTC)
                    stamp = parsed.timestamp()
                    if _FIRST_SECOND <= stamp < _END_SECOND:
                        return stamp
            created = parse_time(value)
            if created is not None and _FIRST_SECOND <= created < _END_SECOND:
                return created
            _diagnostics.report(
                "line-time",
                "The %s of a line from logger %r with message %.80r is not ISO 8601 text or "
                "epoch seconds/milliseconds (%.40r)%s; its items carry the time of tracking",
                key,
                logger_name,
                template,
                obj[key],
                "" if created is None else " (a timestamp outside the years 1-9999 in UTC)",
            )
            break
    return time.time()


def _from_loguru(obj: dict[str, Any]) -> dict[str, Any]:
    """A line of loguru's ``serialize=True`` as a flat object: ``extra`` at the top,
    with the record's message, name and time."""
    record = obj["record"]
    if type(record) is not dict:
        return obj
    extra = record.get("extra")
    flat: dict[str, Any] = dict(extra) if type(extra) is dict else {}
    flat["message"] = record.get("message")
    flat["logger"] = record.get("name")
    when = record.get("time")
    flat["timestamp"] = when.get("timestamp") if type(when) is dict else None
    return flat


class JsonLines(KeywordFrontEnd):
    """Tracks parsed JSON log lines (objects) through the shared Tracker.

    Takes the options of :class:`~bucket_logging._tracking.configured.KeywordFrontEnd`; rules
    are matched against the line's message and logger name.
    """

    __slots__ = ("already_tracked", "track_marked")

    def _configured(self) -> None:
        #: Whether a line marked ``"bucket_tracked": true`` (tracked by the application's
        #: :class:`~bucket_logging.BucketProcessor`) is tracked again; off: it is skipped.
        self.track_marked = False
        #: The marked lines skipped so far (``ship``'s summary says how many).
        self.already_tracked = 0

    def track(self, obj: dict[str, Any]) -> bool:
        """Track one parsed line if it asks for it; True when it did (tags or a rule).

        Never raises; what is wrong with a tagged line is reported on the
        ``bucket_logging`` logger.
        """
        try:
            if "record" in obj and "text" in obj:  # loguru's serialize=True
                obj = _from_loguru(obj)
            if obj.get(TRACKED_MARK) is True and not self.track_marked:
                self.already_tracked += 1  # the application's BucketProcessor tracked it
                return False
            template = _first_text(obj, TEMPLATE_KEYS)
            plan: object = self._first_step(obj, template)
            if plan is False:
                return False
            name = _first_text(obj, NAME_KEYS) or ""
            if plan is not None:
                plan = self._wants(obj, name, template)
                if plan is None:
                    return False
            internal = internal_names.get(name)
            if internal is None:
                internal = internal_logger(name)
            if internal:  # the library's own lines
                return False
            created = _created(obj, name, template)
            if isinstance(plan, Rule) and plan.all_attributes:
                obj = {k: v for k, v in obj.items() if k not in _TIME_ONLY}
        except Exception:  # e.g. a key that is not a string
            return False
        if plan is None:
            self._track_event(obj, created, name, template)
        else:
            self._track(obj, created, name, template, plan)
        return True

    def track_checked(self, obj: dict[str, Any]) -> tuple[bool, str | None]:
        """:meth:`track`, also telling whether a call the line asked for was refused.

        Returns ``(tracked, problem)``: ``problem`` is the first of the line's calls
        that was not sent (an invalid tag or value, a missing id, an item too large;
        also reported on the ``bucket_logging`` logger), None when none was. The OTLP
        relay counts such records as rejected while the valid ones are delivered.
        """
        problems: list[str] = []
        watch_rejections(problems)
        try:
            tracked = self.track(obj)
        finally:
            watch_rejections(None)
        return tracked, problems[0] if problems else None
