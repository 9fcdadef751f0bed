"""The HTTP client's modules, imported with the sender and never later on its thread,
and its TLS context (:func:`tls_verify`).

httpx hands each request to httpcore, which runs it on anyio's asyncio backend; anyio
4.16 and later import their parts on first use, so ``import anyio`` alone loads almost
nothing. Without this module the sender's first request imports them on the sender's
thread: about 25 ms, at exit when that is when the first batch goes (Django's
autoreloader SIGKILLs its child 0.25 s after Ctrl-C), and a fork while that import is
half done leaves the child a partial module. Importing them here does it once, on the
thread that imports the sender. A module a version does not have is skipped.

Imports nothing of this package.
"""

from __future__ import annotations

import contextlib
import importlib
import ssl
from typing import Final

import httpcore  # noqa: F401 - the request path of httpx
import httpx

from .._version import __version__
from .config import SenderConfig

_USER_AGENT: Final = f"bucket-logging/{__version__}"

__all__ = ["MODULES", "make_client", "tls_verify"]

#: What a request through ``httpx.AsyncClient`` on asyncio imports (listed by diffing
#: ``sys.modules`` around a client's first request, anyio 4.16, httpcore 1.0).
MODULES: Final = (
    "httpcore._backends.anyio",
    "anyio._backends._asyncio",
    "anyio._core._eventloop",
    "anyio._core._exceptions",
    "anyio._core._resources",
    "anyio._core._sockets",
    "anyio._core._streams",
    "anyio._core._synchronization",
    "anyio._core._tasks",
    "anyio._core._typedattr",
    "anyio.abc",
    "anyio.lowlevel",
    "anyio.streams.memory",
    "anyio.streams.stapled",
    "anyio.streams.tls",
    "anyio.to_thread",
    "concurrent.futures.thread",
)

for _name in MODULES:
    with contextlib.suppress(ImportError):
        importlib.import_module(_name)


def tls_verify(
    verify: bool | str | ssl.SSLContext, transport: httpx.AsyncBaseTransport | None
) -> ssl.SSLContext | bool | str:
    """What the HTTP client gets as ``verify``: a TLS context made now, once per sender.

    A forked child's engine reuses it (making one loads the CA bundle). With a custom
    transport or ``verify=False`` it is ``verify`` as given.
    """
    if transport is not None or verify is False or isinstance(verify, ssl.SSLContext):
        return verify
    create = getattr(httpx, "create_ssl_context", None)
    if not callable(create):  # pragma: no cover - httpx before 0.28
        return verify
    context: ssl.SSLContext = create(verify=verify)
    return context


def make_client(
    config: SenderConfig,
    verify: ssl.SSLContext | bool | str,
    transport: httpx.AsyncBaseTransport | None,
) -> httpx.AsyncClient:
    """A sender's HTTP client: its timeout, headers and connection limit."""
    return httpx.AsyncClient(
        transport=transport,
        verify=verify,
        timeout=config.request_timeout,
        headers={
            "Content-Type": "application/json",
            "User-Agent": _USER_AGENT,
            **config.headers,  # the Runtime API's key: never logged
        },
        limits=httpx.Limits(max_connections=config.max_concurrent_requests + 1),
    )
