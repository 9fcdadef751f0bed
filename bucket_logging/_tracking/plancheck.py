"""What a tracker does about a call that breaks its tracking plan.

A :class:`PlanCheck` holds one tracker's :class:`~bucket_logging._tracking.plan.Plan` and
its sender's counters. :meth:`PlanCheck.check` takes a call's wire dict, reports each
violation (rate-limited per distinct problem, naming the event, the attribute and the
log call's place, as the typo report does), counts it in ``stats.plan_violations`` by
kind, and applies the plan's action for the call: ``report`` (sent as it is),
``strip`` (sent without its unexpected or unplanned attributes) or ``drop`` (not
sent, counted in ``stats.refused["plan_violation"]``).

On the calling thread, the everyday event costs one cached verdict
(:meth:`~bucket_logging._tracking.plan.Plan.passes`: the event's attribute names, and
each (name, type, value) already seen valid is a dict look-up); a call that may break
the plan takes the full check, which reports and applies the action.

Imports: the plan, the tracking layer's port onto the sender, the process layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from .._runtime import diagnostics as _diagnostics
from .plan import FEEDBACK_NAMES, Plan, Violation
from .senders import Sender, plan_counter, refusal_counter

__all__ = ["PlanCheck"]

#: The kinds whose attribute ``strip`` leaves out.
_STRIPPED: Final = frozenset(
    {"unexpected_attribute", "unplanned_user_attribute", "unplanned_company_attribute"}
)


def _short(obj: object, limit: int = 80) -> str:
    try:
        text = repr(obj)
    except Exception:
        return f"<{type(obj).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


class PlanCheck:
    """One tracker's plan, and what it does about a call that breaks it.

    Args:
        plan: the compiled plan.
        sender: the tracker's sender (its stats count the violations).
    """

    __slots__ = ("_count", "_refused", "events", "plan")

    def __init__(self, plan: Plan, sender: Sender) -> None:
        self.plan = plan
        self._count = plan_counter(sender)
        self._refused = refusal_counter(sender)
        #: the plan's events: the everyday event's verdict is
        #: ``events.get(name).passes(attributes)`` (True: nothing to report; else the
        #: call takes :meth:`check`)
        self.events = plan.events

    def check(
        self, wire: dict[str, Any], logger_name: str, template: object
    ) -> dict[str, Any] | None:
        """``wire`` as the plan lets it go (stripped, or None: dropped); never raises."""
        try:
            violations = self.plan.check(wire)
            if not violations:
                return wire
            event = wire.get("event") if wire.get("type") == "event" else None
            action = self.plan.action_of(event if isinstance(event, str) else None)
            place = f"logger {logger_name!r}, message {_short(template)}"
            for violation in violations:
                self._say(violation, action, place, logger_name, template)
            if action == "drop":
                if self._refused is not None:
                    self._refused("plan_violation", str(wire.get("type")), violations[0].problem)
                return None
            if action == "strip":
                return _stripped(wire, violations)
        except Exception as exc:  # pragma: no cover - a bug: never the log call's problem
            _diagnostics.report("plan-error", "Checking a call against the plan failed (%s)", exc)
        return wire

    def _say(
        self, violation: Violation, action: str, place: str, logger_name: str, template: object
    ) -> None:
        self.plan.note(violation, place)
        if self._count is not None:
            self._count(violation.kind)
        what = f"{violation.call} {violation.name!r}" if violation.call == "event" else (
            f"the {violation.call} call"
        )  # fmt: skip
        attribute = "" if violation.attribute is None else f", attribute {violation.attribute!r}"
        done = {"report": "sent", "strip": "sent without it", "drop": "not sent"}[action]
        if action == "strip" and violation.kind not in _STRIPPED:
            done = "sent"
        topic = (
            f"plan-{violation.kind}|{logger_name}|{str(template)[:200]}|"
            f"{violation.name}|{violation.attribute}"
        )
        _diagnostics.report(
            topic,
            "Tracking plan %s, %s%s: %s; from %s; %s",
            self.plan.source,
            what,
            attribute,
            violation.problem,
            place,
            done,
        )


def _stripped(wire: dict[str, Any], violations: list[Violation]) -> dict[str, Any]:
    """``wire`` without the attributes ``strip`` leaves out."""
    names = {v.attribute for v in violations if v.kind in _STRIPPED and v.attribute}
    if not names:
        return wire
    wire = dict(wire)
    if wire.get("type") == "feedback":
        return {k: v for k, v in wire.items() if FEEDBACK_NAMES.get(k, k) not in names}
    attributes = wire.get("attributes")
    if isinstance(attributes, Mapping):
        kept = {k: v for k, v in attributes.items() if k not in names}
        if kept:
            wire["attributes"] = kept
        else:
            del wire["attributes"]
    return wire
