"""A bare WSGI app: ``GET /hit/N`` logs the tagged event "Hit" number N; ``GET /`` is
the readiness probe. Logging is configured at import, as most apps do."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from _tracking import track, tracked_logger

log = tracked_logger("stop_apps.wsgi")


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path: str = environ["PATH_INFO"]
    if path.startswith("/hit/"):
        track(log, "Hit", int(path.removeprefix("/hit/")))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
