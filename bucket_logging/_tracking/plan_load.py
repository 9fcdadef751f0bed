"""Reading a tracking plan's file and compiling it (see :mod:`bucket_logging._tracking.plan`).

:func:`load_plan` reads a plan (YAML or JSON by its suffix) once per process and file
version, compiles each attribute's JSON Schema with fastjsonschema (imported here, only
when a plan is given; PyYAML likewise) and gives a :class:`~bucket_logging._tracking.plan.Plan`;
a plan that does not load is a :class:`~bucket_logging.ConfigurationError` naming the
file, the line and the entry. :func:`plan_of` resolves the ``tracking_plan`` option
(an argument, else ``BUCKET_TRACKING_PLAN``).

Imports: the plan's classes, the options table, the exceptions, the process state.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from typing import Any, Final

from .. import _options
from .._exceptions import ConfigurationError
from .._runtime.state import state as _state
from .plan import ACTIONS, NO_FEEDBACK, Action, Plain, Plan, Section, quick_check

__all__ = ["compile_plan", "load_plan", "plain_test", "plan_of", "read_plan_file"]


_PLAIN_TYPES: Final[dict[str, tuple[type, ...]]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}


def plain_test(schema: Mapping[str, Any]) -> Plain | None:
    """A test equivalent to ``schema`` when it is only a type (string, integer, number,
    boolean) and, for numbers, bounds, else None: the classes, the low and the high bound
    (``None`` for a string or a boolean), read inline by
    :meth:`~bucket_logging._tracking.plan.Plan.passes` (no validator call; a False sends
    the call to the full check)."""
    if not set(schema) <= {"type", "minimum", "maximum", "description"}:
        return None
    kind = schema.get("type")
    classes = _PLAIN_TYPES.get(kind) if isinstance(kind, str) else None
    low, high = schema.get("minimum"), schema.get("maximum")
    if classes is None or any(
        b is not None and (isinstance(b, bool) or not isinstance(b, (int, float)))
        for b in (low, high)
    ):
        return None
    if classes in ((str,), (bool,)):
        return None if low is not None or high is not None else (classes, None, None)
    return (
        classes,
        -math.inf if low is None else float(low),
        math.inf if high is None else float(high),
    )


# --------------------------------------------------------------------------- loading


def read_plan_file(path: str) -> Any:
    """The plan file's document (YAML or JSON by its suffix; JSON is YAML too), or a
    ConfigurationError naming the file and the line where the parser stopped."""
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except OSError as exc:
        raise ConfigurationError(f"tracking plan {path}: cannot be read ({exc})") from None
    if path.endswith(".json"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(
                f"tracking plan {path}, line {exc.lineno}: not valid JSON ({exc.msg})"
            ) from None
    try:
        import yaml  # type: ignore[import-untyped,unused-ignore]  # noqa: PLC0415
    except ImportError:  # pragma: no cover - the extra
        raise ConfigurationError(
            f"tracking plan {path}: YAML plans need PyYAML (pip install 'bucket-logging[plan]')"
        ) from None
    try:
        # libyaml's loader when the wheel has it: 15x faster on a plan of 50 events
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        return yaml.load(text, Loader=loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f", line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigurationError(
            f"tracking plan {path}{line}: not valid YAML ({problem})"
        ) from None


def _line_of(path: str, entry: str) -> str:
    """``, line N`` where ``entry`` (a key of the file) first appears, or ``""``."""
    try:
        with open(path, encoding="utf-8") as file:
            for number, text in enumerate(file, 1):
                if entry in text:
                    return f", line {number}"
    except OSError:
        pass
    return ""


def _action(value: object, where: str, default: Action) -> Action:
    if value is None:
        return default
    if value not in ACTIONS:
        raise ValueError(f"{where}: action must be one of {', '.join(ACTIONS)}, not {value!r}")
    return value  # type: ignore[return-value,unused-ignore]


def _section(  # noqa: PLR0917 - the entry and what it inherits
    name: str, entry: object, where: str, additional: bool, action: Action, compile_: Any
) -> Section:
    if entry is None:
        entry = {}
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where}: must be a mapping, not {type(entry).__name__}")
    known = {
        "description", "attributes", "properties", "required", "additional_attributes",
        "additionalProperties", "action", "type",
    }  # fmt: skip
    unknown = sorted(str(k) for k in entry if k not in known)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}")
    properties = entry.get("attributes", entry.get("properties")) or {}
    if not isinstance(properties, Mapping):
        raise ValueError(f"{where}: attributes must be a mapping of name to JSON Schema")
    section = Section(str(name), str(entry.get("description") or ""))
    for attribute, given in properties.items():
        schema = {} if given is None else given
        if not isinstance(schema, Mapping):
            raise ValueError(f"{where}, attribute {attribute!r}: a JSON Schema is a mapping")
        try:
            section.properties[str(attribute)] = compile_(dict(schema))
        except Exception as exc:
            raise ValueError(f"{where}, attribute {attribute!r}: invalid schema ({exc})") from None
        section.schemas[str(attribute)] = dict(schema)
        test = plain_test(schema)
        if test is not None:
            section.specs[str(attribute)] = test
    required = entry.get("required") or []
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise ValueError(f"{where}: required must be a list of attribute names")
    section.required = frozenset(required)
    section.names = frozenset(section.properties)
    extra = entry.get("additional_attributes", entry.get("additionalProperties", additional))
    if not isinstance(extra, bool):
        raise ValueError(f"{where}: additional_attributes must be true or false")
    section.additional = extra
    section.action = _action(entry.get("action"), where, action)
    section.quick = quick_check(section)  # (made now, not by the first log call)
    return section


def compile_plan(document: object, source: str) -> Plan:
    """A :class:`Plan` from a plan's document; a ConfigurationError naming ``source``,
    the line of the entry (when it can be found) and the entry."""
    import fastjsonschema  # noqa: PLC0415 - only when a plan is given

    compiled: dict[str, Callable[[Any], Any]] = {}

    def compile_(schema: dict[str, Any]) -> Callable[[Any], Any]:
        """One validator per distinct schema (plans repeat theirs: ids, sources)."""
        key = json.dumps(schema, sort_keys=True, default=repr)
        validator = compiled.get(key)
        if validator is None:
            validator = compiled[key] = fastjsonschema.compile(schema)
        return validator

    if not isinstance(document, Mapping):
        raise ConfigurationError(f"tracking plan {source}: must be a mapping with 'events'")
    entry = "the plan"
    try:
        unknown = set(document) - {
            "version", "action", "additional_attributes", "events", "user", "company",
            "feedback", "description",
        }  # fmt: skip
        if unknown:
            entry = sorted(map(str, unknown))[0]
            raise ValueError(f"unknown key {entry!r}")
        action = _action(document.get("action"), "the plan", "report")
        additional = document.get("additional_attributes", False)
        if not isinstance(additional, bool):
            raise ValueError("additional_attributes must be true or false")
        events_doc = document.get("events") or {}
        if not isinstance(events_doc, Mapping):
            raise ValueError("events must be a mapping of event name to its entry")
        events = {}
        for name, body in events_doc.items():
            entry = str(name)
            events[str(name)] = _section(
                name, body, f"event {name!r}", additional, action, compile_
            )
        sections: dict[str, Section | None] = {}
        for part in ("user", "company", "feedback"):
            entry = part
            body = document.get(part)
            if part == "feedback" and body is False:
                sections[part] = NO_FEEDBACK
                continue
            sections[part] = (
                None if body is None
                else _section(part, body, part, additional, action, compile_)
            )  # fmt: skip
    except ValueError as exc:
        line = _line_of(source, entry) if os.path.exists(source) else ""
        raise ConfigurationError(f"tracking plan {source}{line}: {exc}") from None
    return Plan(source, events, sections["user"], sections["company"], sections["feedback"], action)


def load_plan(path: str | os.PathLike[str]) -> Plan:
    """The plan in ``path``, read and compiled once per process (until the state's reset)."""
    source = os.fspath(path)
    try:
        stamp = os.stat(source).st_mtime_ns
    except OSError as exc:
        raise ConfigurationError(f"tracking plan {source}: cannot be read ({exc})") from None
    cached = _state.plans.get(source)
    if cached is not None and cached[0] == stamp:
        plan: Plan = cached[1]
        return plan
    plan = compile_plan(read_plan_file(source), source)
    _state.plans[source] = (stamp, plan)
    return plan


def plan_of(value: object) -> Plan | None:
    """The plan an option gives: a path, a loaded :class:`Plan`, or None (then the
    ``BUCKET_TRACKING_PLAN`` variable, see :mod:`bucket_logging._options`)."""
    if isinstance(value, Plan):
        return value
    path = _options.resolve("tracking_plan", value)
    return None if path is None else load_plan(path)
