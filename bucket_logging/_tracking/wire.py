"""The wire dicts of tracking calls, built from a record's tags (no encoding here).

The :class:`~bucket_logging._tracking.tracker.Tracker` reads the tags and ids of a record
and asks these functions for the call's wire dict; a problem comes back as a
:class:`Refusal`: the reason counted in ``stats.refused``, typed where the refusal
happens, and the message that the tracker reports.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from .._items.item import normalize_id
from .._runtime.diagnostics import problem_topic, report
from .._runtime.state import state as _state
from .._sender.ledger import RefusalReason
from .rules import Rule

__all__ = [
    "Refusal",
    "Tags",
    "entity_wire",
    "feedback_wire",
    "missing_user",
    "read_tags",
    "reject",
    "rejected_calls",
    "rule_attributes",
    "short",
    "watch_rejections",
    "watched_failure",
    "wire_of",
]

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


class Refusal(NamedTuple):
    """A call that is not sent: why (counted in ``stats.refused``) and the message."""

    reason: RefusalReason
    problem: str


def wire_of(head: dict[str, Any], **optional: Any) -> dict[str, Any]:
    """``head`` with the ``optional`` fields that are not None, in their order."""
    for name, value in optional.items():
        if value is not None:
            head[name] = value
    return head


def short(obj: object, limit: int = 80) -> str:
    """A bounded repr for diagnostics; never raises."""
    try:
        text = repr(obj)
    except Exception:
        return f"<{type(obj).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def missing_user(field: str, what: str) -> str:
    """The problem of a call that needs a user id and has none."""
    return (
        f"{what} needs a user id: give the record a {field!r} field or bind it with "
        f"structlog.contextvars.bind_contextvars({field}=...)"
    )


def entity_wire(  # noqa: PLR0917 - the call's parts, in the tracker's order
    kind: str,
    value: Any,
    entity_id: Any,
    user_id: Any,
    context: dict[str, Any] | None,
    user_field: str,
    company_field: str,
) -> dict[str, Any] | Refusal:
    """A user call (``user_id`` None) or a company call (associated with ``user_id``)."""
    tag = "bucket_" + kind
    if value is True:
        attributes = None
    elif type(value) is dict or isinstance(value, Mapping):
        attributes = value
    else:
        return Refusal(
            "invalid_tag",
            f"{tag} must be True or a dict of attributes, "
            f"not {type(value).__name__} {short(value, 40)}",
        )
    if entity_id is None:
        if kind == "user":
            return Refusal("missing_id", missing_user(user_field, tag))
        return Refusal(
            "missing_id",
            f"{tag} needs a company id: give the record a {company_field!r} field or "
            f"bind it with structlog.contextvars.bind_contextvars({company_field}=...)",
        )
    id_name = "userId" if kind == "user" else "companyId"
    return wire_of(
        {"type": kind, id_name: entity_id},
        userId=user_id,
        attributes=attributes,
        context=context,
    )


def feedback_wire(
    feedback: Any, user_id: Any, company_id: Any, user_field: str
) -> dict[str, Any] | Refusal:
    """A feedback call from ``bucket_feedback`` (snake_case or camelCase keys)."""
    if not isinstance(feedback, Mapping):
        return Refusal(
            "invalid_tag",
            f"bucket_feedback must be a dict ({_FEEDBACK_DOC}), not {type(feedback).__name__}",
        )
    wire: dict[str, Any] = {"type": "feedback"}
    unknown: list[str] = []
    for key, value in feedback.items():
        name = _FEEDBACK_KEYS.get(key) if isinstance(key, str) else None
        if name is None:
            unknown.append(short(key, 40))
        elif value is not None:
            wire[name] = normalize_id(value) if name in _FEEDBACK_IDS else value
    if unknown:
        return Refusal(
            "invalid_tag",
            f"bucket_feedback has unknown key(s) {', '.join(sorted(unknown))}; "
            f"it takes {_FEEDBACK_DOC}",
        )
    if wire.get("comment") == "" and "score" in wire:
        del wire["comment"]  # an empty comment is no comment (a strict server refuses it)
    if "userId" not in wire:
        if user_id is None:
            return Refusal("missing_id", missing_user(user_field, "bucket_feedback"))
        wire["userId"] = user_id
    if "companyId" not in wire and company_id is not None:
        wire["companyId"] = company_id
    return wire


def rule_attributes(
    rule: Rule, fields: Mapping[str, Any], extra: Any, reserved: frozenset[str]
) -> dict[str, Any] | Any:
    """A rule's attributes of a record (``"*"``: every structured field), plus ``extra``."""
    if rule.all_attributes:
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


@dataclass
class Tags:
    """The calls a record asks for (a rule's, or its own tags), checked.

    A tag that cannot be used is None here and its problem is in ``problems``
    (``(kind, message)`` pairs, for the tracker to report).
    """

    event: Any = None
    user: Any = None
    company: Any = None
    feedback: Any = None
    attributes: Any = None
    active: Any = None
    problems: list[tuple[str, str]] = field(default_factory=list)


def read_tags(fields: Mapping[str, Any], plan: object, reserved: frozenset[str]) -> Tags:
    """The tags of ``fields`` for ``plan`` (a :class:`~bucket_logging._tracking.rules.Rule`, or
    the record's own tags), with ``bucket_attributes`` and ``bucket_active`` checked."""
    get = fields.get
    tags = Tags(attributes=get("bucket_attributes"), active=get("bucket_active"))
    if isinstance(plan, Rule):
        tags.event = plan.event
        if tags.active is None:
            tags.active = plan.active
        if plan.attributes is not None or plan.all_attributes:
            tags.attributes = rule_attributes(plan, fields, tags.attributes, reserved)
    else:
        tags.event = get("bucket_event")
        tags.user = get("bucket_user")
        tags.company = get("bucket_company")
        tags.feedback = get("bucket_feedback")
    attributes = tags.attributes
    if (
        attributes is not None
        and type(attributes) is not dict
        and not isinstance(attributes, Mapping)
    ):
        problem = f"bucket_attributes must be a dict, not {type(attributes).__name__}"
        tags.problems.append(("event", problem))
        tags.event = None
    elif attributes is not None and tags.event is None:
        tags.problems.append(
            (
                "tags",
                "bucket_attributes are the attributes of bucket_event, which is missing; "
                "they were ignored",
            )
        )
    active = tags.active
    if active is not None and type(active) is not bool:
        tags.problems.append(
            (
                "tags",
                f"bucket_active must be True or False, got {short(active, 40)}; "
                "the record's user, company and event calls were not sent",
            )
        )
        tags.user = tags.company = tags.event = None
    return tags


def rejected_calls() -> int:
    """How many calls were not sent because a record's tags or values were invalid.

    Counted for the whole process (every tracker), for summaries such as
    ``bucket-logging ship``'s; the reports themselves are rate-limited.
    """
    return _state.rejected_calls


#: Per thread: the list :func:`watch_rejections` handed out, while a caller watches.
_watching = threading.local()


def watch_rejections(problems: list[str] | None) -> None:
    """Collect into ``problems`` what :func:`reject` refuses on this thread (None: stop).

    How a front end learns whether one record's calls were all sent (the OTLP relay
    reports a request's rejected records); costs nothing while nobody watches.
    """
    _watching.problems = problems


def watched_failure(problem: str) -> None:
    """Note ``problem`` (a record whose tracking failed) for :func:`watch_rejections`."""
    watched: list[str] | None = getattr(_watching, "problems", None)
    if watched is not None:
        watched.append(problem)


def reject(kind: str, logger_name: str, template: object, problem: str) -> None:
    """Report a call that is not sent (rate-limited per distinct problem), and count it."""
    _state.rejected_calls += 1
    watched: list[str] | None = getattr(_watching, "problems", None)
    if watched is not None:
        watched.append(f"{kind if kind != 'tags' else 'tracking'} call: {problem}")
    report(
        problem_topic("invalid-" + kind, logger_name, template, problem),
        "Not sending the %s call of a record from logger %r with message %s: %s",
        kind if kind != "tags" else "tracking",
        logger_name,
        short(template),
        problem,
    )


def report_unknown_tags(problems: list[str], logger_name: str, template: object) -> list[str]:
    """Report each of a record's misspelled tags (rate-limited per problem); returns them."""
    for problem in problems:
        report(
            problem_topic("unknown-tag", logger_name, template, problem),
            "Unknown tag on a record from logger %r with message %s: %s",
            logger_name,
            short(template),
            problem,
        )
    return problems
