"""The tracking plan: a file of planned events, user, company and feedback attributes.

A plan (YAML or JSON) declares each event, its attributes as JSON Schema (``type``,
``enum``, ``pattern``, bounds...), which are required and whether others are allowed,
the user's and the company's attributes, and what feedback may carry::

    action: report                # report (default) | strip | drop
    additional_attributes: false  # the default of every section
    events:
      Signed in:
        description: a user signed in
        attributes:
          method: {type: string, enum: [password, sso]}
        required: [method]
    user:
      attributes:
        name: {type: string}
    company:
      attributes:
        plan: {type: string, enum: [free, pro]}
    feedback:
      attributes:
        score: {type: integer, minimum: 1, maximum: 5}

:func:`~bucket_logging._tracking.plan_load.load_plan` reads and compiles a plan once
(each attribute's schema compiled by `fastjsonschema`, only when a plan is given; YAML
by PyYAML): a :class:`Plan`. :meth:`Plan.check` lists the :class:`Violation` of one
call (its wire dict); :meth:`Plan.passes` is the everyday event's cached verdict; what
is done about a violation is :mod:`bucket_logging._tracking.plancheck`'s.

Imports: the standard library only (reading and compiling:
:mod:`bucket_logging._tracking.plan_load`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, NamedTuple

__all__ = [
    "ACTIONS",
    "FEEDBACK_NAMES",
    "KINDS",
    "NO_FEEDBACK",
    "Action",
    "Plain",
    "Plan",
    "Section",
    "Violation",
    "quick_check",
]

Action = Literal["report", "strip", "drop"]
#: A plain test: the classes a value may have, and a number's low and high bounds
#: (None for a string or a boolean).
Plain = tuple[tuple[type, ...], "float | None", "float | None"]
#: What a plan may do about a call that breaks it.
ACTIONS: Final = ("report", "strip", "drop")

#: The kinds of violation (``stats.plan_violations`` keys), and what each means.
KINDS: Final[dict[str, str]] = {
    "unplanned_event": "an event the plan does not declare",
    "missing_attribute": "a required attribute is missing",
    "wrong_type": "an attribute's value has another type than planned",
    "invalid_value": "an attribute's value is outside its enum, pattern or bounds",
    "unexpected_attribute": "an attribute the event does not declare",
    "unplanned_user_attribute": "a user attribute the plan does not declare",
    "unplanned_company_attribute": "a company attribute the plan does not declare",
    "unplanned_feedback": "feedback, where the plan allows none (``feedback: false``)",
}

#: Feedback's wire names -> the snake_case names a plan (and a tag) uses.
FEEDBACK_NAMES: Final = {
    "featureId": "feature_id",
    "promptedQuestion": "prompted_question",
    "promptId": "prompt_id",
    "feedbackId": "feedback_id",
}
_FEEDBACK_IDS: Final = frozenset({"type", "userId", "companyId", "timestamp", "context"})
_TYPE_RULES: Final = frozenset({"type"})
#: Values whose verdict a section keeps (then values are checked each time).
_PASSED_MAX: Final = 4096


class Violation(NamedTuple):
    """One way a call breaks the plan."""

    kind: str
    call: str  # event, user, company, feedback
    name: str  # the event's name, or the call's kind
    attribute: str | None
    problem: str


@dataclass
class Section:
    """The attributes of one planned call (an event, the user, the company, feedback)."""

    name: str
    description: str = ""
    properties: dict[str, Callable[[Any], Any]] = field(default_factory=dict)
    schemas: dict[str, Any] = field(default_factory=dict)
    required: frozenset[str] = frozenset()
    additional: bool = False
    action: Action = "report"
    #: the attribute names it declares (the fast check's shape test)
    names: frozenset[str] = frozenset()
    #: (name, type, value) of each non-string value that passed (bounded)
    passed: dict[tuple[str, type, Any], bool] = field(default_factory=dict)
    #: per attribute: its plain test (a type and bounds, see
    #: :func:`~bucket_logging._tracking.plan_load.plain_test`), or the set of the strings
    #: that passed its validator (bounded): the everyday call's values repeat (a
    #: source, a plan, a format), their check is then one look-up
    specs: dict[str, Any] = field(default_factory=dict)
    #: :meth:`passes` as one function made for this section (see :func:`quick_check`)
    quick: Callable[[Any], bool] | None = None

    def passes(self, attributes: Any) -> bool:
        """Whether ``attributes`` surely break nothing of this section: each planned
        attribute's value (its plain test or kept verdict), then the names (see
        :func:`quick_check`); False means "check it in full" (:meth:`violations`).
        Never raises."""
        quick = self.quick
        if quick is None:
            quick = self.quick = quick_check(self)
        return quick(attributes)

    def learn(self, name: str, value: Any) -> bool:
        """The validator's verdict on one value, kept when it passed (bounded)."""
        check = self.properties.get(name)
        if check is None:
            return True  # (other attributes allowed: the names were checked)
        if value.__class__ is str:
            try:
                check(value)
            except Exception:
                return False
            known = self.specs.setdefault(name, set())
            if len(known) < _PASSED_MAX:
                known.add(value)
            return True
        key = (name, value.__class__, value)
        if key in self.passed:  # (TypeError for an unhashable value: the caller's)
            return True
        try:
            check(value)
        except Exception:
            return False
        if len(self.passed) < _PASSED_MAX:
            self.passed[key] = True
        return True

    def violations(self, call: str, attributes: Mapping[str, Any] | None) -> list[Violation]:
        """What ``attributes`` break of this section (empty when nothing)."""
        found: list[Violation] = []
        attributes = attributes or {}
        for name in self.required:
            if name not in attributes:
                found.append(
                    Violation(
                        "missing_attribute", call, self.name, name,
                        f"required attribute {name!r} is missing",
                    )
                )  # fmt: skip
        properties = self.properties
        for name, value in attributes.items():
            check = properties.get(name)
            if check is None:
                if not self.additional:
                    kind = (
                        "unexpected_attribute" if call in ("event", "feedback")
                        else f"unplanned_{call}_attribute"
                    )  # fmt: skip
                    found.append(
                        Violation(kind, call, self.name, str(name), f"{name!r} is not planned")
                    )
                continue
            try:
                check(value)
            except Exception as exc:  # fastjsonschema's JsonSchemaValueException
                rule = getattr(exc, "rule", None)
                kind = "wrong_type" if rule in _TYPE_RULES else "invalid_value"
                message = str(getattr(exc, "message", exc)).replace("data", repr(name), 1)
                found.append(
                    Violation(kind, call, self.name, str(name), f"{message} (got {value!r:.60})")
                )
        return found


_MISSING: Final = object()


def quick_check(section: Section) -> Callable[[Any], bool]:
    """``section``'s quick verdict (:meth:`Section.passes`) as one function written for
    it, once: each declared attribute looked up by name, its value tested inline (its
    classes and bounds, or the set of strings that passed), then a count of the names
    against the dict's size; anything raised means "check it in full" (False). Twice
    as fast as a loop over the attributes that looks up each one's test. Attribute
    names enter the source only as ``repr`` literals; the tests' classes, bounds and
    sets are the function's globals. Made when the plan is loaded."""
    if section.required - section.names and not section.additional:
        return _never  # a required attribute the plan does not declare: never passes
    env: dict[str, Any] = {"_M": _MISSING, "learn": section.learn}
    lines = [
        "if a.__class__ is not dict:",
        f"    return a is None and {not section.required}",
        "n = 0",
    ]
    for k, name in enumerate(sorted(section.names | section.required)):
        lines.append(f"v = a.get({name!r}, _M)")
        if name in section.required:
            lines += ["if v is _M:", "    return False"]
            pad = ""
        else:
            lines.append("if v is not _M:")
            pad = "    "
        lines.append(f"{pad}n += 1")
        if name not in section.names:
            continue  # (other attributes allowed: present is enough)
        spec = section.specs.get(name)
        if spec.__class__ is tuple:  # a type and bounds
            env[f"c{k}"], env[f"lo{k}"], env[f"hi{k}"] = spec
            test = f"v.__class__ in c{k}"
            if spec[1] is not None:
                test += f" and lo{k} <= v <= hi{k}"
            lines += [f"{pad}if not ({test}):", f"{pad}    return False"]
        else:  # the strings that passed (learned: the same set as learn's)
            env[f"s{k}"] = section.specs.setdefault(name, set())
            lines += [  # (an unhashable value raises: the full check)
                f"{pad}if v not in s{k} and not learn({name!r}, v):",
                f"{pad}    return False",
            ]
    if section.additional:  # the others are allowed and not checked
        lines.append("return True")
    else:
        lines.append("return n == len(a)  # no other attribute")
    body = "\n".join("        " + line for line in lines)
    source = f"def quick(a):\n    try:\n{body}\n    except Exception:\n        return False"
    exec(source, env)  # (the names enter as repr literals only)
    quick: Callable[[Any], bool] = env["quick"]
    return quick


def _never(attributes: Any) -> bool:
    return False


#: The feedback section of a plan that allows none (``feedback: false``).
NO_FEEDBACK: Final = Section("feedback")


class Plan:
    """A loaded, compiled plan (see the module's docstring); shared by every tracker
    given the same file, and the tally of what was checked against it (for the pytest
    report and the local server's page)."""

    def __init__(  # noqa: PLR0917 - the plan's parts
        self,
        source: str,
        events: dict[str, Section],
        user: Section | None,
        company: Section | None,
        feedback: Section | None,
        action: Action,
    ) -> None:
        self.source = source
        self.events = events
        self.user = user
        self.company = company
        self.feedback = feedback
        self.action: Action = action
        #: distinct violations seen -> (count, where: the first log call's place)
        self.seen: dict[tuple[str, str, str | None], tuple[int, str]] = {}
        self.lock = threading.Lock()
        self._close: dict[str, str | None] = {}

    def action_of(self, event: str | None) -> Action:
        """What the plan does about a violation of ``event`` (None: another call)."""
        section = self.events.get(event) if event is not None else None
        return section.action if section is not None else self.action

    def passes(self, event: object, attributes: object) -> bool:
        """Whether the everyday event ``event`` with ``attributes`` surely breaks nothing
        (see :meth:`Section.passes`); False: :meth:`check` it. Never raises."""
        section = self.events.get(event)  # type: ignore[call-overload]
        return section is not None and section.passes(attributes)

    def check(self, wire: Mapping[str, Any]) -> list[Violation]:
        """The violations of one call, given as its wire dict (``type``, ``event``,
        ``attributes``...); counts the planned events seen. Never raises."""
        try:
            return self._check(wire)
        except Exception as exc:  # a broken call: the tracker reports it otherwise
            return [Violation("invalid_value", "call", "?", None, f"not checked ({exc})")]

    def _check(self, wire: Mapping[str, Any]) -> list[Violation]:
        kind = wire.get("type")
        attributes = wire.get("attributes")
        if kind == "event":
            event = wire.get("event")
            section = self.events.get(event)  # type: ignore[arg-type]
            if section is None:
                hint = self.likely(str(event))
                problem = f"event {event!r} is not planned" + (
                    f" (a likely typo of {hint!r}?)" if hint else ""
                )
                return [Violation("unplanned_event", "event", str(event), None, problem)]
            return section.violations("event", attributes)
        if kind in ("user", "company"):
            section = self.user if kind == "user" else self.company
            if section is None or not attributes:
                return []
            return section.violations(kind, attributes)
        if kind == "feedback":
            section = self.feedback
            if section is NO_FEEDBACK:
                problem = "the plan allows no feedback (feedback: false)"
                return [Violation("unplanned_feedback", "feedback", "feedback", None, problem)]
            fields = {
                FEEDBACK_NAMES.get(k, k): v for k, v in wire.items() if k not in _FEEDBACK_IDS
            }
            if section is None:
                return []
            return section.violations("feedback", fields)
        return []

    def likely(self, event: str) -> str | None:
        """The planned event ``event`` is one edit away from (or equal to but for case
        and separators), or None."""
        if event in self._close:
            return self._close[event]
        found = None
        folded = _fold(event)
        for name in self.events:
            if _fold(name) == folded or _one_edit(event, name):
                found = name
                break
        if len(self._close) < 4096:
            self._close[event] = found
        return found

    def note(self, violation: Violation, place: str) -> None:
        """Tally ``violation`` (seen at ``place``) for the reports; bounded."""
        key = (violation.kind, violation.name, violation.attribute)
        with self.lock:
            count, where = self.seen.get(key, (0, place))
            if count or len(self.seen) < 10_000:
                self.seen[key] = (count + 1, where)

    def reset(self) -> None:
        """Forget the tallies (a new pytest session, a test)."""
        with self.lock:
            self.seen.clear()


def _fold(name: str) -> str:
    return "".join(c for c in name.lower() if c.isalnum())


def _one_edit(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` differ by one insertion, deletion or substitution."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) > len(b):
        a, b = b, a
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    if len(a) == len(b):
        return a[i + 1 :] == b[i + 1 :]
    return a[i:] == b[i + 1 :]
