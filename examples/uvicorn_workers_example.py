"""An ASGI app under ``uvicorn --workers N``, with the lifespan line that delivers at the stop.

    BUCKET_TRACKING_KEY=... uvicorn uvicorn_workers_example:app --workers 2

Under ``uvicorn --workers`` (also ``--reload``, or gunicorn ``--preload`` with
``UvicornWorker``) uvicorn imports the app inside its own signal handling; after its
graceful shutdown a worker puts back the default SIGTERM disposition and raises SIGTERM
again, which ends it before any exit hook runs. The library hooks the uvicorn server's
shutdown to deliver there, so an app needs nothing; where it cannot (it warns, naming
this fix), the app delivers in its lifespan shutdown, which runs after the last request
(harmless everywhere else). With FastAPI or Starlette::

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        await bucket_logging.aflush(5)   # the lifespan line

    app = FastAPI(lifespan=lifespan)

The app below is the same in raw ASGI, to stay dependency-free. (uvicorn in one
process, gunicorn's workers and hypercorn need nothing: see docs/delivery.md, "When the
process ends".)

Run it: ``python examples/uvicorn_workers_example.py`` plays what uvicorn does (the
lifespan startup, two requests, the lifespan shutdown) in-process; without
``BUCKET_TRACKING_URL`` it starts a local tracking server and prints the calls.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import bucket_logging

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger("app.api")


async def app(scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
    """``GET /reports/{name}`` logs a tracked event; the lifespan delivers at shutdown."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                delivered = await bucket_logging.aflush(5)  # the one line
                print(f"lifespan shutdown: delivered={delivered}")
                await send({"type": "lifespan.shutdown.complete"})
                return
    name = scope["path"].rsplit("/", 1)[-1]
    log.info("Report %s viewed", name, extra={"user_id": "ada", "bucket_event": "Viewed report"})
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


# -- running this example on its own ------------------------------------------------


async def play_uvicorn() -> None:
    """What a uvicorn worker does: lifespan startup, requests, lifespan shutdown."""
    lifespan: asyncio.Queue[Message] = asyncio.Queue()
    sent: list[Message] = []

    async def collect(message: Message) -> None:
        sent.append(message)

    running = asyncio.ensure_future(app({"type": "lifespan"}, lifespan.get, collect))
    await lifespan.put({"type": "lifespan.startup"})
    for name in ("weekly", "monthly"):
        request = {"type": "http", "method": "GET", "path": f"/reports/{name}"}
        await app(request, lifespan.get, collect)
    await lifespan.put({"type": "lifespan.shutdown"})  # SIGTERM reached the worker
    await running


if __name__ == "__main__":
    from _support import show_delivery, start_local_server_unless_configured

    local_server = start_local_server_unless_configured()
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", stream=sys.stdout)
    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger("app").addHandler(bucket_logging.BucketHandler(flush_interval=30))
    asyncio.run(play_uvicorn())
    show_delivery(local_server)
