"""A test session's check of the captured calls against a tracking plan.

The pytest plugin (:mod:`bucket_logging.pytest_plugin`) builds one :class:`PlanSession`
when a plan is configured; it sees the calls of every capture block
(:func:`bucket_logging.testing.capture_tracking`, the ``bucket_tracking`` fixture) as
each block ends, checks each against the plan, and says at the end which planned
events the tests emitted and which they never did, and the violations seen. Also
used by ``bucket-logging plan check`` (the same tally for a log read offline).

Imports: the plan, the capture lists.
"""

from __future__ import annotations

from typing import Any, Final

from . import capture as _capture
from .plan import Plan, Violation
from .plan_load import load_plan

__all__ = ["PlanSession"]

#: Violations listed in the summary (the rest are counted).
SHOWN: Final = 30


class PlanSession:
    """The tally of the calls checked against ``plan`` (a path or a loaded plan)."""

    def __init__(self, plan: str | Plan) -> None:
        self.plan = plan if isinstance(plan, Plan) else load_plan(plan)
        #: the place a check is attributed to (the pytest plugin: the current test)
        self.place = ""
        self.emitted: dict[str, int] = {}
        #: distinct violations -> [count, first place, problem]
        self.violations: dict[tuple[str, str, str | None], list[Any]] = {}

    def install(self) -> None:
        """See the calls of every capture block from now on."""
        _capture.checks.append(self.check_calls)

    def uninstall(self) -> None:
        """Stop seeing them."""
        if self.check_calls in _capture.checks:
            _capture.checks.remove(self.check_calls)

    def check_calls(self, calls: list[dict[str, Any]], place: str | None = None) -> None:
        """Check ``calls`` (wire dicts) against the plan and tally them."""
        for call in calls:
            self.check(call, place)

    def check(self, call: dict[str, Any], place: str | None = None) -> list[Violation]:
        """Check one call (a wire dict), tally it, return its violations."""
        if call.get("type") == "event":
            event = call.get("event")
            if isinstance(event, str) and event in self.plan.events:
                self.emitted[event] = self.emitted.get(event, 0) + 1
        found = self.plan.check(call)
        for violation in found:
            key = (violation.kind, violation.name, violation.attribute)
            entry = self.violations.get(key)
            if entry is None:
                if len(self.violations) < 10_000:
                    self.violations[key] = [1, place or self.place, violation.problem]
            else:
                entry[0] += 1
        return found

    def violations_of(self, call: dict[str, Any]) -> list[str]:
        """``call``'s violations as lines (the local server's page), not tallied."""
        return [f"{v.kind}: {v.problem}" for v in self.plan.check(call)]

    def coverage(self) -> dict[str, Any]:
        """The planned events seen and never seen (the local server's page)."""
        return {
            "source": self.plan.source,
            "planned": len(self.plan.events),
            "seen": [name for name in self.plan.events if name in self.emitted],
            "never": self.never(),
            "violations": sum(entry[0] for entry in self.violations.values()),
        }

    def never(self) -> list[str]:
        """The planned events no checked call emitted, in the plan's order."""
        return [name for name in self.plan.events if name not in self.emitted]

    def summary(self, who: str = "the tests") -> list[str]:
        """The lines of the report: the coverage, then the violations."""
        planned = len(self.plan.events)
        never = self.never()
        line = f"tracking plan: {planned - len(never)} of {planned} events emitted by {who}"
        if never:
            line += "; never: " + ", ".join(never)
        lines = [line]
        if self.violations:
            total = sum(entry[0] for entry in self.violations.values())
            lines.append(
                f"tracking plan: {total} violation(s) of {len(self.violations)} kind(s) "
                f"({self.plan.source}):"
            )
            for (kind, name, attribute), (count, place, problem) in list(self.violations.items())[
                :SHOWN
            ]:
                what = f"{name!r}" + (f", attribute {attribute!r}" if attribute else "")
                where = f" (first in {place})" if place else ""
                lines.append(f"  {kind}: {what}: {problem} x{count}{where}")
            if len(self.violations) > SHOWN:
                lines.append(f"  ... and {len(self.violations) - SHOWN} more")
        return lines
