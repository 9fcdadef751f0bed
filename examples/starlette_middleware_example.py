"""An ASGI middleware that binds the user and company ids per request (FastAPI, Starlette).

``BucketContextMiddleware`` binds ``user_id`` and ``company_id`` with
``structlog.contextvars.bind_contextvars`` at the start of each request and clears
them at the end. Every record logged while the request is handled (stdlib with a
``BucketHandler``, or structlog with a ``BucketProcessor``) then carries the ids:
the endpoints just log ``extra={"bucket_event": ...}``. Concurrent requests do not
see each other's ids (each runs in its own context).

With FastAPI or Starlette::

    app = FastAPI()
    app.add_middleware(BucketContextMiddleware)  # a plain ASGI middleware class

Here the ids come from ``X-User-Id`` / ``X-Company-Id`` headers to keep the example
short; in an application take them from the authenticated session or token (with
Starlette's AuthenticationMiddleware, from ``scope["user"]``).

To stay dependency-free, the app below is a tiny raw ASGI app, driven in-process
with ``httpx.AsyncClient(transport=httpx.ASGITransport(app=...))``.

Run it: ``python examples/starlette_middleware_example.py`` (without
``BUCKET_TRACKING_URL`` it starts a local tracking server and prints the calls).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import httpx
import structlog

import bucket_logging

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BucketContextMiddleware:
    """Binds ``user_id`` and ``company_id`` for the duration of each HTTP request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        structlog.contextvars.clear_contextvars()
        ids = {"user_id": headers.get("x-user-id"), "company_id": headers.get("x-company-id")}
        structlog.contextvars.bind_contextvars(**{k: v for k, v in ids.items() if v})
        try:
            await self.app(scope, receive, send)
        finally:
            structlog.contextvars.clear_contextvars()


log = logging.getLogger("app.api")


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """A tiny ASGI app: POST /messages and GET /reports/{name}."""
    if scope["type"] != "http":
        return
    path, method = scope["path"], scope["method"]
    status = 200
    if method == "POST" and path == "/messages":
        await asyncio.sleep(0)  # let the concurrent requests interleave
        log.info("Message sent", extra={"bucket_event": "Sent message"})
        status = 201
    elif method == "GET" and path.startswith("/reports/"):
        name = path.rsplit("/", 1)[1]
        log.info(
            "Report %s viewed",
            name,
            extra={"bucket_event": "Viewed report", "bucket_attributes": {"report": name}},
        )
    else:
        status = 404
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def simulate_traffic() -> None:
    """Three concurrent requests from two users of two companies."""
    asgi = BucketContextMiddleware(app)
    transport = httpx.ASGITransport(app=asgi)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        ada = {"X-User-Id": "ada", "X-Company-Id": "acme"}
        bob = {"X-User-Id": "bob", "X-Company-Id": "globex"}
        responses = await asyncio.gather(
            client.post("/messages", headers=ada),
            client.post("/messages", headers=bob),
            client.get("/reports/weekly", headers=ada),
        )
    for response in responses:
        print(f"{response.request.method} {response.request.url.path} -> {response.status_code}")


def main() -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stdout,
    )
    logging.getLogger().addHandler(bucket_logging.BucketHandler())  # $BUCKET_TRACKING_KEY
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the test client's request lines
    asyncio.run(simulate_traffic())


# -- running this example on its own ------------------------------------------------


if __name__ == "__main__":
    from _support import show_delivery, start_local_server_unless_configured

    local_server = start_local_server_unless_configured()
    main()
    show_delivery(local_server)
