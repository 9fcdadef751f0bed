"""Middlewares that bind each request's user and company ids: ASGI, and Django.

Every record logged while a request is handled, through either front end
(:class:`~bucket_logging.BucketHandler` or :class:`~bucket_logging.BucketProcessor`),
then carries the ids: the code just logs ``extra={"bucket_event": ...}``. The ids are
bound with ``structlog.contextvars.bound_contextvars`` (structlog is a dependency of
the package), which both front ends read, and put back as they were when the request
ends; concurrent requests never see each other's ids. A Django streaming response's
body, made after the view returned, is made with the ids bound too.

:class:`BucketASGIMiddleware` is a plain ASGI middleware (no Starlette import): add it
to FastAPI, Starlette, Litestar, Quart or any ASGI app. :class:`BucketDjangoMiddleware`
goes into Django's ``MIDDLEWARE`` after ``AuthenticationMiddleware``; it imports
nothing from Django either.

By default the user id is the authenticated user's (Starlette's ``scope["user"]``
``identity``; Django's ``request.user.pk``) and there is no company id: pass a
function (ASGI) or override a method (Django) to read them from elsewhere. A function
that raises is reported on the ``bucket_logging`` logger; the request goes on without
ids. The middlewares never fail a request.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, MutableMapping
from typing import Any

import structlog.contextvars

from .._runtime.diagnostics import report

__all__ = ["BucketASGIMiddleware", "BucketDjangoMiddleware"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _authenticated_identity(scope: Scope) -> object:
    """Starlette's authenticated user (``AuthenticationMiddleware``): its ``identity``."""
    user = scope.get("user")
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return getattr(user, "identity", None) or None


def _no_company(scope: Scope) -> object:
    return None


@contextlib.contextmanager
def _bound(ids: dict[str, object]) -> Iterator[None]:
    """Bind the ids that are set for the block; nothing when there are none."""
    bound = {name: value for name, value in ids.items() if value is not None and value != ""}
    if not bound:
        yield
        return
    with structlog.contextvars.bound_contextvars(**bound):
        yield


def _bind_while_streamed(response: Any, ids: dict[str, object]) -> None:
    """A streaming response's body is made after the middleware returned (by the WSGI
    server, or Django's ASGI handler): each step of its iterator runs with the ids bound.

    A ``FileResponse`` is left as it is (its file goes to the server's ``sendfile``
    and logs nothing).
    """
    if getattr(response, "file_to_stream", None) is not None:
        return
    if not any(value is not None and value != "" for value in ids.values()):
        return
    content = response.streaming_content
    if getattr(response, "is_async", False) or hasattr(content, "__aiter__"):
        response.streaming_content = _async_steps_bound(ids, content)
    else:
        response.streaming_content = _steps_bound(ids, iter(content))


def _steps_bound(ids: dict[str, object], steps: Iterator[Any]) -> Iterator[Any]:
    """``steps``, each one made with the ids bound (and unbound while the server sends it)."""
    try:
        while True:
            with _bound(ids):
                try:
                    part = next(steps)
                except StopIteration:
                    return
            yield part
    finally:
        close = getattr(steps, "close", None)
        if close is not None:
            close()


async def _async_steps_bound(ids: dict[str, object], steps: Any) -> AsyncIterator[Any]:
    """:func:`_steps_bound` for an asynchronous iterator."""
    iterator = steps.__aiter__()
    try:
        while True:
            with _bound(ids):
                try:
                    part = await iterator.__anext__()
                except StopAsyncIteration:
                    return
            yield part
    finally:
        close = getattr(iterator, "aclose", None)
        if close is not None:
            await close()


def _read(reader: Callable[[Any], object], what: str, arg: object) -> object:
    try:
        return reader(arg)
    except Exception as exc:
        report(
            f"middleware-{what}",
            "bucket_logging: reading the request's %s failed (%s: %s); the request is "
            "handled without it",
            what,
            type(exc).__name__,
            exc,
        )
        return None


class BucketASGIMiddleware:
    """An ASGI middleware that binds each HTTP or WebSocket request's user and company ids.

    ::

        app = FastAPI()
        app.add_middleware(BucketASGIMiddleware, company_id=lambda scope: ...)

    Args:
        app: the ASGI application.
        user_id: reads the user id from the request's ASGI ``scope``; by default the
            authenticated user's ``identity`` (``scope["user"]``, set by Starlette's
            ``AuthenticationMiddleware``: add that one first), else none.
        company_id: reads the company id from the ``scope``; by default none.
        user_id_field: the key the user id is bound under (the front ends'
            ``user_id_field``).
        company_id_field: the key the company id is bound under.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        user_id: Callable[[Scope], object] | None = None,
        company_id: Callable[[Scope], object] | None = None,
        user_id_field: str = "user_id",
        company_id_field: str = "company_id",
    ) -> None:
        self.app = app
        self._user_id = user_id or _authenticated_identity
        self._company_id = company_id or _no_company
        self._fields = (user_id_field, company_id_field)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI call: the ids are bound while ``app`` handles it."""
        if scope.get("type") not in ("http", "websocket"):  # lifespan
            await self.app(scope, receive, send)
            return
        ids = {
            self._fields[0]: _read(self._user_id, "user id", scope),
            self._fields[1]: _read(self._company_id, "company id", scope),
        }
        with _bound(ids):
            await self.app(scope, receive, send)


class BucketDjangoMiddleware:
    """A Django middleware that binds each request's user and company ids.

    Put it after ``AuthenticationMiddleware``::

        MIDDLEWARE = [
            ...,
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "bucket_logging.BucketDjangoMiddleware",
        ]

    The user id is ``request.user.pk`` for an authenticated user; there is no company
    id. Subclass it and override :meth:`user_id` / :meth:`company_id` to read them
    from elsewhere (name the subclass in ``MIDDLEWARE``); set :attr:`user_id_field` /
    :attr:`company_id_field` when the front ends use other field names.
    """

    #: The key the user id is bound under (the front ends' ``user_id_field``).
    user_id_field = "user_id"
    #: The key the company id is bound under.
    company_id_field = "company_id"
    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        """Handle one request: the ids are bound while the view handles it."""
        ids = {
            self.user_id_field: _read(self.user_id, "user id", request),
            self.company_id_field: _read(self.company_id, "company id", request),
        }
        with _bound(ids):
            response = self.get_response(request)
        if getattr(response, "streaming", False):
            _bind_while_streamed(response, ids)
        return response

    def user_id(self, request: Any) -> object:
        """The request's user id: the authenticated user's primary key, else None."""
        user = getattr(request, "user", None)
        if user is None or not getattr(user, "is_authenticated", False):
            return None
        return getattr(user, "pk", None)

    def company_id(self, request: Any) -> object:
        """The request's company id: None unless a subclass says otherwise."""
        return None
