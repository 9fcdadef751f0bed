"""A draft tracking plan from observed calls (``bucket-logging plan infer``).

:class:`Drafter` takes calls (wire dicts: ``type``, ``event``, ``attributes``...) and
drafts a plan document (:meth:`Drafter.document`) in the format of
:mod:`bucket_logging._tracking.plan`: each event with its attributes' JSON types, an
``enum`` of the values seen for a string attribute with few distinct values seen
several times, the bounds seen for numbers, ``required`` for what every call carried;
the same for the user's and the company's attributes and feedback. A draft to review,
not a verdict: the values seen are not all the values there are.

Imports: the plan's names only (no validator is needed to draft).
"""

from __future__ import annotations

from typing import Any, Final

from .plan import FEEDBACK_NAMES

__all__ = ["Drafter", "json_type"]

#: A string attribute gets an ``enum`` when it took at most this many distinct values ...
ENUM_MAX: Final = 8
#: ... each seen, on average, at least this many times.
ENUM_REPEATS: Final = 3
#: Distinct values remembered per attribute.
_VALUES_KEPT: Final = 64
_FEEDBACK_SKIP: Final = frozenset({"type", "userId", "companyId", "timestamp", "context"})


def json_type(value: object) -> str:
    """The JSON Schema type of ``value``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    return "object"


class _Attribute:
    __slots__ = ("count", "high", "low", "types", "values")

    def __init__(self) -> None:
        self.count = 0
        self.types: set[str] = set()
        self.values: set[str] | None = set()
        self.low: float | None = None
        self.high: float | None = None

    def add(self, value: Any) -> None:
        self.count += 1
        kind = json_type(value)
        self.types.add(kind)
        if kind == "string" and self.values is not None:
            self.values.add(value)
            if len(self.values) > _VALUES_KEPT:
                self.values = None
        if kind in ("integer", "number"):
            self.low = value if self.low is None else min(self.low, value)
            self.high = value if self.high is None else max(self.high, value)

    def schema(self) -> dict[str, Any]:
        types = set(self.types)
        if "integer" in types and "number" in types:
            types.discard("integer")
        schema: dict[str, Any] = {"type": sorted(types)[0] if len(types) == 1 else sorted(types)}
        values = self.values
        if (
            types == {"string"}
            and values
            and len(values) <= ENUM_MAX
            and self.count >= ENUM_REPEATS * len(values)
        ):
            schema["enum"] = sorted(values)
        if types <= {"integer", "number"} and self.low is not None:
            schema["minimum"] = self.low
            schema["maximum"] = self.high
        return schema


class _Section:
    __slots__ = ("attributes", "calls")

    def __init__(self) -> None:
        self.calls = 0
        self.attributes: dict[str, _Attribute] = {}

    def add(self, attributes: object) -> None:
        self.calls += 1
        if isinstance(attributes, dict):
            for name, value in attributes.items():
                entry = self.attributes.get(str(name))
                if entry is None:
                    entry = self.attributes[str(name)] = _Attribute()
                entry.add(value)

    def entry(self, description: str) -> dict[str, Any]:
        out: dict[str, Any] = {"description": description}
        if self.attributes:
            out["attributes"] = {n: a.schema() for n, a in sorted(self.attributes.items())}
            required = sorted(n for n, a in self.attributes.items() if a.count >= self.calls)
            if required:
                out["required"] = required
        return out


class Drafter:
    """Drafts a plan from the calls it is given (see the module's docstring)."""

    def __init__(self) -> None:
        self.events: dict[str, _Section] = {}
        self.parts = {"user": _Section(), "company": _Section(), "feedback": _Section()}
        self.calls = 0

    def add(self, call: dict[str, Any]) -> None:
        """Count one call (a wire dict)."""
        kind = call.get("type")
        self.calls += 1
        if kind == "event" and isinstance(call.get("event"), str):
            section = self.events.get(call["event"])
            if section is None:
                section = self.events[call["event"]] = _Section()
            section.add(call.get("attributes"))
        elif kind in ("user", "company"):
            self.parts[kind].add(call.get("attributes"))
        elif kind == "feedback":
            fields = {
                FEEDBACK_NAMES.get(k, k): v for k, v in call.items() if k not in _FEEDBACK_SKIP
            }
            self.parts["feedback"].add(fields)

    def document(self) -> dict[str, Any]:
        """The draft plan (a document for :func:`~bucket_logging._tracking.plan.compile_plan`)."""
        doc: dict[str, Any] = {
            "version": 1,
            "description": f"drafted by bucket-logging plan infer from {self.calls} call(s)",
            "action": "report",
            "additional_attributes": False,
            "events": {
                name: section.entry(f"seen {section.calls} time(s)")
                for name, section in sorted(self.events.items())
            },
        }
        for part, section in self.parts.items():
            if section.calls:
                entry = section.entry(f"seen {section.calls} time(s)")
                doc[part] = entry
        return doc
