"""Fixtures of the relay's tests: a tracking server for the module's key, and the relay
processes a test starts (killed at its end if still running)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support import RelayProcess

from bucket_logging import TrackingServer


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[TrackingServer]:
    """A tracking server that accepts the test module's ``KEY``."""
    with TrackingServer(tracking_keys=[request.module.KEY]) as srv:
        yield srv


@pytest.fixture
def relays() -> Iterator[list[RelayProcess]]:
    """Append each relay a test starts: those still running at its end are killed."""
    started: list[RelayProcess] = []
    yield started
    for relay in started:
        relay.kill()
