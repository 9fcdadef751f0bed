"""The one path from a log record's fields to tracking items, shared by both front ends.

:class:`~bucket_logging.BucketHandler` (stdlib ``logging``) and
:class:`~bucket_logging.BucketProcessor` (structlog) each own a :class:`Tracker`.
They hand it a mapping of fields (a record's ``__dict__`` or a structlog event
dict), the time of the log call, the logger name and the message template; the
tracker reads the ``bucket_*`` tags and the ids, applies the zero-code rules,
validates and encodes each call with :func:`bucket_logging._items.encode`, and
queues the items on the sender.

Three paths keep the common cases cheap. A record with ``bucket_event`` goes to
:meth:`Tracker.track_event`, which encodes the everyday event (the event alone,
plainly valid values) with :func:`bucket_logging._items.event_body` and hands its
bytes straight to a :class:`~bucket_logging.BulkSender`. Other tagged records go
to :meth:`Tracker.wants` (a handful of ``in`` tests) and :meth:`Tracker.track`.
Untagged records cost the front end one ``in`` test, :func:`has_tags`, and with
rules configured one cached dict look-up.

This module also holds the process-wide state both front ends share: the re-entry
guard (the set of threads inside :meth:`Tracker.track`), the per-thread *claim*
that prevents double shipping when structlog is bridged into ``logging`` (see
:func:`claim`), and the capture lists of
:func:`bucket_logging.testing.capture_tracking`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from typing import Any, Final, Protocol

import structlog.contextvars

from . import _diagnostics
from ._diagnostics import internal_names as _internal_names
from ._diagnostics import internal_threads as _internal_threads
from ._exceptions import ConfigurationError, InvalidItemError
from ._items import Item, encode, event_body, format_timestamp, normalize_id, right_sized
from ._rules import Rule, RuleSet, compile_rules
from ._sender import BulkSender, get_sender

__all__ = [
    "ORPHAN",
    "TAGGED",
    "TAGS",
    "FrontEnd",
    "Sender",
    "Tracker",
    "claim",
    "has_tags",
    "is_claimed",
    "rejected_calls",
    "release_claim",
    "resolve_sender",
    "trackers_built",
]

#: How long a front end's ``flush()`` waits by default when its sender has no
#: ``shutdown_timeout`` (a custom sender).
FLUSH_TIMEOUT: Final = 5.0

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

# Feedback keys as users write them (snake_case, camelCase accepted too) -> wire names.
_FEEDBACK_KEYS: Final = {
    "feature_id": "featureId",
    "featureId": "featureId",
    "key": "key",
    "score": "score",
    "comment": "comment",
    "question": "question",
    "prompted_question": "promptedQuestion",
    "promptedQuestion": "promptedQuestion",
    "source": "source",
    "prompt_id": "promptId",
    "promptId": "promptId",
    "feedback_id": "feedbackId",
    "feedbackId": "feedbackId",
    "user_id": "userId",
    "userId": "userId",
    "company_id": "companyId",
    "companyId": "companyId",
}
_FEEDBACK_IDS: Final = frozenset({"featureId", "userId", "companyId"})
_FEEDBACK_DOC: Final = (
    "feature_id, key, score, comment, question, prompted_question, source, prompt_id, "
    "feedback_id, user_id, company_id"
)

# Fields that are never "structured" for a rule's ``"attributes": "*"``: the standard
# LogRecord attributes and structlog's bookkeeping keys (plus, per tracker, the ids).
_RESERVED: Final = frozenset(
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

_CONTEXT_PREFIX: Final = "structlog_"

# Event-dict keys that render_to_log_kwargs does not turn into record attributes.
_NOT_EXTRA: Final = frozenset({"event", "exc_info", "stack_info", "stacklevel", "positional_args"})
_MISSING: Final = object()


class Sender(Protocol):
    """What a front end needs from a sender (see :mod:`bucket_logging._sender`)."""

    def enqueue(self, item: Item) -> bool:
        """Queue ``item`` without blocking; False when it was dropped."""

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued was delivered; True when it was."""


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


class _Local(threading.local):
    #: [the claimed event dict, its event text, the record bound to it or None]
    claim: list[Any] | None = None


_local: Final = _Local()
_get_ident: Final = threading.get_ident

#: The threads inside :meth:`Tracker.track` (the re-entry guard). A set rather than
#: a thread-local: the hot path reads one module global while it is empty.
_busy: set[int] = set()

#: Whether any processor ever claimed an event (see :func:`claim`): until then the
#: handler's hot path does not look for a claim.
_claiming = False


def _after_fork_in_child() -> None:
    _busy.clear()  # the threads that were busy do not exist in the child


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

#: The lists of the active :func:`~bucket_logging.testing.capture_tracking` blocks.
#: Replaced as a whole (never mutated) so readers need no lock.
_captures: tuple[list[dict[str, Any]], ...] = ()


#: How many trackers this process has built (front ends of any kind): a capture that
#: caught nothing says so when there are none.
_trackers_built = 0


def trackers_built() -> int:
    """How many trackers (so front ends) this process has built."""
    return _trackers_built


def start_capture(target: list[dict[str, Any]]) -> None:
    """Divert every item of every tracker to ``target`` (decoded) instead of the senders."""
    global _captures
    _captures = (*_captures, target)


def stop_capture(target: list[dict[str, Any]]) -> None:
    """End a :func:`start_capture`."""
    global _captures
    _captures = tuple(c for c in _captures if c is not target)


# --------------------------------------------------------------------------- claims


def claim(event_dict: Mapping[str, Any], event: object) -> None:
    """Record that a BucketProcessor tracked ``event_dict`` on this thread.

    When structlog is bridged into ``logging``, the stdlib record built from this
    event dict reaches the handlers synchronously, on this thread, right after the
    processor chain. :func:`is_claimed` lets a BucketHandler recognise that record
    and leave it alone, so the event is tracked exactly once.
    """
    global _claiming
    _local.claim = [event_dict, event, None]
    _claiming = True


def release_claim() -> None:
    """Forget this thread's claim (a processor call that tracked nothing)."""
    local = _local
    if local.claim is not None:
        local.claim = None


def is_claimed(record: logging.LogRecord, fields: Mapping[str, Any], template: object) -> bool:
    """Whether ``record`` was produced from the event dict a processor just tracked.

    ``ProcessorFormatter.wrap_for_formatter`` makes the event dict itself the record's
    ``msg`` (``fields``). ``render_to_log_kwargs`` pops ``event`` from the event dict
    (it becomes the record's ``msg``) and turns every other key into a record
    attribute: the record's tags and other attributes are the very same objects as
    the claimed dict's values. The first record recognised is bound to the claim: a
    later record that happens to share those objects is not mistaken for it.
    """
    claim = _local.claim
    if claim is None:
        return False
    claimed = claim[0]
    if fields is not claimed:
        # render_to_log_kwargs pops "event" from the (claimed) event dict itself; a
        # later processor may have replaced the text (PositionalArgumentsFormatter).
        if template is not claim[1] and "event" in claimed:
            return False
        get = fields.get
        cget = claimed.get
        for key in TAGS:
            if get(key) is not cget(key):
                return False
        for key, value in claimed.items():  # every other key became a record attribute
            if key not in _NOT_EXTRA and get(key, _MISSING) is not value:
                return False
    bound = claim[2]
    if bound is None:
        claim[2] = record
        return True
    return bound is record


# --------------------------------------------------------------------------- helpers


def _wire(head: dict[str, Any], **optional: Any) -> dict[str, Any]:
    """``head`` with the ``optional`` fields that are not None, in their order."""
    for name, value in optional.items():
        if value is not None:
            head[name] = value
    return head


def _short(obj: object, limit: int = 80) -> str:
    """A bounded repr for diagnostics; never raises."""
    try:
        text = repr(obj)
    except Exception:
        return f"<{type(obj).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _context_vars() -> dict[str, Any] | None:
    found = getattr(structlog.contextvars, "_CONTEXT_VARS", None)
    return found if isinstance(found, dict) else None


# structlog keeps one ContextVar per bound key in this dict; reading the one we need
# is far cheaper than get_contextvars(), which copies the whole context.
_STRUCTLOG_VARS: Final = _context_vars()


class _AnyKey:
    """Stands for structlog's dict where it has none: every key may be bound."""

    def __contains__(self, key: object) -> bool:
        return True


#: The keys that may hold a bound value: a key not in it is certainly not bound.
_CONTEXT_KEYS: Final = _AnyKey() if _STRUCTLOG_VARS is None else _STRUCTLOG_VARS


def _from_context(name: str, key: str) -> Any:
    """The value bound with ``structlog.contextvars.bind_contextvars(name=...)``, or None."""
    variables = _STRUCTLOG_VARS
    if variables is None:
        return structlog.contextvars.get_contextvars().get(name)
    var = variables.get(key)
    if var is None:
        return None
    value = var.get(None)
    return None if value is Ellipsis else value


def resolve_sender(
    sender: Any,
    tracking_key: str | None,
    base_url: str | None,
    options: Mapping[str, Any],
) -> Sender:
    """The sender a front end uses: ``sender`` as given, or the shared one for the key."""
    if sender is not None:
        if tracking_key is not None or base_url is not None or options:
            raise ConfigurationError(
                "pass either sender= or the tracking key and sender options, not both"
            )
        if not callable(getattr(sender, "enqueue", None)) or not callable(
            getattr(sender, "flush", None)
        ):
            raise ConfigurationError(
                f"sender must have enqueue() and flush() methods, got {type(sender).__name__}"
            )
        return sender  # type: ignore[no-any-return]
    return get_sender(tracking_key, base_url=base_url, **options)


def _check_field(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{name} must be a non-empty string, got {value!r:.60}")
    return value


# --------------------------------------------------------------------------- the tracker


class Tracker:
    """Turns the fields of one log call into validated items and queues them.

    Everything that depends only on the configuration (field names, context keys,
    compiled rules, the sender) is worked out once here.

    Args:
        sender: where items go (anything with ``enqueue(item)`` and ``flush(timeout)``).
        rules: zero-code rules, see :mod:`bucket_logging._rules`.
        user_id_field: the field holding the user id (also the contextvars key).
        company_id_field: the field holding the company id (also the contextvars key).
    """

    __slots__ = (
        "_company_field",
        "_company_key",
        "_put",
        "_reserved",
        "_rules",
        "_sender",
        "_user_field",
        "_user_key",
    )

    def __init__(
        self,
        sender: Sender,
        *,
        rules: object = None,
        user_id_field: str = "user_id",
        company_id_field: str = "company_id",
    ) -> None:
        self._sender = sender
        # the everyday event's encoded bytes go straight onto a BulkSender's queue (not
        # when a subclass overrides enqueue: it sees every item)
        self._put = (
            sender._put
            if isinstance(sender, BulkSender) and type(sender).enqueue is BulkSender.enqueue
            else self._enqueue_body
        )
        self._user_field = _check_field("user_id_field", user_id_field)
        self._company_field = _check_field("company_id_field", company_id_field)
        self._user_key = _CONTEXT_PREFIX + user_id_field
        self._company_key = _CONTEXT_PREFIX + company_id_field
        if isinstance(rules, RuleSet) or rules is None:
            self._rules: RuleSet | None = rules
        else:
            self._rules = compile_rules(rules)  # type: ignore[arg-type]
        self._reserved = _RESERVED | {user_id_field, company_id_field}
        global _trackers_built
        _trackers_built += 1

    @property
    def sender(self) -> Sender:
        """The sender items are queued on."""
        return self._sender

    @property
    def rules(self) -> RuleSet | None:
        """The compiled rules, or None."""
        return self._rules

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until the sender delivered what is queued, or ``timeout``; never raises.

        ``timeout`` defaults to the sender's ``shutdown_timeout`` (5 s for a sender
        without one): logging calls ``flush()`` with no argument at
        ``logging.shutdown()``, and a hanging endpoint must not hold the exit longer.
        True when everything queued was delivered (or dropped and counted).
        """
        sender = self._sender
        if timeout is None:
            default = getattr(sender, "shutdown_timeout", None)
            timeout = float(default) if isinstance(default, (int, float)) else FLUSH_TIMEOUT
        try:
            return bool(sender.flush(timeout))
        except Exception as exc:
            _diagnostics.report(
                "flush-error",
                "Flushing the tracking queue failed (%s: %s)",
                type(exc).__name__,
                exc,
            )
            return False

    def wants(self, fields: Mapping[str, Any], logger_name: str, template: object) -> object:
        """The cheap first step: what this record asks for, or None for nothing.

        Returns :data:`TAGGED`, a matching :class:`~bucket_logging._rules.Rule`,
        :data:`ORPHAN`, or None. Never raises for ordinary mappings.
        """
        if (
            "bucket_event" in fields
            or "bucket_user" in fields
            or "bucket_company" in fields
            or "bucket_feedback" in fields
        ):
            return TAGGED
        rules = self._rules
        if rules is not None:
            rule = rules.lookup(template, logger_name)
            if rule is not None:
                return rule
        if "bucket_attributes" in fields or "bucket_active" in fields:
            return ORPHAN
        return None

    def track_event(
        self,
        fields: Mapping[str, Any],
        created: float,
        logger_name: str,
        template: object,
        record: logging.LogRecord | None = None,
    ) -> None:
        """Track a record that carries ``bucket_event``: the everyday one in one step.

        Front ends call this for every record with ``bucket_event``: the time of the
        call, the logger name, and the stdlib ``record`` if there is one. It skips the library's
        own records and a record a processor already tracked. The everyday event
        (no ``bucket_user``, ``bucket_company``, ``bucket_feedback`` or
        ``bucket_active`` beside it) with plainly valid values is encoded by
        :func:`~bucket_logging._items.event_body` and its bytes are queued; everything
        else goes to :meth:`track`, which converts, validates and explains. No
        application code runs on the everyday path (so it needs no re-entry guard of
        its own). Never raises.
        """
        if _busy and _get_ident() in _busy:  # inside track(): its conversions logged
            return
        try:
            if record is None:
                if _get_ident() in _internal_threads:
                    return
            elif record.thread in _internal_threads:
                return
            elif _claiming:  # a processor tracks events too: was this record its event's?
                claim = _local.claim
                if (
                    claim is not None
                    # is_claimed's first test, inline: most records fail it
                    and (fields is claim[0] or template is claim[1] or "event" not in claim[0])
                    and is_claimed(record, fields, template)
                ):
                    return
            internal = _internal_names.get(logger_name)
            if internal is None:
                internal = _diagnostics.internal_logger(logger_name)
            if internal:
                return
            if type(fields) is dict and not (  # (a custom Mapping may run code)
                "bucket_user" in fields
                or "bucket_company" in fields
                or "bucket_feedback" in fields
                or "bucket_active" in fields
            ):
                get = fields.get
                user_id = get(self._user_field)
                if user_id is None and self._user_key in _CONTEXT_KEYS:
                    user_id = _from_context(self._user_field, self._user_key)
                company_id = get(self._company_field)
                if company_id is None and self._company_key in _CONTEXT_KEYS:
                    company_id = _from_context(self._company_field, self._company_key)
                body = event_body(
                    get("bucket_event"), user_id, company_id, get("bucket_attributes"), created
                )
                if body is not None:
                    if _captures:
                        self._deliver(Item("event", body))
                    else:
                        self._put(body)
                    return
        except InvalidItemError as exc:  # too large: final, and not encoded again
            _reject("event", logger_name, template, "; ".join(exc.errors))
            return
        except Exception:  # a broken record: the general path explains what it can
            pass
        self.track(fields, created, logger_name, template, TAGGED)

    def _queue_event(self, body: bytes) -> None:
        """Queue the bytes of an event from :func:`~bucket_logging._items.event_body`."""
        if _captures:
            self._deliver(Item("event", body))
        else:
            self._put(body)

    def _enqueue_body(self, body: bytes) -> bool:
        """:attr:`_put` for any other sender: an Item (kept: right-sized), re-entry guarded.

        The sender's ``enqueue`` is application code: what it logs is not tracked.
        """
        me = _get_ident()
        if me in _busy:  # called from track(), which holds the guard already
            self._deliver(Item("event", right_sized(body)))
            return True
        _busy.add(me)
        try:
            self._deliver(Item("event", right_sized(body)))
        finally:
            _busy.discard(me)
        return True

    def track(
        self,
        fields: Mapping[str, Any],
        created: float,
        logger_name: str,
        template: object,
        plan: object = TAGGED,
    ) -> None:
        """Build, validate and queue the calls ``plan`` (from :meth:`wants`) asks for.

        ``created`` is the POSIX time of the log call. Never raises: problems are
        reported on the ``bucket_logging`` logger, invalid calls are not sent and the
        valid calls of the same record still are. Re-entrant calls on the same
        thread (tracking that logs something tagged) are ignored.
        """
        me = _get_ident()
        if me in _busy:
            return
        _busy.add(me)
        try:
            if plan is ORPHAN:
                _reject(
                    "tags",
                    logger_name,
                    template,
                    "bucket_attributes/bucket_active need bucket_event, bucket_user or "
                    "bucket_company (or a matching rule); nothing was sent",
                )
            elif plan is TAGGED or isinstance(plan, Rule):
                self._track(fields, created, logger_name, template, plan)
        except Exception as exc:
            _diagnostics.report(
                "tracking-error",
                "Tracking the record of logger %r with message %s failed (%s: %s); "
                "its remaining calls were not sent",
                logger_name,
                _short(template),
                type(exc).__name__,
                exc,
            )
        finally:
            _busy.discard(me)

    # -- the slow path ---------------------------------------------------------------

    def _track(
        self,
        fields: Mapping[str, Any],
        created: float,
        logger_name: str,
        template: object,
        plan: object,
    ) -> None:
        get = fields.get
        attributes: Any = get("bucket_attributes")
        active: Any = get("bucket_active")
        rule: Rule | None = None
        if isinstance(plan, Rule):
            rule = plan
            event: Any = rule.event
            user: Any = None
            company: Any = None
            feedback: Any = None
            if active is None:
                active = rule.active
            if rule.attributes is not None or rule.all_attributes:
                attributes = self._rule_attributes(rule, fields, attributes)
        else:
            event = get("bucket_event")
            user = get("bucket_user")
            company = get("bucket_company")
            feedback = get("bucket_feedback")

        if (
            attributes is not None
            and type(attributes) is not dict
            and not isinstance(attributes, Mapping)
        ):
            _reject(
                "event",
                logger_name,
                template,
                f"bucket_attributes must be a dict, not {type(attributes).__name__}",
            )
            event = None
        elif attributes is not None and event is None:
            _reject(
                "tags",
                logger_name,
                template,
                "bucket_attributes are the attributes of bucket_event, which is missing; "
                "they were ignored",
            )
        if active is not None and type(active) is not bool:
            _reject(
                "tags",
                logger_name,
                template,
                f"bucket_active must be True or False, got {_short(active, 40)}; "
                "the record's user, company and event calls were not sent",
            )
            user = company = event = None

        user_id = get(self._user_field)
        if user_id is None:
            user_id = _from_context(self._user_field, self._user_key)
        if type(user_id) is not str and user_id is not None:
            user_id = normalize_id(user_id)
        company_id = get(self._company_field)
        if company_id is None:
            company_id = _from_context(self._company_field, self._company_key)
        if type(company_id) is not str and company_id is not None:
            company_id = normalize_id(company_id)
        timestamp = format_timestamp(created)
        context = None if active is None else {"active": active}

        if user is not None and user is not False:
            self._entity(
                "user",
                value=user,
                entity_id=user_id,
                user_id=None,
                context=context,
                timestamp=timestamp,
                logger_name=logger_name,
                template=template,
            )
        if company is not None and company is not False:
            self._entity(
                "company",
                value=company,
                entity_id=company_id,
                user_id=user_id,
                context=context,
                timestamp=timestamp,
                logger_name=logger_name,
                template=template,
            )
        if event is not None:
            if not isinstance(event, str) or not event:
                problem = (
                    "bucket_event must not be empty"
                    if isinstance(event, str)
                    else f"bucket_event must be the event name (a string), "
                    f"not {type(event).__name__} {_short(event, 40)}"
                )
                _reject("event", logger_name, template, problem)
            elif user_id is None:
                _reject("event", logger_name, template, self._missing_user(f"event {event!r}"))
            else:
                # a rule's event (or one beside other tags) with plain values: the
                # everyday encoder; anything else is validated and converted by encode
                body = None
                if context is None:
                    try:
                        body = event_body(event, user_id, company_id, attributes, created)
                    except InvalidItemError as exc:
                        _reject("event", logger_name, template, "; ".join(exc.errors))
                        event = None
                if body is not None:
                    self._queue_event(body)
                elif event is not None:
                    wire = _wire(
                        {"type": "event", "event": event, "userId": user_id},
                        companyId=company_id,
                        attributes=attributes,
                        context=context,
                    )
                    self._send(wire, timestamp, logger_name, template)
        if feedback is not None:
            self._feedback(
                feedback,
                user_id=user_id,
                company_id=company_id,
                timestamp=timestamp,
                logger_name=logger_name,
                template=template,
            )

    def _entity(
        self,
        kind: str,
        *,
        value: Any,
        entity_id: Any,
        user_id: Any,
        context: dict[str, Any] | None,
        timestamp: str,
        logger_name: str,
        template: object,
    ) -> None:
        """A user call (``user_id`` None) or a company call (associated with ``user_id``)."""
        tag = "bucket_" + kind
        if value is True:
            attributes = None
        elif type(value) is dict or isinstance(value, Mapping):
            attributes = value
        else:
            _reject(
                kind,
                logger_name,
                template,
                f"{tag} must be True or a dict of attributes, "
                f"not {type(value).__name__} {_short(value, 40)}",
            )
            return
        if entity_id is None:
            if kind == "user":
                problem = self._missing_user(tag)
            else:
                field = self._company_field
                problem = (
                    f"{tag} needs a company id: give the record a {field!r} field or "
                    f"bind it with structlog.contextvars.bind_contextvars({field}=...)"
                )
            _reject(kind, logger_name, template, problem)
            return
        id_name = "userId" if kind == "user" else "companyId"
        wire = _wire(
            {"type": kind, id_name: entity_id},
            userId=user_id,
            attributes=attributes,
            context=context,
        )
        self._send(wire, timestamp, logger_name, template)

    def _feedback(
        self,
        feedback: Any,
        *,
        user_id: Any,
        company_id: Any,
        timestamp: str,
        logger_name: str,
        template: object,
    ) -> None:
        if not isinstance(feedback, Mapping):
            _reject(
                "feedback",
                logger_name,
                template,
                f"bucket_feedback must be a dict ({_FEEDBACK_DOC}), not {type(feedback).__name__}",
            )
            return
        wire: dict[str, Any] = {"type": "feedback"}
        unknown: list[str] = []
        for key, value in feedback.items():
            name = _FEEDBACK_KEYS.get(key) if isinstance(key, str) else None
            if name is None:
                unknown.append(_short(key, 40))
            elif value is not None:
                wire[name] = normalize_id(value) if name in _FEEDBACK_IDS else value
        if unknown:
            _reject(
                "feedback",
                logger_name,
                template,
                f"bucket_feedback has unknown key(s) {', '.join(sorted(unknown))}; "
                f"it takes {_FEEDBACK_DOC}",
            )
            return
        if "userId" not in wire:
            if user_id is None:
                _reject("feedback", logger_name, template, self._missing_user("bucket_feedback"))
                return
            wire["userId"] = user_id
        if "companyId" not in wire and company_id is not None:
            wire["companyId"] = company_id
        self._send(wire, timestamp, logger_name, template)

    def _send(
        self, wire: dict[str, Any], timestamp: str, logger_name: str, template: object
    ) -> None:
        kind = wire["type"]
        try:
            item = encode(wire, timestamp)
        except InvalidItemError as exc:
            _reject(kind, logger_name, template, "; ".join(exc.errors))
            return
        self._deliver(item)

    def _deliver(self, item: Item) -> None:
        """Queue ``item`` on the sender, or hand it to the active capture blocks."""
        captures = _captures
        if captures:
            decoded = item.to_dict()
            for target in captures:
                target.append(dict(decoded))
            return
        try:
            self._sender.enqueue(item)
        except Exception as exc:
            _diagnostics.report(
                "enqueue-error",
                "Queueing a %s call failed (%s: %s); it was not sent",
                item.kind,
                type(exc).__name__,
                exc,
            )

    def _missing_user(self, what: str) -> str:
        field = self._user_field
        return (
            f"{what} needs a user id: give the record a {field!r} field or bind it with "
            f"structlog.contextvars.bind_contextvars({field}=...)"
        )

    def _rule_attributes(
        self, rule: Rule, fields: Mapping[str, Any], extra: Any
    ) -> dict[str, Any] | Any:
        if rule.all_attributes:
            reserved = self._reserved
            attributes = {
                k: v
                for k, v in fields.items()
                if k not in reserved and isinstance(k, str) and not k.startswith("_")
            }
        else:
            attributes = {name: fields[name] for name in rule.attributes or () if name in fields}
        if extra is not None:
            if not isinstance(extra, Mapping):
                return extra  # reported by the caller
            attributes.update(extra)
        return attributes or None


#: How many calls :func:`_reject` refused in this process (see :func:`rejected_calls`).
_rejected_calls = 0


def rejected_calls() -> int:
    """How many calls were not sent because a record's tags or values were invalid.

    Counted for the whole process (every tracker), for summaries such as
    ``bucket-logging ship``'s; the reports themselves are rate-limited.
    """
    return _rejected_calls


def _reject(kind: str, logger_name: str, template: object, problem: str) -> None:
    """Report a call that is not sent (rate-limited per kind), and count it."""
    global _rejected_calls
    _rejected_calls += 1
    _diagnostics.report(
        "invalid-" + kind,
        "Not sending the %s call of a record from logger %r with message %s: %s",
        kind if kind != "tags" else "tracking",
        logger_name,
        _short(template),
        problem,
    )


class FrontEnd:
    """What both front ends share: their :class:`Tracker` and its bound steps.

    :class:`~bucket_logging.BucketHandler` and :class:`~bucket_logging.BucketProcessor`
    call :meth:`_set_up` from their constructors; everything the hot path needs is
    looked up once there.
    """

    __slots__ = ("_rule_cache", "_track", "_track_event", "_tracker", "_wants")

    _tracker: Tracker
    _rule_cache: dict[str, tuple[Rule, ...]] | None
    _wants: Any
    _track: Any
    _track_event: Any

    def _set_up(
        self,
        sender: Any,
        tracking_key: str | None,
        base_url: str | None,
        sender_options: Mapping[str, Any],
        *,
        rules: object,
        user_id_field: str,
        company_id_field: str,
    ) -> None:
        tracker = Tracker(
            resolve_sender(sender, tracking_key, base_url, sender_options),
            rules=rules,
            user_id_field=user_id_field,
            company_id_field=company_id_field,
        )
        self._tracker = tracker
        compiled = tracker.rules
        self._rule_cache = None if compiled is None else compiled.template_cache
        self._wants = tracker.wants
        self._track = tracker.track
        self._track_event = tracker.track_event

    @property
    def tracker(self) -> Tracker:
        """The tracker shared by this front end's calls."""
        return self._tracker

    @property
    def sender(self) -> Sender:
        """The sender this front end queues on."""
        return self._tracker.sender

    def _rule_count(self) -> int:
        rules = self._tracker.rules
        return len(rules) if rules is not None else 0
