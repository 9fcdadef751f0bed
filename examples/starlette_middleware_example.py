"""The ASGI middleware shipped with the package binds the user and company ids per request
(FastAPI, Starlette, any ASGI app).

``bucket_logging.BucketASGIMiddleware`` binds ``user_id`` and ``company_id`` (with
``structlog.contextvars.bound_contextvars``) while each request is handled and puts
them back as they were at its end. Every record logged meanwhile (stdlib with a
``BucketHandler``, or structlog with a ``BucketProcessor``) then carries the ids: the
endpoints just log ``extra={"bucket_event": ...}``. Concurrent requests do not see
each other's ids.

With FastAPI or Starlette::

    app = FastAPI()
    app.add_middleware(BucketASGIMiddleware, user_id=..., company_id=...)

By default the user id is the authenticated user's ``identity`` (Starlette's
``AuthenticationMiddleware``, ``scope["user"]``). Here the ids come from ``X-User-Id``
/ ``X-Company-Id`` headers to keep the example short; in an application take them
from the authenticated session or token.

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

import bucket_logging
from bucket_logging import BucketASGIMiddleware

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def header(name: str) -> Callable[[Scope], str | None]:
    """Reads one request header from the ASGI scope (None when it is missing)."""

    def read(scope: Scope) -> str | None:
        for key, value in scope["headers"]:
            if key.decode("latin-1").lower() == name:
                return str(value.decode("latin-1"))
        return None

    return read


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
    asgi = BucketASGIMiddleware(app, user_id=header("x-user-id"), company_id=header("x-company-id"))
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
