"""``bucket_logging.track(...)``: one call for code paths with no log statement.

It builds the fields a tagged log record would carry (``bucket_event``,
``bucket_attributes``, ``bucket_user``, ``bucket_company``, ``user_id``,
``company_id``) and hands them to a :class:`~bucket_logging._tracking.tracker.Tracker`, the
very path of the front ends: the same validation and reports, the ids bound by the
middlewares (structlog's context variables) when none is given, the captures of
:func:`~bucket_logging.testing.capture_tracking`, the sender's ``before_send``.
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Mapping
from typing import Any, Final

from .._exceptions import ConfigurationError
from .._runtime import state as _process
from .._runtime.diagnostics import report
from .._sender.sender import BulkSender
from .._sender.shared import get_sender
from .._tracking import capture as _capture
from .._tracking.tracker import TAGGED, Tracker

__all__ = ["track"]

#: The logger name the tracker sees for these calls (in its reports and for rules).
LOGGER_NAME: Final = "track"

#: One tracker per sender and tracking plan (None: BUCKET_TRACKING_PLAN's, or none).
_trackers: weakref.WeakKeyDictionary[BulkSender, dict[object, Tracker]] = (
    weakref.WeakKeyDictionary()
)


def _default_sender() -> BulkSender | None:
    """The process's only shared sender if there is one, else the one for the
    environment's key; None (reported) when there is none."""
    state = _process.state
    with state.registry_lock:
        live = [s for s in state.registry.values() if isinstance(s, BulkSender) and not s.closed]
    if len(live) == 1:
        return live[0]
    try:
        return get_sender()
    except ConfigurationError as exc:
        if _capture.active:  # a test's capture: nothing is sent, no key is needed
            return get_sender(offline=True)
        report("track-sender", "bucket_logging.track(): no sender (%s); nothing was tracked", exc)
        return None


def track(
    event: str | None = None,
    *,
    user_id: Any = None,
    company_id: Any = None,
    attributes: Mapping[str, Any] | None = None,
    user: Mapping[str, Any] | bool | None = None,
    company: Mapping[str, Any] | bool | None = None,
    sender: BulkSender | None = None,
    tracking_plan: str | os.PathLike[str] | None = None,
) -> None:
    """Track an event (and/or a user or company update) without a log statement.

    ``track("Exported report", user_id=42, attributes={"format": "csv"})`` queues what
    ``log.info(..., extra={"bucket_event": "Exported report", "user_id": 42,
    "bucket_attributes": {"format": "csv"}})`` would. ``user=`` / ``company=`` (a dict
    of attributes, or True) add a user or company update, as ``bucket_user`` /
    ``bucket_company`` do. The ids default to those bound for the request (the
    middlewares, ``structlog.contextvars.bind_contextvars``).

    The items go to ``sender``, else to the process's shared sender when there is one
    (the one every handler and processor with the same key uses), else to the
    shared sender for the environment's key. Never raises and never blocks: a
    problem (no user id, an invalid value, no key) is reported on the
    ``bucket_logging`` logger and counted in ``sender.stats.refused``, as for a log
    record. ``tracking_plan`` (a plan's path; default ``BUCKET_TRACKING_PLAN``) checks
    the calls against a tracking plan, as a front end's ``tracking_plan=`` does.
    """
    try:
        target = sender if sender is not None else _default_sender()
        if target is None:
            return
        plan_key = None if tracking_plan is None else os.fspath(tracking_plan)
        trackers = _trackers.get(target)
        if trackers is None:
            trackers = _trackers.setdefault(target, {})
        tracker = trackers.get(plan_key)
        if tracker is None:
            tracker = trackers.setdefault(plan_key, Tracker(target, tracking_plan=plan_key))
        fields: dict[str, Any] = {}
        if event is not None:
            fields["bucket_event"] = event
        if attributes is not None:
            fields["bucket_attributes"] = attributes
        if user is not None:
            fields["bucket_user"] = user
        if company is not None:
            fields["bucket_company"] = company
        if user_id is not None:
            fields["user_id"] = user_id
        if company_id is not None:
            fields["company_id"] = company_id
        now = time.time()
        if "bucket_event" in fields:
            tracker.track_event(fields, now, LOGGER_NAME, event)
        elif user is not None or company is not None:
            tracker.track(fields, now, LOGGER_NAME, event, TAGGED)
        else:
            report(
                "track-nothing",
                "bucket_logging.track() was called with no event, user or company: "
                "nothing was tracked",
            )
    except Exception as exc:  # pragma: no cover - the tracker reports its own problems
        report("track-error", "bucket_logging.track() failed (%s: %s)", type(exc).__name__, exc)
