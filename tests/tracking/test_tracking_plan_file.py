"""The tracking plan's file: YAML and JSON read alike, given as ``tracking_plan=`` or
``BUCKET_TRACKING_PLAN``; a plan that does not load is a ConfigurationError naming the
file, the line and the entry; the everyday event's check waits for the plan's thread
(the calling thread only queues it) and is counted once checked."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bucket_logging import BucketHandler, BulkSender, ConfigurationError
from bucket_logging._tracking.plan_load import load_plan

PLANS = Path(__file__).parent / "plan_data"


def test_the_yaml_and_the_json_plan_are_the_same_realistic_plan() -> None:
    yaml_plan = load_plan(PLANS / "tracking-plan.yaml")
    json_plan = load_plan(PLANS / "tracking-plan.json")
    assert len(yaml_plan.events) == 50
    attributes = sum(len(s.schemas) for s in yaml_plan.events.values())
    attributes += sum(len(s.schemas) for s in (yaml_plan.user, yaml_plan.company) if s)
    assert attributes >= 300
    for name, section in yaml_plan.events.items():
        other = json_plan.events[name]
        assert (section.schemas, section.required, section.action) == (
            other.schemas,
            other.required,
            other.action,
        )
    assert yaml_plan.events["Invoice deleted"].action == "drop"
    assert yaml_plan.events["Report exported"].action == "strip"


def test_a_plan_is_compiled_once_per_file(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text("events:\n  Signed in: {}\n")
    assert load_plan(path) is load_plan(str(path))


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        (
            "plan.yaml",
            "events:\n  Signed in:\n    attributes: [a\n",
            r"plan\.yaml, line \d+: not val",
        ),
        ("plan.json", '{"events": {\n  "Signed in": {,}\n}}', r"plan\.json, line 2: not valid"),
        (
            "plan.yaml",
            "events:\n  Signed in: {}\n  Exported:\n    action: shout\n",
            r"plan\.yaml, line 3: event 'Exported': action must be one of report, strip, drop",
        ),
        (
            "plan.yaml",
            "events:\n  Signed in:\n    attributes:\n      seats: {type: integr}\n",
            r"plan\.yaml, line 2: event 'Signed in', attribute 'seats': invalid schema",
        ),
        (
            "plan.yaml",
            "events:\n  Signed in:\n    atributes: {}\n",
            r"plan\.yaml, line 2: event 'Signed in': unknown key\(s\) atributes",
        ),
        ("plan.yaml", "- a list\n", r"plan\.yaml: must be a mapping with 'events'"),
        ("plan.yaml", "evnts: {}\n", r"plan\.yaml, line 1: unknown key 'evnts'"),
    ],
)
def test_a_plan_that_does_not_load_names_the_file_the_line_and_the_entry(
    tmp_path: Path, name: str, text: str, expected: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigurationError, match=expected):
        BucketHandler(offline=True, tracking_plan=path)


def test_a_missing_plan_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"tracking plan .*nowhere\.yaml: cannot be read"):
        BucketHandler(offline=True, tracking_plan=tmp_path / "nowhere.yaml")


def test_the_plan_comes_from_bucket_tracking_plan(
    monkeypatch: pytest.MonkeyPatch, make_sender: Callable[..., BulkSender]
) -> None:
    monkeypatch.setenv("BUCKET_TRACKING_PLAN", str(PLANS / "tracking-plan.json"))
    handler = BucketHandler(sender=make_sender(offline=True))
    assert handler.tracker.plan is not None
    assert handler.tracker.plan.source.endswith("tracking-plan.json")
    monkeypatch.delenv("BUCKET_TRACKING_PLAN")
    assert BucketHandler(sender=make_sender(offline=True)).tracker.plan is None


def test_the_everyday_events_values_are_checked_once_then_looked_up(
    make_sender: Callable[..., BulkSender], monkeypatch: pytest.MonkeyPatch
) -> None:
    sender = make_sender(offline=True)
    log = logging.getLogger("app.plan.verdicts")
    log.propagate = False
    log.setLevel(logging.INFO)
    handler = BucketHandler(sender=sender, tracking_plan=PLANS / "tracking-plan.yaml")
    log.addHandler(handler)
    plan = handler.tracker.plan
    assert plan is not None
    section = plan.events["Report viewed"]
    checked: list[object] = []
    for name, check in list(section.properties.items()):

        def counted(value: object, check: Callable[[object], object] = check) -> object:
            checked.append(value)
            return check(value)

        monkeypatch.setitem(section.properties, name, counted)
    full_checks: list[object] = []
    real_check = plan.check
    monkeypatch.setattr(plan, "check", lambda wire: full_checks.append(wire) or real_check(wire))
    try:
        for n in range(3):
            attributes = {"item_id": "report_0a1b2c", "source": "web", "first_view": n == 0}
            log.info("x", extra={"bucket_event": "Report viewed", "user_id": "u",
                                 "bucket_attributes": attributes})  # fmt: skip
        # each distinct value checked once (a boolean, a type alone: a plain class test,
        # no validator); no call needed the full check
        assert sorted(map(repr, checked)) == ["'report_0a1b2c'", "'web'"]
        assert full_checks == []
        # 1 is not True for the cache: a boolean attribute's integer is checked in full
        log.info("x", extra={"bucket_event": "Report viewed", "user_id": "u",
                             "bucket_attributes": {**attributes, "first_view": 1}})  # fmt: skip
        assert len(full_checks) == 1
        assert sender.stats.plan_violations == {"wrong_type": 1}
    finally:
        log.removeHandler(handler)


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "integer", "minimum": 0, "maximum": 10},
        {"type": "number", "minimum": -1.5},
        {"type": "string"},
        {"type": "boolean"},
        {"type": "number", "maximum": 3},
    ],
)
def test_a_plain_type_test_never_passes_what_the_validator_refuses(schema: dict[str, Any]) -> None:
    import fastjsonschema

    from bucket_logging._tracking.plan import Section
    from bucket_logging._tracking.plan_load import plain_test

    assert plain_test(schema) is not None
    section = Section("E", properties={"a": fastjsonschema.compile(schema)}, names=frozenset("a"))
    section.specs["a"] = plain_test(schema)
    validate = fastjsonschema.compile(schema)
    for value in (0, 1, 3, 10, 11, -1, -2, 1.5, 2.0, float("nan"), True, False, "3", "", None,
                  [1], {"a": 1}, 10**30):  # fmt: skip
        if section.passes({"a": value}):
            validate(value)  # raises if the plain test was wrong


def test_schemas_beyond_a_type_and_bounds_get_noplain_test() -> None:
    from bucket_logging._tracking.plan_load import plain_test

    assert plain_test({"type": "string", "enum": ["a"]}) is None
    assert plain_test({"type": ["string", "null"]}) is None
    assert plain_test({"type": "integer", "exclusiveMinimum": 0}) is None
    assert plain_test({"type": "integer", "minimum": True}) is None


_PLAN_FILE = Path(__file__).parent / "plan_data" / "tracking-plan.yaml"


def _attribute_values() -> Any:
    from hypothesis import strategies as st

    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-5, 4_000_000),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=12),
        st.sampled_from(["web", "ios", "report_0a1b2c", "email", "csv", "x" * 300]),
        st.sampled_from([-1, 0, 1, 100, 101, 3_600_000, 3_600_001, 1.5, -0.0]),  # bounds
        st.lists(st.integers(), max_size=2),
    )


#: Values the plan accepts for the attributes of two of its events (most calls drawn
#: below pass, so that a quick verdict that lets a fault through is found).
_VALID: dict[str, list[Any]] = {
    "item_id": ["report_0a1b2c"],
    "source": ["web", "ios"],
    "duration_ms": [0, 5, 3_600_000],
    "referrer": ["https://example.com"],
    "first_view": [True, False],
    "report_kind": ["pie", ""],
    "channel": ["email", "slack"],
    "recipients": [1, 100],
    "public": [False],
}


def test_the_quick_verdict_never_passes_a_call_the_full_check_faults() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    plan = load_plan(_PLAN_FILE)  # one plan: what a verdict learns is kept across calls

    @settings(max_examples=500, deadline=None, database=None)
    @given(st.data())
    def check(data: Any) -> None:
        name = data.draw(st.sampled_from(["Report viewed", "Report shared"]))
        section = plan.events[name]

        # a call the plan accepts, then at most one change: a value, a name, a removal
        attributes: dict[Any, Any] = {
            key: data.draw(st.sampled_from(_VALID[key]))
            for key in sorted(section.names)
            if key in section.required or data.draw(st.booleans())
        }
        change = data.draw(st.sampled_from(["none", "value", "unplanned", "remove"]))
        if change == "value":
            attributes[data.draw(st.sampled_from(sorted(section.names)))] = data.draw(
                _attribute_values()
            )
        elif change == "unplanned":
            attributes[data.draw(st.sampled_from(["unplanned", 7]))] = 1
        elif change == "remove":
            del attributes[data.draw(st.sampled_from(sorted(attributes)))]
        for _ in range(2):  # the second time with what the first one learned
            if section.passes(attributes):
                assert section.violations("event", attributes) == [], (name, attributes)
        if data.draw(st.booleans()):
            assert not section.passes(data.draw(st.one_of(st.none(), st.lists(st.integers()))))

    check()


def test_the_quick_verdict_passes_the_everyday_call_and_keeps_its_verdicts() -> None:
    plan = load_plan(_PLAN_FILE)
    section = plan.events["Report viewed"]
    for i in range(3):
        attributes = {"item_id": "report_0a1b2c", "source": "web", "duration_ms": i}
        assert section.passes(attributes)
    assert section.specs["item_id"] == {"report_0a1b2c"}  # learned once, then looked up
    assert not section.passes({"item_id": "report_0a1b2c"})  # source is required
    assert not section.passes({"item_id": "report_0a1b2c", "source": "web", "other": 1})
    assert not section.passes({"item_id": "report_0a1b2c", "source": "tv"})
    assert not section.passes({"item_id": "report_0a1b2c", "source": "web", "duration_ms": -1})
    assert not section.passes({"item_id": ["x"], "source": "web"})  # unhashable: full check
    assert not section.passes(None) and not section.passes(["a"])
