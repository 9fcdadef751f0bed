"""A bare ASGI app: ``GET /hit/N`` logs the tagged event "Hit" number N; ``GET /`` is
the readiness probe. Logging is configured at import, as most apps do."""

from __future__ import annotations

from typing import Any

from _tracking import track, tracked_logger

log = tracked_logger("stop_apps.asgi")


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            kind = message["type"].rsplit(".", 1)[-1]
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return
    path: str = scope["path"]
    if path.startswith("/hit/"):
        track(log, "Hit", int(path.removeprefix("/hit/")))
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})
