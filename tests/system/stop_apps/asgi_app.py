"""A bare ASGI app: ``GET /hit/N`` logs the tagged event "Hit" number N; ``GET /`` is
the readiness probe.

Logging is configured at import, as most apps do, unless ``STOP_APP_LOG_CONFIG=server``
(the server configures it: ``uvicorn --log-config log_config.json``). With
``STOP_APP_LIFESPAN_FLUSH=1`` the lifespan shutdown delivers what is queued: the line
README once asked of apps under ``uvicorn --workers`` (not needed, and harmless).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from _tracking import track, tracked_logger

import bucket_logging

if os.environ.get("STOP_APP_LOG_CONFIG") == "server":
    log = logging.getLogger("stop_apps.asgi")
else:
    log = tracked_logger("stop_apps.asgi")
LIFESPAN_FLUSH = bool(os.environ.get("STOP_APP_LIFESPAN_FLUSH"))


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            kind = message["type"].rsplit(".", 1)[-1]
            if kind == "shutdown" and LIFESPAN_FLUSH:
                await bucket_logging.aflush(5)  # the (harmless) lifespan line
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return
    path: str = scope["path"]
    if path.startswith("/hit/"):
        track(log, "Hit", int(path.removeprefix("/hit/")))
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})
