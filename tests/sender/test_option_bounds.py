"""Every numeric option within its table entry's bounds (clamped with a warning, or
refused naming its variable), a key or URL that cannot be one refused at construction,
and an exit path that delivers whatever the deadline (issue 30, item 5)."""

from __future__ import annotations

import logging
import time

import httpx
import pytest
from support import KEY, TRACKING_ENV, Endpoint, Scripts

from bucket_logging import BulkSender, ConfigurationError, Item, TrackingServer, _options
from bucket_logging._options import CLAMP, OPTIONS, REFUSE


@pytest.fixture(autouse=True)
def _no_option_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in TRACKING_ENV:
        monkeypatch.delenv(name, raising=False)
    for option in OPTIONS:
        for variable in (option.env, option.reflag_env):
            if variable:
                monkeypatch.delenv(variable, raising=False)


NUMERIC = [o for o in OPTIONS if o.type in ("int", "float")]


def test_every_numeric_option_has_bounds_that_hold_its_default() -> None:
    assert NUMERIC
    for option in NUMERIC:
        bounds = option.bounds
        assert bounds is not None, option.name
        assert bounds.low <= option.default <= bounds.high, option.name
        assert bounds.high < float("inf")
        assert bounds.below in (CLAMP, REFUSE) and bounds.above in (CLAMP, REFUSE)


@pytest.mark.parametrize("option", NUMERIC, ids=lambda o: o.name)
def test_a_variable_beyond_either_bound_is_clamped_or_refused_by_name(
    option: _options.Option, caplog: pytest.LogCaptureFixture
) -> None:
    bounds = option.bounds
    assert bounds is not None and option.env is not None
    huge = ("1e12", "inf") if option.type == "float" else (str(10**13),)
    small = f"{bounds.low / 10!r}" if bounds.low > 0 else "-1"
    for value, side, bound in (
        *((h, bounds.above, bounds.high) for h in huge),
        (small, bounds.below, bounds.low),
    ):
        if option.type == "int" and value.startswith("0."):
            continue  # (a fraction of an int is refused as not a whole number)
        env = {option.env: value}
        if side == REFUSE:
            with pytest.raises(ConfigurationError, match=option.env):
                _options.resolve(option.name, None, env)
        else:
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="bucket_logging"):
                got = _options.resolve(option.name, None, env)
            assert got == bound
            assert option.env in caplog.text


def test_the_values_the_issue_found_are_bounded() -> None:
    r = _options.resolve
    assert r("shutdown_timeout", None, {"BUCKET_SHUTDOWN_TIMEOUT": "1e10"}) == 3600
    assert r("shutdown_timeout", None, {"BUCKET_SHUTDOWN_TIMEOUT": "inf"}) == 3600
    with pytest.raises(ConfigurationError, match="BUCKET_SHUTDOWN_TIMEOUT"):
        r("shutdown_timeout", None, {"BUCKET_SHUTDOWN_TIMEOUT": "-1"})
    assert r("flush_interval", None, {"BUCKET_FLUSH_INTERVAL": "1e-9"}) == 0.01
    for name in ("backoff_base", "backoff_max"):
        for value in ("0", "-1", "0.001"):
            with pytest.raises(ConfigurationError, match=f"BUCKET_{name.upper()}"):
                r(name, None, {f"BUCKET_{name.upper()}": value})
    with pytest.raises(ConfigurationError, match="shutdown_timeout"):
        BulkSender(offline=True, shutdown_timeout=-1)


def test_the_settings_table_shows_each_range() -> None:
    table = _options.markdown_table()
    assert "| range |" in table
    assert "0.01 s to 3,600 s" in table  # flush_interval


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        ({"tracking_key": "k" * 131_000}, "131000 characters"),
        ({"base_url": "http://127.0.0.1/" + "a" * 131_000}, "at most 2048"),
        ({"base_url": "http://127.0.0.1/\x00x"}, "control"),
        ({"base_url": "http://exa mple.com"}, "spaces"),
        ({"base_url": "http://[::1"}, "base_url"),
        ({"base_url": "http://"}, "base_url"),
    ],
)
def test_a_key_or_url_that_cannot_be_one_is_a_configuration_error(
    arguments: dict[str, str], says: str
) -> None:
    arguments = {"tracking_key": KEY, **arguments}
    with pytest.raises(ConfigurationError, match=says) as raised:
        BulkSender(**arguments, transport=Endpoint().transport())  # type: ignore[arg-type]
    assert "k" * 100 not in str(raised.value)


@pytest.mark.parametrize("timeout", [1e10, float("inf"), 1e300])
def test_flush_and_close_take_any_deadline(timeout: float) -> None:
    endpoint = Endpoint()
    sender = BulkSender(KEY, transport=endpoint.transport(), flush_interval=60)
    for i in range(5):
        assert sender.enqueue(Item.event("done", i))
    assert sender.flush(timeout)
    for i in range(5, 10):
        assert sender.enqueue(Item.event("done", i))
    started = time.monotonic()
    sender.close(timeout)
    assert time.monotonic() - started < 5
    assert len(endpoint.delivered) == 10


@pytest.mark.parametrize("value", ["1e10", "inf"])
def test_a_huge_shutdown_timeout_still_delivers_at_exit(
    value: str, scripts: Scripts, server: TrackingServer
) -> None:
    done = scripts.run(
        """
        import logging
        from bucket_logging import BucketHandler
        log = logging.getLogger("app")
        log.addHandler(BucketHandler(flush_interval=60))
        for i in range(5):
            log.warning("done", extra={"bucket_event": "done", "user_id": f"u{i}"})
        """,
        env={
            "BUCKET_TRACKING_KEY": KEY,
            "BUCKET_TRACKING_URL": server.url,
            "BUCKET_SHUTDOWN_TIMEOUT": value,
        },
        timeout=30,
    )
    assert "OverflowError" not in done.stderr, done.stderr
    assert server.wait_for(5), done.stderr
    assert "BUCKET_SHUTDOWN_TIMEOUT" in done.stderr  # the clamp's warning names it


def test_a_tiny_flush_interval_does_not_spin_a_core(
    scripts: Scripts, server: TrackingServer
) -> None:
    done = scripts.run(
        """
        import logging, time
        from bucket_logging import BucketHandler, flush
        log = logging.getLogger("app")
        log.addHandler(BucketHandler())
        log.warning("x", extra={"bucket_event": "done", "user_id": "u"})
        time.sleep(1.0)
        print(time.process_time())
        """,
        env={
            "BUCKET_TRACKING_KEY": KEY,
            "BUCKET_TRACKING_URL": server.url,
            "BUCKET_FLUSH_INTERVAL": "1e-9",
        },
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert server.wait_for(1)
    # the interpreter's start-up and imports take about 0.3 s of CPU; a spinning
    # sender thread adds about a second (a 1 s sleep at 100 %)
    assert float(done.stdout.split()[-1]) < 0.9, done.stdout


def test_an_invalid_url_from_httpx_is_never_what_the_user_sees() -> None:
    with pytest.raises(ConfigurationError):
        BulkSender(KEY, base_url="http://" + "a" * 70_000 + ".example")
    assert not isinstance(ConfigurationError("x"), httpx.InvalidURL)


def test_a_clamped_value_is_said_once_with_the_librarys_name(
    monkeypatch: pytest.MonkeyPatch, lines: list[str]
) -> None:
    monkeypatch.setenv("BUCKET_SHUTDOWN_TIMEOUT", "inf")
    BulkSender(KEY, offline=True).close()
    said = [line for line in lines if "BUCKET_SHUTDOWN_TIMEOUT" in line]
    # (the handler's format shows the logger's name: the text does not repeat it)
    assert said == [
        "bucket_logging: BUCKET_SHUTDOWN_TIMEOUT=inf is over its maximum 3,600 s: 3,600 s is used"
    ]
