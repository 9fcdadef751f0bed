"""``BucketHandler``: the standard library ``logging`` front end.

Tag any log call with ``extra=`` and the handler turns it into Bucket tracking
calls, queued on the background sender::

    logging.getLogger("app").info(
        "User %s signed in",
        user.id,
        extra={"user_id": user.id, "company_id": org.id, "bucket_event": "Signed in"},
    )

Configured from ``logging.config.dictConfig`` (every option is a plain keyword)::

    "handlers": {
        "bucket": {
            "class": "bucket_logging.BucketHandler",
            "tracking_key": "trCqx4DGo1lk3Lcct5NHLjWy",
            "rules": [{"match": "User %s signed in", "event": "Signed in"}],
        },
    },

or from an INI file read by ``logging.config.fileConfig``::

    [handler_bucket]
    class = bucket_logging.BucketHandler
    args = ()
    kwargs = {"tracking_key": "trCqx4DGo1lk3Lcct5NHLjWy"}

Records bridged from structlog are understood too: with
``ProcessorFormatter.wrap_for_formatter`` the record's ``msg`` is the event dict
(the tags, ids and event text are read from it); with ``render_to_log_kwargs`` the
event dict's keys are record attributes, like ``extra=``. When a
:class:`~bucket_logging.BucketProcessor` in the structlog chain already tracked the
event, the handler recognises the record and skips it (see
:mod:`bucket_logging._frontends.processor`), so every event is tracked exactly once.

The handler never formats and never takes its lock for records it does not
track: ``handle()`` is overridden so that an untagged record costs a few
dictionary look-ups. Records of the library's own logger, of ``httpx`` and
``httpcore`` and of the senders' threads are never tracked.
"""

from __future__ import annotations

import functools
import logging
import logging.config
from collections.abc import Callable
from typing import Any

from .._exceptions import BucketLoggingError
from .._runtime.diagnostics import configuring_logging, is_internal
from .._tracking.claims import is_claimed
from .._tracking.claims import local as _local
from .._tracking.frontend import FrontEnd
from .._tracking.rules import NO_RULES
from .._tracking.senders import Sender
from .._tracking.tags import has_tags

__all__ = ["BucketHandler"]


class BucketHandler(FrontEnd, logging.Handler):
    """A ``logging`` handler that turns tagged records into Bucket tracking calls.

    Args:
        tracking_key: a Reflag key (``sec_...``: Reflag's Runtime API) or a Bucket
            tracking key; defaults to env ``BUCKET_TRACKING_KEY``, else ``REFLAG_SECRET_KEY``.
        base_url: the API's base URL (the sender's default when None).
        level: the handler's level.
        rules: zero-code rules: a list of dicts with ``match``, ``event`` and optionally
            ``logger``, ``attributes``, ``active`` (the docs: "Tags and rules").
        user_id_field: the record field (and contextvars key) holding the user id.
        company_id_field: the record field (and contextvars key) holding the company id.
        sender: an existing sender to use instead of the shared one for the key
            (anything with ``enqueue(item)`` and ``flush(timeout)``); not combined
            with the key or sender options.
        **sender_options: passed on to the sender (``offline``, ``flush_interval``,
            ``shutdown_timeout``, ...).
            ``tracking_plan=`` (a tracking plan's path; default
            ``BUCKET_TRACKING_PLAN``) is the tracking path's: every call is checked
            against the plan (docs: "Tracking plan").

    Raises:
        ConfigurationError: when a rule or an option is invalid, or no tracking key
            is given or set in the environment with ``require_key=True`` (without
            it, tracking stays off and says so once at WARNING).
    """

    def __init__(
        self,
        tracking_key: str | None = None,
        *,
        base_url: str | None = None,
        level: int | str = logging.NOTSET,
        rules: list[dict[str, Any]] | None = None,
        user_id_field: str = "user_id",
        company_id_field: str = "company_id",
        sender: Sender | None = None,
        **sender_options: Any,
    ) -> None:
        # Everything that can fail comes first: a handler whose construction failed
        # must not be registered with logging (which would flush it at shutdown).
        self._set_up(
            sender,
            tracking_key,
            base_url,
            sender_options,
            rules=rules,
            user_id_field=user_id_field,
            company_id_field=company_id_field,
        )
        super().__init__(level)

    def handle(self, record: logging.LogRecord) -> Any:
        """Track ``record`` if it asks for it; the lock is never taken.

        Applies the handler's filters like :meth:`logging.Handler.handle` and
        returns what it would (the record, or a falsy value when filtered out).
        """
        if self.filters:
            passed = self.filter(record)
            if not passed:
                return passed
            if isinstance(passed, logging.LogRecord):
                record = passed
        msg = record.msg
        if type(msg) is dict:  # structlog's ProcessorFormatter.wrap_for_formatter
            fields: Any = msg
            template = msg.get("event")
        else:
            fields = record.__dict__
            template = msg
        if "bucket_event" in fields:
            try:
                created = record.created
                name = record.name
            except Exception:  # a broken record must not break the log call
                return record
            self._track_event(fields, created, name, template, record)
            return record
        if not has_tags(fields):  # untagged: only a rule can ask for it
            cache = self._rule_cache
            if cache is None or (type(template) is str and cache.get(template) is NO_RULES):
                return record
        self._slow(record, fields, template)
        return record

    def emit(self, record: logging.LogRecord) -> None:
        """Track ``record`` (for callers that bypass :meth:`handle`)."""
        msg = record.msg
        if type(msg) is dict:
            self._slow(record, msg, msg.get("event"))
        else:
            self._slow(record, record.__dict__, msg)

    def _slow(self, record: logging.LogRecord, fields: Any, template: object) -> None:
        try:
            name = record.name
            plan = self._wants(fields, name, template)
            if plan is None or is_internal(name, record.thread):
                return
            if _local.claim is not None and is_claimed(record, fields, template):
                return
            created = record.created
        except Exception:  # a broken record must not break the log call
            return
        self._track(fields, created, name, template, plan)

    def flush(self, timeout: float | None = None) -> bool:  # type: ignore[override]
        """Wait until everything queued on the sender was delivered, or ``timeout``.

        Returns True when it was (or it was dropped and counted), False on time-out,
        as :meth:`BucketProcessor.flush <bucket_logging.BucketProcessor.flush>` does.

        ``timeout`` defaults to the sender's ``shutdown_timeout`` (see
        :meth:`Tracker.flush <bucket_logging._tracking.tracker.Tracker.flush>`). When the calling
        thread holds logging's module lock (``dictConfig`` or ``fileConfig``
        replacing handlers), the flush is requested but not awaited: the sender's
        thread may need that lock to log, and waiting would deadlock.
        """
        return self._tracker.flush(0.0 if configuring_logging() else timeout)

    def close(self) -> None:
        """Flush (at most the sender's ``shutdown_timeout``), then detach the handler.

        The shared sender itself stays open for the other handlers and processors
        of the process; its exit hook closes it.
        """
        try:
            self.flush()
        finally:
            super().close()

    def __repr__(self) -> str:
        level = logging.getLevelName(self.level)
        return f"<{type(self).__name__} ({level}) {self._rule_count()} rule(s)>"


def _name_the_cause(configure: Callable[[Any], None]) -> Callable[[Any], None]:
    """``DictConfigurator.configure``, its ``Unable to configure handler 'bucket'`` saying why.

    ``dictConfig`` replaces the error of a handler's constructor by that ValueError
    (the cause is only chained above it). When the cause is the library's own, its
    message is appended to the ValueError's, which is otherwise left as it is.
    """

    @functools.wraps(configure)
    def configure_naming_the_cause(self: Any) -> None:
        try:
            configure(self)
        except ValueError as exc:
            cause = exc.__cause__
            args = exc.args
            if (
                isinstance(cause, BucketLoggingError)
                and len(args) == 1
                and isinstance(args[0], str)
                and str(cause) not in args[0]
            ):
                exc.args = (f"{args[0]}: {type(cause).__name__}: {cause}",)
            raise

    configure_naming_the_cause.__wrapped_by_bucket_logging__ = True  # type: ignore[attr-defined]
    return configure_naming_the_cause


_configurator = logging.config.DictConfigurator
if not getattr(_configurator.configure, "__wrapped_by_bucket_logging__", False):
    _configurator.configure = _name_the_cause(_configurator.configure)  # type: ignore[method-assign,assignment]
