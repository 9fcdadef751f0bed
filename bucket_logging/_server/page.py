"""The tracking server's page: ``GET /`` shows the calls as they arrive.

The page is three static files shipped in ``bucket_logging/_server/static/`` (plain HTML, CSS
and JavaScript, read with :mod:`importlib.resources`; nothing is fetched from
elsewhere). Its script polls ``GET /_page/records`` for what arrived since its last
look, and its clear button sends ``DELETE /_calls``, the page's only write. Every
value is rendered as text (``textContent``), and a Content-Security-Policy allows only
the page's own script and style.

Polling keeps a slow or stuck page cheap: each poll is one short request (at most
:data:`LIMIT` requests' records, of at most :data:`BYTES`), answered at once, on a
connection the server's cap may close like any other. Served only to a browser that
names the server by an address or ``localhost`` when the server listens on a loopback
address, so that a web site that rebinds its own name to 127.0.0.1 cannot read or
clear the records. :func:`guard` applies that rule, and refuses cross-site requests,
on every path (the API's too).
"""

from __future__ import annotations

import dataclasses
import functools
import urllib.parse
from collections.abc import Callable
from importlib import resources
from typing import TYPE_CHECKING, Any, Final

import orjson

from .._runtime.diagnostics import named_locally
from .records import SUCCESS_BODY, RequestRecord

if TYPE_CHECKING:
    from .http import Hooks

__all__ = ["Answer", "answer", "guard"]

#: ``DELETE`` here forgets every record (what :meth:`TrackingServer.clear` does).
CALLS_PATH: Final = "/_calls"
RECORDS_PATH: Final = "/_page/records"

#: At most this many requests' records (and their calls) in one answer to a poll ...
LIMIT: Final = 500
#: ... and requests of at most this many body bytes (at least one request).
BYTES: Final = 4_000_000

_JSON: Final = "application/json"
_STATIC: Final = {
    "/": ("page.html", "text/html; charset=utf-8"),
    "/_page/page.css": ("page.css", "text/css; charset=utf-8"),
    "/_page/page.js": ("page.js", "text/javascript; charset=utf-8"),
}
_HEADERS: Final = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
}


@dataclasses.dataclass(frozen=True)
class Answer:
    """What to answer a request for the page."""

    status: int
    body: bytes
    content_type: str = _JSON
    headers: dict[str, str] = dataclasses.field(default_factory=lambda: dict(_HEADERS))


def answer(method: str, target: str, host: str | None, bound: str, owner: Hooks) -> Answer | None:
    """The answer to a request for the page or its data; None when it is not one
    (an API request, or ``GET /_calls``, answered by the server itself).

    ``host`` is the request's ``Host`` header, ``bound`` the interface the server
    listens on.
    """
    path, _, query = target.partition("?")
    if method == "DELETE" and path == CALLS_PATH:
        write = True
    elif method == "GET" and (path in _STATIC or path == RECORDS_PATH):
        write = False
    else:
        return None
    if not named_locally(host, bound):
        return _error(403, "FORBIDDEN", "open the page as http://127.0.0.1:PORT or localhost")
    if write:
        owner.clear()
        return Answer(200, SUCCESS_BODY)
    if path == RECORDS_PATH:
        return _records(query, owner)
    name, content_type = _STATIC[path]
    return Answer(200, _static(name), content_type)


#: The package whose ``static/`` folder holds the page.
_PACKAGE: Final = __name__.rpartition(".")[0]


@functools.cache
def _static(name: str) -> bytes:
    return resources.files(_PACKAGE).joinpath("static").joinpath(name).read_bytes()


def _records(query: str, owner: Hooks) -> Answer:
    """``GET /_page/records?epoch=E&requests=R&calls=C``: what arrived after the first
    R requests and C calls of epoch E (everything when E is not the server's)."""
    params = dict(urllib.parse.parse_qsl(query))
    try:
        requests = max(0, int(params.get("requests", "0")))
        calls = max(0, int(params.get("calls", "0")))
    except ValueError:
        return _error(400, "BAD_REQUEST", "requests and calls must be whole numbers")
    epoch, total, records, new_calls, (start, start_calls, dropped) = owner.records_since(
        params.get("epoch", ""), requests, calls, LIMIT
    )
    size = kept = 0
    for record in records:  # as many as fit in BYTES
        size += record.body_bytes
        if kept and size > BYTES:
            break
        kept += 1
    records = records[:kept]
    new_calls = new_calls[: sum(r.items for r in records if r.accepted)]
    body = {
        "epoch": epoch,
        "requests": [_request(r) for r in records],
        "calls": new_calls,
        "more": start + len(records) < total,
        # where these records begin (past the cursor when the oldest were dropped),
        # and how many calls were dropped
        "from": {"requests": start, "calls": start_calls},
        "dropped": dropped,
    }
    plan = owner.plan
    if plan is not None:  # (serve --plan) each call's violations, and the coverage
        body["violations"] = [plan.violations_of(call) for call in new_calls]
        body["plan"] = plan.coverage()
    return Answer(200, orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS))


def _request(record: RequestRecord) -> dict[str, Any]:
    return {
        "at": round(record.at * 1000),
        "method": record.http_method,
        "path": record.path,
        "api": record.api,
        "kind": record.kind,
        "status": record.status,
        "items": record.items,
        "bytes": record.body_bytes,
        "code": record.code,
        "message": record.message,
        "errors": list(record.errors),
        "calls": [{"type": t, "event": e, "user": u} for t, e, u in record.calls],
    }


def _error(status: int, code: str, message: str) -> Answer:
    error = {"code": code, "message": message}
    return Answer(status, orjson.dumps({"success": False, "error": error}))


def guard(
    method: str, target: str, header: Callable[[str], str | None], bound: str
) -> Answer | None:
    """The browser rules of every path (the API's, ``/_calls``, the page's): a 403
    answer for a request a web page must not make, else None.

    * The ``Host`` rule (:func:`~bucket_logging._runtime.diagnostics.named_locally`):
      a web site that rebinds its own name to 127.0.0.1 reaches nothing, neither the
      page nor ``/_calls`` nor the API.
    * A cross-site request (``Sec-Fetch-Site: cross-site`` or ``same-site``, or an
      ``Origin`` other than the server's own) is refused, except a ``GET`` of the page
      itself (a link from elsewhere opens it). The library's sender and the SDKs send
      neither header; a browser sends them with every form, ``fetch`` and image.
    """
    host = header("Host")
    if not named_locally(host, bound):
        return _error(403, "FORBIDDEN", "open the page as http://127.0.0.1:PORT or localhost")
    if method in ("GET", "HEAD") and target.partition("?")[0] in _STATIC:
        return None
    site = (header("Sec-Fetch-Site") or "").strip().lower()
    origin = header("Origin")
    if site in ("cross-site", "same-site") or (
        origin is not None and not _same_origin(origin, host)
    ):
        return _error(403, "FORBIDDEN", "cross-site requests are refused")
    return None


def _same_origin(origin: str, host: str | None) -> bool:
    """Whether ``Origin`` names this server as the request's ``Host`` does."""
    try:
        parts = urllib.parse.urlsplit(origin.strip())
    except ValueError:
        return False
    return parts.scheme == "http" and host is not None and parts.netloc == host.strip()


#: (the one Host rule lives with the loopback check)
_named_locally = named_locally
