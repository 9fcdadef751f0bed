"""Every sender option in one table (:mod:`bucket_logging._options`): each one settable by a
``BUCKET_*`` variable, resolved by the one rule (argument, ``BUCKET_*``, ``REFLAG_*``,
default), a bad value naming its variable; BulkSender's signature and the docs' settings
table agree with the table."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
from support import TRACKING_ENV

from bucket_logging import BulkSender, ConfigurationError, _options, get_sender
from bucket_logging._options import OPTIONS
from bucket_logging._runtime import state as _process

ROOT = Path(__file__).resolve().parents[2]

#: A valid value of each variable that differs from the default, and what the sender
#: then reads back (attribute, value).
ENV_VALUES: dict[str, tuple[str, str, object]] = {
    "flush_interval": ("2.5", "flush_interval", 2.5),
    "max_batch_items": ("100", "max_batch_items", 100),
    "max_queue_items": ("1000", "max_queue_items", 1000),
    "max_queue_bytes": ("1048576", "max_queue_bytes", 1048576),
    "max_concurrent_requests": ("2", "max_concurrent_requests", 2),
    "request_timeout": ("3", "request_timeout", 3.0),
    "retry_budget": ("7", "retry_budget", 7.0),
    "backoff_base": ("0.1", "backoff_base", 0.1),
    "backoff_max": ("2", "backoff_max", 2.0),
    "dedupe_window": ("0", "dedupe_window", 0.0),
    "shutdown_timeout": ("1.5", "shutdown_timeout", 1.5),
    "api": ("runtime", "api", "runtime"),
    "base_url": ("http://127.0.0.1:9/x/", "base_url", "http://127.0.0.1:9/x"),
    "debug": ("yes", "config.debug", True),
    "handle_sigterm": ("off", "config.handle_sigterm", False),
    "attributes": ('{"environment": "prod"}', "config.attributes", {"environment": "prod"}),
}


@pytest.fixture(autouse=True)
def _no_option_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in TRACKING_ENV:
        monkeypatch.delenv(name, raising=False)
    for option in OPTIONS:
        for variable in (option.env, option.reflag_env):
            if variable:
                monkeypatch.delenv(variable, raising=False)


def _read(sender: BulkSender, attribute: str) -> object:
    value: object = sender
    for part in attribute.split("."):
        value = getattr(value, part)
    return value


@pytest.mark.parametrize("name", sorted(ENV_VALUES))
def test_every_option_is_read_from_its_bucket_variable(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    text, attribute, expected = ENV_VALUES[name]
    variable = f"BUCKET_{name.upper()}" if name != "base_url" else "BUCKET_TRACKING_URL"
    monkeypatch.setenv(variable, text)
    sender = BulkSender(offline=True)
    assert _read(sender, attribute) == expected


def test_every_option_that_is_not_a_python_object_has_a_variable() -> None:
    python_only = {"transport", "verify", "on_error", "before_send"}
    for option in OPTIONS:
        assert (option.env is None) == (option.name in python_only), option.name
        if option.env is not None:
            assert option.env.startswith("BUCKET_")
    tested = set(ENV_VALUES) | {"tracking_key", "offline", "spool_dir", "require_key"}
    tested |= {"spool_max_bytes", "spool_max_age"}  # (test_spool_limits_from_the_environment)
    assert {o.name for o in OPTIONS if o.env} == tested


def test_spool_limits_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BUCKET_SPOOL_MAX_BYTES", "1000000")
    monkeypatch.setenv("BUCKET_SPOOL_MAX_AGE", "60")
    config = _options.resolve_all({"spool_dir": str(tmp_path)})
    assert (config["spool_max_bytes"], config["spool_max_age"]) == (1_000_000, 60.0)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("BUCKET_FLUSH_INTERVAL", "soon"),
        ("BUCKET_FLUSH_INTERVAL", "0"),
        ("BUCKET_MAX_BATCH_ITEMS", "1.5"),
        ("BUCKET_SHUTDOWN_TIMEOUT", "five"),
        ("BUCKET_OFFLINE", "maybe"),
        ("BUCKET_HANDLE_SIGTERM", "sometimes"),
        ("BUCKET_DEBUG", "2"),
        ("BUCKET_API", "graphql"),
        ("BUCKET_TRACKING_URL", "ftp://example.com"),
    ],
)
def test_a_bad_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=rf"^{variable} must be"):
        BulkSender(offline=True) if variable != "BUCKET_OFFLINE" else BulkSender()


def test_the_argument_comes_first_then_bucket_then_reflag_then_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert BulkSender(offline=True).flush_interval == _options.FLUSH_INTERVAL
    monkeypatch.setenv("BUCKET_FLUSH_INTERVAL", "3")
    assert BulkSender(offline=True).flush_interval == 3.0
    assert BulkSender(offline=True, flush_interval=7).flush_interval == 7.0
    # the URL: BUCKET_* before REFLAG_*
    monkeypatch.setenv("REFLAG_API_BASE_URL", "http://127.0.0.1:2")
    assert BulkSender(offline=True).base_url == "http://127.0.0.1:2"
    monkeypatch.setenv("BUCKET_TRACKING_URL", "http://127.0.0.1:1")
    assert BulkSender(offline=True).base_url == "http://127.0.0.1:1"
    # offline: BUCKET_OFFLINE=0 decides before REFLAG_OFFLINE=1 (the same rule)
    monkeypatch.setenv("REFLAG_OFFLINE", "1")
    assert BulkSender().offline
    monkeypatch.setenv("BUCKET_OFFLINE", "0")
    assert BulkSender().config.keyless  # (no key: off, and said)
    monkeypatch.setenv("BUCKET_REQUIRE_KEY", "1")
    with pytest.raises(ConfigurationError, match="no Bucket tracking key"):
        BulkSender()


def test_an_argument_is_checked_under_its_own_name() -> None:
    with pytest.raises(ConfigurationError, match=r"^flush_interval must be a number"):
        BulkSender(offline=True, flush_interval="soon")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"^debug must be true or false"):
        BulkSender(offline=True, debug="loud")  # type: ignore[arg-type]


def test_get_sender_reads_the_same_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_process.state, "registry", {})  # (no shared sender from other tests)
    monkeypatch.setenv("BUCKET_OFFLINE", "1")
    monkeypatch.setenv("BUCKET_SHUTDOWN_TIMEOUT", "0.25")
    assert get_sender().shutdown_timeout == 0.25


def test_bulk_sender_signature_agrees_with_the_table() -> None:
    parameters = list(inspect.signature(BulkSender).parameters.values())
    assert [p.name for p in parameters] == [o.name for o in OPTIONS]
    for parameter, option in zip(parameters, OPTIONS, strict=True):
        assert parameter.default == option.default, option.name
        assert parameter.annotation == option.type, option.name
        if option.name != "tracking_key":
            assert parameter.kind is inspect.Parameter.KEYWORD_ONLY


def test_every_option_is_in_the_sender_docstring() -> None:
    doc = BulkSender.__doc__ or ""
    for option in OPTIONS:
        assert re.search(rf"^\s+{option.name}:", doc, re.M), option.name


def test_the_docs_settings_table_is_the_table() -> None:
    page = (ROOT / "docs" / "configuration.md").read_text()
    assert _options.markdown_table() in page, (
        "docs/configuration.md's settings table differs from bucket_logging._options: "
        "paste the output of bucket_logging._options.markdown_table()"
    )


def test_the_eu_url_constant_is_not_shown_as_a_variable() -> None:
    # REFLAG_EU_BASE_URL is a Python constant: setting it in the environment does
    # nothing, so every mention names it bucket_logging.REFLAG_EU_BASE_URL
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text()
        for match in re.finditer(r"REFLAG_EU_BASE_URL", text):
            before = text[max(0, match.start() - 15) : match.start()]
            assert before.endswith("bucket_logging."), f"{path.name}: {before}REFLAG_EU..."
