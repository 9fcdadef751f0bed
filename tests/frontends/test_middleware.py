"""The middlewares shipped with the package bind each request's user and company ids for
both front ends: :class:`BucketASGIMiddleware` under FastAPI and Starlette (driven through
httpx's ASGI transport), :class:`BucketDjangoMiddleware` under Django's test client, its
WSGI handler and its ASGI handler (streaming responses included: their bodies are made
after the middleware returned)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

import django
import fastapi
import httpx
import pytest
import starlette.authentication as starlette_auth
import starlette.middleware.authentication as starlette_middleware
import structlog

from bucket_logging import (
    BucketASGIMiddleware,
    BucketDjangoMiddleware,
    BucketHandler,
    BucketProcessor,
    BulkSender,
    TrackingServer,
)

Make = Callable[..., BulkSender]


@pytest.fixture
def server() -> Iterator[TrackingServer]:
    with TrackingServer() as srv:
        yield srv


@pytest.fixture
def sender(server: TrackingServer, make_sender: Make) -> BulkSender:
    return make_sender(base_url=server.url, flush_interval=60)


def _header(name: str) -> Callable[[Any], object]:
    def read(scope: Any) -> object:
        for key, value in scope["headers"]:
            if key == name.encode():
                return value.decode()
        return None

    return read


def _stdlib_logger(sender: BulkSender) -> logging.Logger:
    log = logging.getLogger("app.middleware")
    log.handlers[:] = [BucketHandler(sender=sender)]
    log.setLevel(logging.INFO)
    log.propagate = False
    return log


def _fastapi_app(track: Callable[[str], None]) -> Any:
    app = fastapi.FastAPI()

    @app.post("/messages")
    async def send_message() -> dict[str, bool]:
        await asyncio.sleep(0)  # the concurrent requests interleave
        track("Sent message")
        return {"ok": True}

    @app.get("/sync")
    def sync_endpoint() -> dict[str, bool]:  # (run in a worker thread)
        track("Synced")
        return {"ok": True}

    app.add_middleware(
        BucketASGIMiddleware, user_id=_header("x-user"), company_id=_header("x-company")
    )
    return app


async def _traffic(app: Any) -> list[int]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        ada = {"X-User": "ada", "X-Company": "acme"}
        bob = {"X-User": "bob", "X-Company": "globex"}
        responses = await asyncio.gather(
            client.post("/messages", headers=ada),
            client.post("/messages", headers=bob),
            client.get("/sync", headers=ada),
            client.post("/messages"),  # no ids: the event is refused (no user id)
        )
    return [r.status_code for r in responses]


def _ids(server: TrackingServer) -> list[tuple[str, str, str | None]]:
    return sorted((c["event"], c["userId"], c.get("companyId")) for c in server.calls_of("event"))


EXPECTED = [
    ("Sent message", "ada", "acme"),
    ("Sent message", "bob", "globex"),
    ("Synced", "ada", "acme"),
]


def test_fastapi_with_the_stdlib_front_end(server: TrackingServer, sender: BulkSender) -> None:
    log = _stdlib_logger(sender)
    app = _fastapi_app(lambda event: log.info("tracked", extra={"bucket_event": event}))
    assert asyncio.run(_traffic(app)) == [200, 200, 200, 200]
    assert sender.flush(10)
    assert _ids(server) == EXPECTED
    assert sender.stats.refused == {"missing_id": 1}
    assert structlog.contextvars.get_contextvars() == {}  # nothing left bound


def test_fastapi_with_the_structlog_front_end(server: TrackingServer, sender: BulkSender) -> None:
    log = structlog.wrap_logger(
        structlog.ReturnLogger(),
        processors=[structlog.contextvars.merge_contextvars, BucketProcessor(sender=sender)],
    )
    app = _fastapi_app(lambda event: log.info("tracked", bucket_event=event))
    assert asyncio.run(_traffic(app)) == [200, 200, 200, 200]
    assert sender.flush(10)
    assert _ids(server) == EXPECTED


class _HeaderAuth(starlette_auth.AuthenticationBackend):
    async def authenticate(self, conn: Any) -> Any:
        user = conn.headers.get("x-user")
        if not user:
            return None
        return starlette_auth.AuthCredentials(["authenticated"]), starlette_auth.SimpleUser(user)


def test_by_default_the_authenticated_user_of_starlette(
    server: TrackingServer, sender: BulkSender
) -> None:
    log = _stdlib_logger(sender)
    app = fastapi.FastAPI()

    @app.get("/")
    async def index() -> dict[str, bool]:
        log.info("seen", extra={"bucket_event": "Viewed"})
        return {"ok": True}

    # (the last added runs first: authentication, then the ids)
    app.add_middleware(BucketASGIMiddleware)
    app.add_middleware(starlette_middleware.AuthenticationMiddleware, backend=_HeaderAuth())

    async def run() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/", headers={"X-User": "ada"})).status_code == 200
            assert (await client.get("/")).status_code == 200  # anonymous: no user id

    asyncio.run(run())
    assert sender.flush(10)
    assert [(c["event"], c["userId"]) for c in server.calls_of("event")] == [("Viewed", "ada")]


def test_a_failing_id_reader_is_reported_and_the_request_goes_on(
    sender: BulkSender, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(scope: Any) -> object:
        raise KeyError("tenant")

    app = fastapi.FastAPI()

    @app.get("/")
    async def index() -> dict[str, bool]:
        return {"ok": True}

    app.add_middleware(BucketASGIMiddleware, company_id=broken)

    async def run() -> int:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return (await client.get("/")).status_code

    assert asyncio.run(run()) == 200
    assert any(
        "reading the request's company id failed (KeyError" in r.getMessage()
        for r in caplog.records
    )


def test_lifespan_passes_through() -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    asyncio.run(BucketASGIMiddleware(app)({"type": "lifespan"}, None, None))  # type: ignore[arg-type]
    assert seen == ["lifespan"]


# -- Django ---------------------------------------------------------------------------------


class _User:
    is_authenticated = True

    def __init__(self, pk: int) -> None:
        self.pk = pk


class FakeAuthMiddleware:
    """Stands for Django's AuthenticationMiddleware: ``request.user`` from a header."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        user = request.headers.get("X-User")
        request.user = _User(int(user)) if user else None
        return self.get_response(request)


class CompanyMiddleware(BucketDjangoMiddleware):
    """The documented way to read a company id: a subclass."""

    def company_id(self, request: Any) -> object:
        return request.headers.get("X-Company")


def _view(request: Any) -> Any:
    from django.http import HttpResponse

    logging.getLogger("app.middleware").info("v", extra={"bucket_event": "Viewed page"})
    return HttpResponse("ok")


def _streamed(request: Any) -> Any:
    from django.http import StreamingHttpResponse

    def body() -> Iterator[bytes]:
        for i in range(3):
            logging.getLogger("app.middleware").info("s", extra={"bucket_event": f"Streamed {i}"})
            yield b"part "

    return StreamingHttpResponse(body())


def _streamed_async(request: Any) -> Any:
    from django.http import StreamingHttpResponse

    async def body() -> Any:
        for i in range(3):
            await asyncio.sleep(0)
            logging.getLogger("app.middleware").info("s", extra={"bucket_event": f"Streamed {i}"})
            yield b"part "

    return StreamingHttpResponse(body())


def _urlpatterns() -> list[Any]:
    from django.urls import path

    return [path("page", _view), path("stream", _streamed), path("astream", _streamed_async)]


urlpatterns: list[Any] = []


@pytest.fixture
def django_client() -> Any:
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DEBUG=True,
            ALLOWED_HOSTS=["testserver", "127.0.0.1"],
            ROOT_URLCONF=__name__,
            SECRET_KEY="tests-only",
            MIDDLEWARE=[f"{__name__}.FakeAuthMiddleware", f"{__name__}.CompanyMiddleware"],
            INSTALLED_APPS=[],
        )
        django.setup()
    urlpatterns[:] = _urlpatterns()
    from django.test import Client

    return Client()


def test_django_binds_the_ids_for_the_view(
    server: TrackingServer, sender: BulkSender, django_client: Any
) -> None:
    _stdlib_logger(sender)
    assert (
        django_client.get("/page", headers={"X-User": "7", "X-Company": "acme"}).status_code == 200
    )
    assert django_client.get("/page").status_code == 200  # anonymous: refused, no user id
    assert sender.flush(10)
    assert [(c["userId"], c.get("companyId")) for c in server.calls_of("event")] == [(7, "acme")]
    assert sender.stats.refused == {"missing_id": 1}
    assert structlog.contextvars.get_contextvars() == {}


STREAMED = [(f"Streamed {i}", 7, "acme") for i in range(3)]


def _streamed_ids(server: TrackingServer) -> list[tuple[str, object, object]]:
    return sorted((c["event"], c["userId"], c.get("companyId")) for c in server.calls_of("event"))


def test_django_streaming_response_keeps_the_ids_under_wsgi(
    server: TrackingServer, sender: BulkSender, django_client: Any
) -> None:
    from wsgiref.util import setup_testing_defaults

    from django.core.handlers.wsgi import WSGIHandler

    _stdlib_logger(sender)
    environ: dict[str, Any] = {
        "PATH_INFO": "/stream",
        "HTTP_X_USER": "7",
        "HTTP_X_COMPANY": "acme",
    }
    setup_testing_defaults(environ)
    statuses: list[str] = []
    body = WSGIHandler()(environ, lambda status, headers, *_: statuses.append(status))
    try:
        assert b"".join(body) == b"part " * 3  # the server iterates after the middleware
    finally:
        body.close()  # type: ignore[attr-defined]
    assert statuses == ["200 OK"]
    assert sender.flush(10)
    assert _streamed_ids(server) == STREAMED
    assert sender.stats.refused == {}
    assert structlog.contextvars.get_contextvars() == {}


@pytest.mark.parametrize("path", ["/stream", "/astream"])
def test_django_streaming_response_keeps_the_ids_under_asgi(
    path: str, server: TrackingServer, sender: BulkSender, django_client: Any
) -> None:
    from django.core.handlers.asgi import ASGIHandler

    _stdlib_logger(sender)

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=ASGIHandler())
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            return await c.get(path, headers={"X-User": "7", "X-Company": "acme"})

    with pytest.warns() if path == "/stream" else contextlib.nullcontext():
        response = asyncio.run(get())  # (a sync iterator under ASGI: Django warns)
    assert response.status_code == 200 and response.content == b"part " * 3
    assert sender.flush(10)
    assert _streamed_ids(server) == STREAMED
    assert sender.stats.refused == {}


def test_starlette_streaming_response_keeps_the_ids(
    server: TrackingServer, sender: BulkSender
) -> None:
    from starlette.responses import StreamingResponse

    log = _stdlib_logger(sender)
    app = fastapi.FastAPI()

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def body() -> Any:
            for i in range(3):
                await asyncio.sleep(0)
                log.info("s", extra={"bucket_event": f"Streamed {i}"})
                yield b"part "

        return StreamingResponse(body())

    app.add_middleware(
        BucketASGIMiddleware, user_id=_header("x-user"), company_id=_header("x-company")
    )

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            return await c.get("/stream", headers={"X-User": "7", "X-Company": "acme"})

    assert asyncio.run(get()).content == b"part " * 3
    assert sender.flush(10)
    assert _streamed_ids(server) == [(f"Streamed {i}", "7", "acme") for i in range(3)]
