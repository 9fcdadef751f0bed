"""``BucketProcessor``: the structlog front end, and how double shipping is avoided.

Put the processor anywhere after ``merge_contextvars`` and before the renderer::

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            BucketProcessor("trCqx4DGo1lk3Lcct5NHLjWy"),
            structlog.processors.JSONRenderer(),
        ]
    )
    log.info("Message sent", bucket_event="Sent message", user_id=42)

It tracks the event and returns the event dict, so the line is still rendered; an
event it tracked carries ``"bucket_tracked": true`` (``mark_tracked=False`` leaves the
dict untouched), which tells ``bucket-logging ship`` and ``relay`` not to track that
line again. The timestamp is the time of the call.

No double shipping
------------------
With structlog bridged into ``logging`` (``ProcessorFormatter.wrap_for_formatter``
or ``render_to_log_kwargs`` as the last processor) and a
:class:`~bucket_logging.BucketHandler` on the root logger as well, both front ends
see every tagged event. The rule is: **the processor tracks, the handler skips
what the processor tracked.**

When the processor tracks an event it *claims* it: it remembers, in a thread-local
slot, the event dict and its ``event`` text (:func:`bucket_logging._tracking.tracker.claim`).
The bridge hands that very event to ``logging`` synchronously, on the same thread,
before the processor runs again. A BucketHandler that receives a record built from
it recognises it by identity (:func:`bucket_logging._tracking.tracker.is_claimed`):

* ``wrap_for_formatter`` -- the record's ``msg`` *is* the claimed event dict;
* ``render_to_log_kwargs`` -- the record's ``msg`` is the claimed ``event`` object
  and its ``bucket_*`` attributes are the claimed tag objects.

and leaves it alone. Nothing is added to the event dict or the record, so
rendered output is untouched. The claim is replaced at the processor's next call
on that thread and bound to the first record recognised, so unrelated records
(plain stdlib records, which the handler keeps tracking) are never mistaken for
it; an event the wrapped stdlib logger is not enabled for is not claimed at all.
Events the processor did not track (untagged, no rule of its own matched) are not
claimed either, and the handler applies its own rules to them; nor are the events
of structlog's own loggers (``PrintLogger``, ``WriteLogger``, ``BytesLogger``,
``ReturnLogger``, ``CapturingLogger``), which never reach ``logging``.

Limits: the handler must receive the record on the thread that logged it. If a
``QueueHandler`` sits between ``render_to_log_kwargs`` and the BucketHandler, use
only one of the two front ends. Place the processor in structlog's chain, not in
``ProcessorFormatter``'s own ``processors``/``foreign_pre_chain``, which run once
per formatting handler.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import MutableMapping
from typing import Any, Final

import structlog
import structlog.testing

from .._runtime import diagnostics as _diagnostics
from .._tracking.claims import claim, release_claim
from .._tracking.claims import local as _local
from .._tracking.configured import KeywordFrontEnd
from .._tracking.rules import NO_RULES
from .._tracking.senders import Sender
from .._tracking.tags import TRACKED_MARK, has_tags
from .handler import BucketHandler

__all__ = ["BucketProcessor"]

_get_ident = threading.get_ident
_time = time.time

# structlog's method names -> stdlib levels, to know whether a record will be built.
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}


def _structlog_outputs() -> frozenset[type]:
    """structlog's own loggers: they write or return the rendered line themselves."""
    found = set()
    for module, name in (
        (structlog, "PrintLogger"),
        (structlog, "WriteLogger"),
        (structlog, "BytesLogger"),
        (structlog, "ReturnLogger"),
        (structlog.testing, "CapturingLogger"),
    ):
        cls = getattr(module, name, None)
        if isinstance(cls, type):
            found.add(cls)
    return frozenset(found)


#: Loggers that never hand an event to ``logging``: their events are not claimed
#: (a claim only serves a BucketHandler that may receive the same event as a record).
_NEVER_TO_LOGGING: Final = _structlog_outputs()


def _reaches_bucket_handler(logger: logging.Logger, level: int) -> bool:
    """Whether a record of ``level`` on ``logger`` reaches a BucketHandler (by level)."""
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            if isinstance(handler, BucketHandler) and level >= handler.level:
                return True
        if not current.propagate:
            return False
        current = current.parent
    return False


def _logger_name(event_dict: MutableMapping[str, Any]) -> str:
    """The logger name of an event whose logger has no ``name``: from the event dict."""
    name = event_dict.get("logger")
    if isinstance(name, str):
        return name
    name = event_dict.get("logger_name")
    return name if isinstance(name, str) else ""


class BucketProcessor(KeywordFrontEnd):
    """A structlog processor that turns tagged events into Bucket tracking calls.

    Args:
        tracking_key: a Reflag key (``sec_...``: Reflag's Runtime API) or a Bucket
            tracking key; defaults to env ``BUCKET_TRACKING_KEY``, else ``REFLAG_SECRET_KEY``.
        base_url: the API's base URL (the sender's default when None).
        rules: zero-code rules: a list of dicts with ``match``, ``event`` and optionally
            ``logger``, ``attributes``, ``active`` (the docs: "Tags and rules");
            ``match`` is matched against the event text, ``logger`` against the
            wrapped logger's ``name`` (or the ``logger`` key of the event dict).
        user_id_field: the event-dict key (and contextvars key) holding the user id.
        company_id_field: the event-dict key (and contextvars key) holding the
            company id.
        sender: an existing sender to use instead of the shared one for the key.
        mark_tracked: add ``"bucket_tracked": True`` to each event the processor
            tracked (on by default), so that the rendered line says so and
            ``bucket-logging ship`` / ``relay`` skip it instead of tracking it a
            second time; ``False`` leaves the event dict untouched.
        **sender_options: passed on to the sender.
            ``tracking_plan=`` (a tracking plan's path; default
            ``BUCKET_TRACKING_PLAN``) is the tracking path's: every call is checked
            against the plan (docs: "Tracking plan").

    Raises:
        ConfigurationError: when a rule or an option is invalid, or no tracking key
            is given or set in the environment with ``require_key=True`` (without
            it, tracking stays off and says so once at WARNING).
    """

    __slots__ = ("_mark",)

    def __init__(
        self,
        tracking_key: str | None = None,
        *,
        base_url: str | None = None,
        rules: list[dict[str, Any]] | None = None,
        user_id_field: str = "user_id",
        company_id_field: str = "company_id",
        sender: Sender | None = None,
        mark_tracked: bool = True,
        **sender_options: Any,
    ) -> None:
        self._mark = bool(mark_tracked)
        super().__init__(
            tracking_key,
            base_url=base_url,
            rules=rules,
            user_id_field=user_id_field,
            company_id_field=company_id_field,
            sender=sender,
            **sender_options,
        )

    def __call__(
        self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        """Track the event if it asks for it; return ``event_dict`` unchanged."""
        try:
            event = event_dict.get("event")
            plain = "bucket_event" in event_dict  # Tracker.track_event checks it all
            if not plain and not has_tags(event_dict):  # untagged: only a rule can ask
                cache = self._rule_cache
                if cache is None or (type(event) is str and cache.get(event) is NO_RULES):
                    if _local.claim is not None:
                        release_claim()
                    return event_dict
            name = getattr(logger, "name", None)
            if type(name) is not str:
                name = _logger_name(event_dict)
            plan: object = None
            if not plain:
                plan = self._wants(event_dict, name, event)
                if plan is None:
                    release_claim()
                    return event_dict
                if _diagnostics.is_internal(name, _get_ident()):
                    return event_dict
            now = _time()
        except Exception:  # an odd logger or event dict must not break logging
            if not isinstance(event_dict, MutableMapping):
                _warn_rendered(event_dict)
            return event_dict
        if plain:
            self._track_event(event_dict, now, name, event)
        else:
            self._track(event_dict, now, name, event, plan)
        if self._mark:
            try:  # noqa: SIM105 - (cheaper than contextlib.suppress)
                event_dict[TRACKED_MARK] = True
            except Exception:  # a read-only mapping: left as it is
                pass
        if type(logger) in _NEVER_TO_LOGGING:  # no record can follow: nothing to claim
            if _local.claim is not None:
                release_claim()
            return event_dict
        if isinstance(logger, logging.Logger):
            level = _LEVELS.get(method_name)
            if level is not None and (
                not logger.isEnabledFor(level) or not _reaches_bucket_handler(logger, level)
            ):
                # logging builds no record from this event, or no BucketHandler sees it:
                # an unclaimed record can't be mistaken for it later on this thread
                release_claim()
                return event_dict
        claim(event_dict, event)
        return event_dict

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._rule_count()} rule(s)>"


def _warn_rendered(rendered: object) -> None:
    """Warn once per process: a BucketProcessor placed after the renderer tracks nothing."""
    _diagnostics.warn_once(
        "processor-after-renderer",
        "BucketProcessor received an already-rendered event (%s, not an event dict): it "
        "tracks nothing there; place it before the renderer (JSONRenderer, "
        "ConsoleRenderer, wrap_for_formatter, ...) in structlog's processors",
        type(rendered).__name__,
    )
