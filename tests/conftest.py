"""The fixtures every test directory shares.

Plain helpers (ports, :class:`~support.Endpoint`, :class:`~support.FakeSender`...) are in
``tests/support.py``; a fixture used by one directory only is in that directory's
``conftest.py`` or in its test file. The order and grouping of the tests for the
parallel workers of ``python3 dev.py test`` (pytest-xdist) are set here too.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from support import FAST, KEY, TRACKING_ENV, FakeSender, Lines, Scripts, closed_port_url, free_port

from bucket_logging import BulkSender, TrackingServer
from bucket_logging._runtime import diagnostics as _diagnostics
from bucket_logging._runtime.state import state

#: The two names of the loopback interface a user's URL may hold.
HOSTS = ("127.0.0.1", "localhost")

#: The slowest files (serial seconds, ``--durations``), started first by the parallel
#: workers of ``python3 dev.py test`` so that none is left running alone at the end,
#: the bursts of programs started at once kept apart (stop_paths between them). The
#: other files of tests/system follow, then the rest, in the order pytest collects them.
SLOW_FIRST = (
    "system/test_examples.py",  # 16 s, one piece: 13 programs at once
    "server/test_tracking_page_browser.py",  # 16 s, one piece: a browser
    "system/test_stop_paths_uvicorn029.py",  # 21 s, one piece: installs uvicorn 0.29
    "system/test_stop_paths.py",  # 174 s
    "system/test_docs_examples.py",  # 13 s, one piece: 60 programs at once
    "system/test_packaging.py",  # 5 s, one piece: the sdist and the wheel
    "system/test_docs_site.py",  # 3 s, one piece: the site
    "relay/test_relay_hostile.py",  # 42 s
    "system/test_relay_clients.py",  # 34 s
    "frontends/test_otlp_hostile.py",  # 33 s
    "relay/test_relay.py",  # 33 s
    "system/test_benchmarks_smoke.py",  # 50 s: every benchmark, run small
    "sender/test_retry_after_bounds.py",  # 31 s
    "cli/test_ship.py",  # 23 s
    "cli/test_ship_hostile.py",  # 19 s
    "items/test_items.py",  # 19 s
    "system/test_plugin_offline_from_start.py",  # 18 s
    "sender/test_sender.py",  # 16 s
)
#: The files whose tests are shared out among the workers one by one (each file holds
#: more than a worker's share of the suite's time, or nearly); every other file runs in
#: one piece on one worker (``--dist loadfile``). A file listed here must not have a
#: fixture wider than a test (checked at collection).
SPLIT = frozenset({"system/test_stop_paths.py", *SLOW_FIRST[7:]})
TESTS = Path(__file__).resolve().parent


_GONE = [name for name in SLOW_FIRST if not (TESTS / name).is_file()]
if _GONE:  # a file moved or renamed: it would silently lose its place at the front
    raise pytest.UsageError(f"tests/conftest.py's SLOW_FIRST names no file: {_GONE}")


def _tests_name(path: Path) -> str:
    return (path.relative_to(TESTS) if path.is_relative_to(TESTS) else path).as_posix()


def _shares_a_fixture_beyond_a_test(item: pytest.Item) -> bool:
    """Whether the item uses a fixture of this suite wider than a function (a module
    fixture: a build, a server, a browser, for all the tests of a file)."""
    info = getattr(item, "_fixtureinfo", None)
    defs = info.name2fixturedefs.values() if info is not None else ()
    # baseid "": pytest's own and plugins' fixtures (tmp_path_factory...), not a test's
    return any(d.scope != "function" and d.baseid for group in defs for d in group)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The slowest files first (:data:`SLOW_FIRST`), then the rest of tests/system, then
    the others; each file keeps its own order."""
    rank = {name: n for n, name in enumerate(SLOW_FIRST)}
    names = {item.path: _tests_name(item.path) for item in items}
    for item in items:
        if names[item.path] in SPLIT and _shares_a_fixture_beyond_a_test(item):
            raise pytest.UsageError(
                f"{names[item.path]} has a fixture wider than a test: take it out of "
                "SPLIT in tests/conftest.py (its tests would each set it up on every worker)"
            )

    def key(item: pytest.Item) -> int:
        name = names[item.path]
        return rank.get(name, len(rank) + (0 if name.startswith("system/") else 1))

    items.sort(key=key)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadfile``, except that the tests of :data:`SPLIT` go one by one, and the
    files are handed out in the order collected (the slowest first), not by size."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    tests = TESTS.relative_to(config.rootpath).as_posix()  # node ids start with it
    split = {f"{tests}/{name}" for name in SPLIT}

    class SlowFirstLoadFile(LoadFileScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            file = nodeid.split("::", 1)[0]
            return nodeid if file in split else file

    config.option.loadscopereorder = False
    return SlowFirstLoadFile(config, log)


@pytest.fixture(autouse=True)
def _fresh_state() -> Iterator[None]:
    """Each test starts from the library's process state as a new process has it.

    The process state's one reset (every diagnostic is said again: the rate limits
    and the things said once are per process; so is the start-up line), no id is bound
    in structlog's contextvars, and structlog's configuration is its default.
    """
    state.reset()
    structlog.contextvars.clear_contextvars()
    yield
    structlog.contextvars.clear_contextvars()
    structlog.reset_defaults()
    state.reset()


@pytest.fixture
def make_sender() -> Iterator[Callable[..., BulkSender]]:
    """Build senders (the test key, quick back-off) and close them all afterwards."""
    made: list[BulkSender] = []

    def make(**options: Any) -> BulkSender:
        options.setdefault("tracking_key", KEY)
        for name, value in FAST.items():
            options.setdefault(name, value)
        sender = BulkSender(**options)
        made.append(sender)
        return sender

    yield make
    for sender in made:
        sender.close(timeout=1.0)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """None of :data:`support.TRACKING_ENV` is set."""
    for name in TRACKING_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server() -> Iterator[TrackingServer]:
    """The library's real tracking server on 127.0.0.1 (any key), stopped afterwards."""
    with TrackingServer() as srv:
        yield srv


@pytest.fixture(params=HOSTS)
def host(request: pytest.FixtureRequest) -> str:
    """Each name of the loopback interface in turn: a test using it runs once per name."""
    name: str = request.param
    return name


@pytest.fixture
def server_url(server: TrackingServer, host: str) -> str:
    """:func:`server`'s base URL by each host name in turn (``127.0.0.1``, ``localhost``)."""
    return f"http://{host}:{server.port}"


@pytest.fixture
def refused_url() -> str:
    """A URL of 127.0.0.1 where nothing listens, and nothing can start to: every request
    is refused, as in an outage (see :func:`support.closed_port`)."""
    return closed_port_url()


@pytest.fixture
def port() -> int:
    """A port of 127.0.0.1 free now, that stays free for a server started (or restarted)
    on it later (see :func:`support.free_port`)."""
    return free_port()


@pytest.fixture
def fake_sender() -> FakeSender:
    """A sender that keeps the items it is given and sends nothing."""
    return FakeSender()


@pytest.fixture
def lines() -> Iterator[list[str]]:
    """Every line the ``bucket_logging`` logger emits during the test, ``name: message``."""
    handler = Lines()
    _diagnostics.logger.addHandler(handler)
    try:
        yield handler.lines
    finally:
        _diagnostics.logger.removeHandler(handler)


@pytest.fixture
def scripts(tmp_path: Path) -> Iterator[Scripts]:
    """Run Python programs in their own process (see :class:`support.Scripts`); any
    still running at the end of the test is killed."""
    made = Scripts(tmp_path)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture(autouse=True)
def _sigint_as_under_a_terminal() -> Iterator[None]:
    """The programs start with SIGINT's default disposition, as under a terminal, also
    when this suite runs with SIGINT ignored (``cmd &`` in a script without job control,
    ``nohup``): an ignored signal stays ignored through exec, and Python then installs no
    KeyboardInterrupt handler, so a Ctrl-C test would wait for an exit that never comes."""
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)  # (reset to SIG_DFL by exec)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
