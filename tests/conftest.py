"""The fixtures every test directory shares.

Plain helpers (ports, :class:`~support.Endpoint`, :class:`~support.FakeSender`...) are in
``tests/support.py``; a fixture used by one directory only is in that directory's
``conftest.py`` or in its test file.
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
