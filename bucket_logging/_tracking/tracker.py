"""The one path from a log record's fields to tracking items, shared by both front ends.

:class:`~bucket_logging.BucketHandler` (stdlib ``logging``) and
:class:`~bucket_logging.BucketProcessor` (structlog) each own a :class:`Tracker`.
They hand it a mapping of fields (a record's ``__dict__`` or a structlog event
dict), the time of the log call, the logger name and the message template; the
tracker reads the ``bucket_*`` tags and the ids, applies the zero-code rules,
validates and encodes each call with :func:`bucket_logging._items.item.encode`, and
queues the items on the sender.

Three paths keep the common cases cheap. A record with ``bucket_event`` goes to
:meth:`Tracker.track_event`, which encodes the everyday event (the event alone,
plainly valid values) with :func:`bucket_logging._items.item.event_body` and hands its
bytes straight to a :class:`~bucket_logging.BulkSender`. Other tagged records go
to :meth:`Tracker.wants` (a handful of ``in`` tests) and :meth:`Tracker.track`.
Untagged records cost the front end one ``in`` test, :func:`has_tags`, and with
rules configured one cached dict look-up.

It also holds the front ends' shared hot-path state: the re-entry guard and
whether a processor ever claimed an event (:func:`~bucket_logging._tracking.claims.claim`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any, Final

from .._exceptions import InvalidItemError
from .._items.item import Item, encode, event_body, format_timestamp, normalize_id, right_sized
from .._runtime import diagnostics as _diagnostics
from .._runtime import state as _process
from .._runtime.diagnostics import internal_names as _internal_names
from .._runtime.diagnostics import internal_threads as _internal_threads
from .._sender.ledger import RefusalReason
from .capture import active as _captures
from .capture import tracker_built
from .claims import claiming, is_claimed, local
from .context import CONTEXT_KEYS as _CONTEXT_KEYS
from .context import KEY_PREFIX as _CONTEXT_PREFIX
from .context import from_context as _from_context
from .plan import Plan
from .plan_load import plan_of
from .plancheck import PlanCheck
from .rules import Rule, RuleSet, compile_rules
from .senders import (
    Sender,
    before_send_of,
    check_field,
    encoded_put,
    every_event_attributes,
    flush_sender,
    refusal_counter,
)
from .tags import (
    ORPHAN,
    RESERVED,
    TAGGED,
    TYPO_PROBE,
    UNKNOWN,
    beyond_event,
    checked_templates,
    has_call,
    has_modifier,
    misspelled,
    unchecked,
)
from .wire import (
    Refusal,
    entity_wire,
    feedback_wire,
    missing_user,
    read_tags,
    reject,
    report_unknown_tags,
    short,
    watched_failure,
    wire_of,
)

__all__ = ["ORPHAN", "TAGGED", "Tracker", "under"]

_get_ident: Final = threading.get_ident

#: The threads inside :meth:`Tracker.track` (the re-entry guard). A set rather than
#: a thread-local: the hot path reads one module global while it is empty.
_busy: Final = _process.state.busy


# --------------------------------------------------------------------------- the tracker


class Tracker:
    """Turns the fields of one log call into validated items and queues them.

    Everything that depends only on the configuration (field names, context keys,
    compiled rules, the sender) is worked out once here.

    Args:
        sender: where items go (anything with ``enqueue(item)`` and ``flush(timeout)``).
        rules: zero-code rules, see :mod:`bucket_logging._tracking.rules`.
        user_id_field: the field holding the user id (also the contextvars key).
        company_id_field: the field holding the company id (also the contextvars key).
        tracking_plan: a tracking plan's path (or a loaded plan): every call is checked
            against it (:mod:`bucket_logging._tracking.plancheck`); None: the
            ``BUCKET_TRACKING_PLAN`` variable, else none.
    """

    __slots__ = (
        "_base",
        "_company_field",
        "_company_key",
        "_count_refused",
        "_plan",
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
        tracking_plan: object = None,
    ) -> None:
        self._sender = sender
        plan = plan_of(tracking_plan)  # (None: BUCKET_TRACKING_PLAN, else no plan)
        self._plan = None if plan is None else PlanCheck(plan, sender)
        # the everyday event's encoded bytes go straight onto a BulkSender's queue
        self._put = encoded_put(sender) or self._enqueue_body
        self._count_refused = refusal_counter(sender)
        #: the sender's every-event attributes (under each event's own), or None
        self._base = every_event_attributes(sender)
        self._user_field = check_field("user_id_field", user_id_field)
        self._company_field = check_field("company_id_field", company_id_field)
        self._user_key = _CONTEXT_PREFIX + user_id_field
        self._company_key = _CONTEXT_PREFIX + company_id_field
        if isinstance(rules, RuleSet) or rules is None:
            self._rules: RuleSet | None = rules
        else:
            self._rules = compile_rules(rules)  # type: ignore[arg-type]
        self._reserved = RESERVED | {user_id_field, company_id_field}
        tracker_built()

    @property
    def sender(self) -> Sender:
        """The sender items are queued on."""
        return self._sender

    @property
    def plan(self) -> Plan | None:
        """The tracking plan calls are checked against, or None."""
        return None if self._plan is None else self._plan.plan

    @property
    def rules(self) -> RuleSet | None:
        """The compiled rules, or None."""
        return self._rules

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until the sender delivered what is queued, or ``timeout``; never raises.

        See :func:`~bucket_logging._tracking.senders.flush_sender` for the default timeout.
        """
        return flush_sender(self._sender, timeout)

    def wants(self, fields: Mapping[str, Any], logger_name: str, template: object) -> object:
        """The cheap first step: what this record asks for, or None for nothing.

        Returns :data:`TAGGED`, a matching :class:`~bucket_logging._tracking.rules.Rule`,
        :data:`ORPHAN`, or None. Never raises for ordinary mappings.
        """
        if has_call(fields):
            return TAGGED
        rules = self._rules
        if rules is not None:
            rule = rules.lookup(template, logger_name)
            if rule is not None:
                return rule
        if has_modifier(fields):
            return ORPHAN
        if TYPO_PROBE in fields:
            return UNKNOWN
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
        :func:`~bucket_logging._items.item.event_body` and its bytes are queued; everything
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
            elif claiming:  # a processor tracks events too: was this record its event's?
                claim = local.claim
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
            if template not in checked_templates:  # once per log statement: typos?
                self._check_keys(fields, logger_name, template)
            # (a custom Mapping may run code)
            if type(fields) is dict and not beyond_event(fields):
                get = fields.get
                user_id = get(self._user_field)
                if user_id is None and self._user_key in _CONTEXT_KEYS:
                    user_id = _from_context(self._user_field, self._user_key)
                company_id = get(self._company_field)
                if company_id is None and self._company_key in _CONTEXT_KEYS:
                    company_id = _from_context(self._company_field, self._company_key)
                event = get("bucket_event")
                attributes = get("bucket_attributes")
                base = self._base
                if base is not None:
                    attributes = under(base, attributes)
                plan = self._plan  # with one: its kept verdict first (else the slow path,
                if plan is None or (  # which checks and encodes: never encoded twice)
                    (section := plan.events.get(event)) is not None  # type: ignore[arg-type]
                    and (section.quick or section.passes)(attributes)  # (made at load)
                ):
                    body = event_body(event, user_id, company_id, attributes, created)
                    if body is not None:
                        if _captures:
                            self._deliver(Item("event", body))
                        else:
                            self._put(body)
                        return
        except InvalidItemError as exc:  # too large: final, and not encoded again
            self._reject("invalid_item", "event", logger_name, template, "; ".join(exc.errors))
            return
        except Exception:  # a broken record: the general path explains what it can
            pass
        self.track(fields, created, logger_name, template, TAGGED)

    def _queue_event(self, body: bytes) -> None:
        """Queue the bytes of an event from :func:`~bucket_logging._items.item.event_body`."""
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
            if plan is UNKNOWN or unchecked(template):
                self._check_keys(fields, logger_name, template)
            if plan is ORPHAN:
                self._reject(
                    "orphan_tags",
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
                short(template),
                type(exc).__name__,
                exc,
            )
            watched_failure(f"tracking failed ({type(exc).__name__})")
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
        tags = read_tags(fields, plan, self._reserved)
        for kind, problem in tags.problems:
            self._reject("invalid_tag", kind, logger_name, template, problem)
        event, attributes, active = tags.event, tags.attributes, tags.active
        if self._base is not None and event is not None:
            attributes = under(self._base, attributes, general=True)
        get = fields.get
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

        fields_ = (self._user_field, self._company_field)
        if tags.user is not None and tags.user is not False:
            wire = entity_wire("user", tags.user, user_id, None, context, *fields_)
            self._send_orreject("user", wire, timestamp, logger_name, template)
        if tags.company is not None and tags.company is not False:
            wire = entity_wire("company", tags.company, company_id, user_id, context, *fields_)
            self._send_orreject("company", wire, timestamp, logger_name, template)
        if event is not None:
            if not isinstance(event, str) or not event:
                problem = (
                    "bucket_event must not be empty"
                    if isinstance(event, str)
                    else f"bucket_event must be the event name (a string), "
                    f"not {type(event).__name__} {short(event, 40)}"
                )
                self._reject("invalid_tag", "event", logger_name, template, problem)
            elif user_id is None:
                problem = missing_user(self._user_field, f"event {event!r}")
                self._reject("missing_id", "event", logger_name, template, problem)
            else:
                # a rule's event (or one beside other tags) with plain values: the
                # everyday encoder; anything else is validated and converted by encode
                body = None
                if context is None and self._plan is None:
                    try:
                        body = event_body(event, user_id, company_id, attributes, created)
                    except InvalidItemError as exc:
                        problem = "; ".join(exc.errors)
                        self._reject("invalid_item", "event", logger_name, template, problem)
                        event = None
                if body is not None:
                    self._queue_event(body)
                elif event is not None:
                    wire = wire_of(
                        {"type": "event", "event": event, "userId": user_id},
                        companyId=company_id,
                        attributes=attributes,
                        context=context,
                    )
                    self._send(wire, timestamp, logger_name, template)
        if tags.feedback is not None:
            wire = feedback_wire(tags.feedback, user_id, company_id, self._user_field)
            self._send_orreject("feedback", wire, timestamp, logger_name, template)

    def _send_orreject(
        self,
        kind: str,
        wire: dict[str, Any] | Refusal,
        timestamp: str,
        logger_name: str,
        template: object,
    ) -> None:
        """Send ``wire``, or report the refusal it is instead."""
        if isinstance(wire, Refusal):
            self._reject(wire.reason, kind, logger_name, template, wire.problem)
        else:
            self._send(wire, timestamp, logger_name, template)

    def _send(
        self, wire: dict[str, Any], timestamp: str, logger_name: str, template: object
    ) -> None:
        kind = wire["type"]
        if self._plan is not None:
            checked = self._plan.check(wire, logger_name, template)
            if checked is None:
                return
            wire = checked
        try:
            item = encode(wire, timestamp)
        except InvalidItemError as exc:
            self._reject("invalid_item", kind, logger_name, template, "; ".join(exc.errors))
            return
        self._deliver(item)

    def _check_keys(self, fields: Mapping[str, Any], logger_name: str, template: object) -> None:
        """Report the record's misspelled tags.

        See :func:`~bucket_logging._tracking.tags.misspelled`.
        """
        count = self._count_refused
        for problem in report_unknown_tags(misspelled(fields, template), logger_name, template):
            if count is not None:
                count("unknown_tag", "tags", problem)

    def _reject(
        self, reason: RefusalReason, kind: str, logger_name: str, template: object, problem: str
    ) -> None:
        """Report a call that is not sent, and count it (here and on a BulkSender)."""
        reject(kind, logger_name, template, problem)
        if self._count_refused is not None:
            self._count_refused(reason, kind, problem)

    def _deliver(self, item: Item) -> None:
        """Queue ``item`` on the sender, or hand it to the active capture blocks."""
        if _captures:
            decoded = item.to_dict()
            before_send = before_send_of(self._sender)
            if before_send is not None:
                filtered = before_send(decoded)
                if filtered is None:
                    return
                decoded = filtered
            for target in tuple(_captures):
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


def under(base: dict[str, Any], attributes: object, *, general: bool = False) -> object:
    """An event's ``attributes`` with the every-event ``base`` under them (its own win).

    The hot path merges only a ``dict`` (no application code runs there); the general
    path (``general``) a Mapping too. Anything else is left for the checks to explain.
    """
    if attributes is None:
        return base
    if type(attributes) is dict or (general and isinstance(attributes, Mapping)):
        return {**base, **attributes}
    return attributes
