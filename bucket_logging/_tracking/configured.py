"""The base of the front ends configured by keywords: the loguru sink, the JSON adapter.

:class:`~bucket_logging.LoguruSink` and
:class:`~bucket_logging._frontends.jsonlines.JsonLines` take the options of
:class:`~bucket_logging.BucketProcessor` (a tracking key, the sender's options,
rules, the id fields, or an existing ``sender``), build their
:class:`~bucket_logging._tracking.tracker.Tracker` the same way, and take the same cheap
first step for each record (:meth:`KeywordFrontEnd._first_step`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .frontend import FrontEnd
from .rules import NO_RULES
from .senders import Sender
from .tags import has_tags

__all__ = ["KeywordFrontEnd"]


class KeywordFrontEnd(FrontEnd):
    """A front end configured by keywords.

    Args:
        tracking_key: a Reflag key (``sec_...``: Reflag's Runtime API) or a Bucket
            tracking key; defaults to env ``BUCKET_TRACKING_KEY``, else ``REFLAG_SECRET_KEY``.
        base_url: the API's base URL (the sender's default when None).
        rules: zero-code rules (a list of dicts, see :mod:`bucket_logging._tracking.rules`).
        user_id_field: the field (and contextvars key) holding the user id.
        company_id_field: the field (and contextvars key) holding the company id.
        sender: an existing sender to use instead of the shared one for the key
            (anything with ``enqueue(item)`` and ``flush(timeout)``).
        **sender_options: passed on to the sender.
            ``tracking_plan=`` (a tracking plan's path; default
            ``BUCKET_TRACKING_PLAN``) is the tracking path's: every call is checked
            against the plan (docs: "Tracking plan").

    Raises:
        ConfigurationError: when a rule or an option is invalid, or no tracking key
            is given or set in the environment with ``require_key=True`` (without
            it, tracking stays off and says so once at WARNING).
    """

    __slots__ = ()

    def __init__(
        self,
        tracking_key: str | None = None,
        *,
        base_url: str | None = None,
        rules: list[dict[str, Any]] | None = None,
        user_id_field: str = "user_id",
        company_id_field: str = "company_id",
        sender: Sender | None = None,
        **sender_options: Any,
    ) -> None:
        self._set_up(
            sender,
            tracking_key,
            base_url,
            sender_options,
            rules=rules,
            user_id_field=user_id_field,
            company_id_field=company_id_field,
        )
        self._configured()

    def _configured(self) -> None:
        """Called once the tracker and its sender exist (for subclasses)."""

    def _first_step(self, fields: Mapping[str, Any], template: object) -> bool | None:
        """None: the record carries ``bucket_event`` (for ``track_event``); True: ask
        ``wants`` (other tags, or a rule may match); False: nothing to track."""
        if "bucket_event" in fields:
            return None
        if has_tags(fields):
            return True
        cache = self._rule_cache  # untagged: only a rule can ask for it
        return not (cache is None or (type(template) is str and cache.get(template) is NO_RULES))

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued was delivered, or ``timeout`` (default: the
        sender's ``shutdown_timeout``); True when it was. Never raises."""
        return self._tracker.flush(timeout)
