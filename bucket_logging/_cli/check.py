"""``bucket-logging check``: is the key (and URL) right? Asked without creating any data.

:func:`check` resolves the key, the API and the base URL the way a sender does
(arguments, then ``BUCKET_*``, then ``REFLAG_*``; see :mod:`bucket_logging._sender.config`),
refuses a URL with a path (a server that takes the key in the path would take the path's
first segment for the key: ``http://127.0.0.1:8787/v1`` is not a base URL), posts an
empty bulk body (``[]``: no item, nothing created) to the bulk endpoint and says in one
line what is right or wrong. The key is never in that line.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Final

import httpx

from .._exceptions import ConfigurationError
from .._runtime import diagnostics as _diagnostics
from .._sender.answers import post_bounded
from .._sender.config import (
    ENV_KEY,
    ENV_REFLAG_KEY,
    SenderConfig,
    api_of,
    check_key,
    resolve_key,
    resolve_url,
)
from .._sender.delivery import error_message
from .._version import __version__

__all__ = ["CheckResult", "check"]

_NAMES: Final = {"tracking": "Bucket's tracking API", "runtime": "Reflag's Runtime API"}


@dataclass(frozen=True)
class CheckResult:
    """What :func:`check` found: ``ok`` when the API accepted the key.

    Attributes:
        ok: the API answered 2xx to an empty bulk request.
        line: one line saying what is right or wrong (never the key).
        status: the process exit status: 0 ok, 1 the check failed, 2 nothing to check.
    """

    ok: bool
    line: str
    status: int


def check(
    tracking_key: str | None = None,
    base_url: str | None = None,
    *,
    api: str | None = None,
    timeout: float = 10.0,
    transport: httpx.AsyncBaseTransport | None = None,
) -> CheckResult:
    """Ask the API whether it accepts the key, creating no data; never raises."""
    key = resolve_key(tracking_key)
    if not key:
        return CheckResult(
            False,
            f"no key: pass --key or set {ENV_KEY} (Bucket) or {ENV_REFLAG_KEY} (Reflag); "
            "without one the library stays off (it counts what it would send, warns once)",
            2,
        )
    _diagnostics.register_secret(key)
    try:
        check_key(key)  # (the senders' own check: the same keys refused, the same words)
        kind = api_of(key, api)
        url = resolve_url(base_url, kind)
    except ConfigurationError as exc:  # (a bad api or URL, also from the environment)
        return CheckResult(False, str(exc), 2)
    if not url.startswith(("http://", "https://")):
        return CheckResult(False, f"the URL must be http(s), got {_clean(url)}", 2)
    parsed = httpx.URL(url)
    path = parsed.path.rstrip("/")
    if path:  # (the key or the method would follow it: a server may take it for the key)
        base = str(parsed.copy_with(path="/", query=None)).rstrip("/")
        return CheckResult(
            False,
            f"the URL has a path ({_clean(path)}): give the API's base URL alone, "
            f"scheme://host[:port] (here {_clean(base)}); the API's methods, and on "
            "Bucket's tracking API the key, follow it",
            2,
        )
    config = SenderConfig(tracking_key=key, base_url=url, api=kind)
    where = f"{_NAMES[kind]} at {_clean(url)}"
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"bucket-logging/{__version__}",
        **config.headers,
    }
    # httpx logs each request's URL (the tracking API's holds the key): not from here
    _diagnostics.silence_http_client_logs()
    try:
        response = _post(config.endpoint, headers, timeout, transport)
    except Exception as exc:  # an HTTP error; anything else is said, never raised
        cause = _clean(f"{type(exc).__name__}: {exc}")
        return CheckResult(False, f"FAILED: cannot reach {where}: {cause}", 1)
    status = response.status_code
    code, message = error_message(response) if status >= 300 else ("", "")
    answer = f"HTTP {status}" + (f" {code}" if code else "") + (f": {message}" if message else "")
    if 200 <= status < 300:
        return CheckResult(True, f"OK: {where} accepts the key", 0)
    if status in (401, 403) or code == "INVALID_API_KEY":
        return CheckResult(False, f"FAILED: {where} refuses the key ({answer})", 1)
    hint = " (is the URL right?)" if status in (404, 405) else ""
    return CheckResult(False, f"FAILED: unexpected answer from {where}: {answer}{hint}", 1)


def _post(
    url: str,
    headers: dict[str, str],
    timeout: float,
    transport: httpx.AsyncBaseTransport | None,
) -> httpx.Response:
    """The empty bulk request, its answer read within bounds, in ``timeout`` seconds in
    all (on a thread of its own, whose records httpx's loggers leave out)."""
    result: list[httpx.Response | BaseException] = []

    async def exchange() -> httpx.Response:
        async with httpx.AsyncClient(transport=transport, timeout=timeout) as client:
            return await post_bounded(client, url, b"[]", timeout=timeout, headers=headers)

    def run() -> None:
        _diagnostics.internal_threads.add(threading.get_ident())
        try:
            result.append(asyncio.run(exchange()))
        except BaseException as exc:  # handed to the caller
            result.append(exc)
        finally:
            _diagnostics.internal_threads.discard(threading.get_ident())

    thread = threading.Thread(target=run, name="bucket-logging check", daemon=True)
    thread.start()
    thread.join(timeout + 5)  # (the deadline is the request's: this only guards it)
    if not result:
        raise httpx.ReadTimeout(f"no answer within {timeout:g}s")
    outcome = result[0]
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def _clean(text: str) -> str:
    """Outside text for the line: keys redacted, controls escaped, cut."""
    return _diagnostics.outside_text(text, 300)
