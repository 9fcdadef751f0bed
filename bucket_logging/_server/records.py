"""The tracking server's records and outcomes, without any HTTP machinery.

:class:`RequestRecord` is what :class:`~bucket_logging.TrackingServer` keeps of each
request; :class:`Reject` and :class:`Drop` are the outcomes its checks raise. Kept
apart from :mod:`bucket_logging._server.http` so that ``import bucket_logging`` does
not import :mod:`http.server`.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any, Final

import orjson

from .._items.item import KINDS

__all__ = [
    "CHUNK",
    "DRAIN_LIMIT",
    "METHODS",
    "NOT_A_KEY",
    "SUCCESS_BODY",
    "Drop",
    "Faults",
    "Reject",
    "RequestRecord",
    "path_not_key",
    "refused_calls",
    "route",
    "runtime_key",
    "validation_failed",
]

#: The methods of the API: the four kinds and ``bulk``.
METHODS: Final = frozenset((*KINDS, "bulk"))

#: Bodies up to this size are read (and discarded) before answering 413, so that the
#: connection stays usable; larger ones are answered at once and the connection closed.
DRAIN_LIMIT: Final = 64 * 1024 * 1024

#: At most this many validation errors are listed in a 400 response.
MAX_VALIDATION_ERRORS: Final = 100

CHUNK: Final = 256 * 1024

SUCCESS_BODY: Final = b'{"success":true}'


@dataclasses.dataclass(frozen=True)
class RequestRecord:
    """One request the server answered (or dropped), as :attr:`TrackingServer.requests`.

    Attributes:
        http_method: ``"POST"``, ``"GET"``, ...
        kind: the API method of the path (``"bulk"``, ``"event"``, ...), or None when
            the path is not one of the API's.
        status: the HTTP status answered; ``0`` when the connection was reset or
            dropped without a response.
        items: how many items the body held (0 when it could not be parsed).
        body_bytes: the size of the body.
        code: the error code of a failed request (``"BODY_VALIDATION_FAILED"``, ...).
        message: the error message of a failed request.
        errors: the validation error messages of a 400 response.
        api: ``"tracking"`` (the key in the path) or ``"runtime"`` (Reflag's Runtime
            API: ``/{method}``, the key in a Bearer header or ``?publishableKey=``).
        path: the request's path without its query, the key of a tracking-API path
            replaced by ``<key>`` (a key is never recorded).
        auth: where the key came from: ``"path"``, ``"bearer"``, ``"query"``, or ``""``.
        at: when the request was answered (``time.time()``), as the server's page shows it.
        calls: a refused request's calls, ``(type, event, user)`` each (at most 20, cut
            to 80 characters), so that the page says which calls it refused.
    """

    http_method: str
    kind: str | None
    status: int
    items: int = 0
    body_bytes: int = 0
    code: str | None = None
    message: str = ""
    errors: tuple[str, ...] = ()
    # where the request went and how it was authorized: not part of its outcome
    api: str = dataclasses.field(default="tracking", compare=False)
    path: str = dataclasses.field(default="", compare=False)
    auth: str = dataclasses.field(default="", compare=False)
    at: float = dataclasses.field(default_factory=time.time, compare=False)
    #: A refused request's calls as the page shows them: (type, event, user), at most
    #: :data:`MAX_REFUSED_SHOWN`, values cut (see :func:`refused_calls`).
    calls: tuple[tuple[str, str, str], ...] = dataclasses.field(default=(), compare=False)

    @property
    def accepted(self) -> bool:
        """Whether the request was answered with 200 and its items recorded."""
        return self.status == 200


class Reject(Exception):
    """Internal: answer the request with an error response."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        errors: list[str] | None = None,
        items: int = 0,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors or []
        self.items = items
        self.headers = headers or {}


class Drop(Exception):
    """Internal: close the connection without answering."""


class Faults:
    """The fault switches of a :class:`~bucket_logging.TrackingServer` (see its
    ``fail_next``, ``throttle_next``, ``reset_next``, ``delay``, ``reject_items``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.fail: tuple[int, int] = (0, 500)
        self.throttle: tuple[int, float] = (0, 1.0)
        self.reset = 0
        self.delay = 0.0
        self.reject: Callable[[dict[str, Any]], bool] | None = None

    def set(self, **switches: Any) -> None:
        """Set the named switches at once."""
        with self._lock:
            for name, value in switches.items():
                setattr(self, name, value)

    def before_answer(self, stopping: threading.Event) -> None:
        """Apply the delay (cut short by ``stopping``), then at most one counted fault:
        raise :class:`Drop` (a reset) or :class:`Reject` (a failure, a throttle)."""
        with self._lock:
            delay = self.delay
        if (delay > 0 and stopping.wait(delay)) or stopping.is_set():
            raise Drop
        with self._lock:
            if self.reset > 0:
                self.reset -= 1
                raise Drop
            n, status = self.fail
            if n > 0:
                self.fail = (n - 1, status)
                raise Reject(status, "INTERNAL_ERROR", "failure injected by the test server")
            n, retry_after = self.throttle
            if n > 0:
                self.throttle = (n - 1, retry_after)
                value = f"{retry_after:.3f}".rstrip("0").rstrip(".") or "0"
                raise Reject(
                    429,
                    "TOO_MANY_REQUESTS",
                    "throttling injected by the test server",
                    headers={"Retry-After": value},
                )


def route(path: str) -> tuple[str | None, str | None]:
    """Split ``/{key}/{method}`` into (method, key), ``/{method}`` (Reflag's Runtime
    API) into (method, None); method None when not an API path."""
    path = path.split("?", 1)[0].split("#", 1)[0]
    parts = path.split("/")
    if len(parts) in (3, 4) and parts[-1] == "":
        parts.pop()  # a trailing slash
    if len(parts) == 2 and parts[0] == "" and parts[1] in METHODS:
        return parts[1], None
    if len(parts) != 3 or parts[0] != "" or not parts[1] or parts[2] not in METHODS:
        return None, ""
    return parts[2], parts[1]


#: Path segments that are an API's path, never a tracking key (``/v1/bulk``: a base URL
#: with a path, the key left out).
NOT_A_KEY: Final = re.compile(r"(?i)v\d{1,3}|api|bulk|track|tracking")


def path_not_key(path_key: str, kind: str, authorization: str | None) -> Reject | None:
    """The answer to ``/{path_key}/{kind}`` when ``path_key`` is no tracking key but a
    path the client's base URL holds: a Runtime API client (its key in a Bearer header)
    or a segment such as ``v1``; None when it may be a key."""
    scheme = (authorization or "").strip().partition(" ")[0].lower()
    if scheme == "bearer":
        problem = (
            f"a Runtime API request (a Bearer key) to /<segment>/{kind}: the Runtime API's "
            f"methods are at /{kind}; does the client's base URL have a path?"
        )
    elif NOT_A_KEY.fullmatch(path_key):
        problem = (
            f"{path_key!r} is a path, not a tracking key: the tracking API's methods are at "
            f"/<tracking key>/{kind}; does the client's base URL have a path?"
        )
    else:
        return None
    return Reject(404, "NOT_FOUND", problem)


#: A refused request's calls kept for the page: at most this many.
MAX_REFUSED_SHOWN: Final = 20


def refused_calls(body: bytes, kind: str | None) -> tuple[tuple[str, str, str], ...]:
    """The first calls of a refused request's body as ``(type, event, user)``, values
    cut to 80 characters; () when the body is no JSON call (or list of them)."""
    if not body or kind is None:
        return ()
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ()
    entries = data if kind == "bulk" and isinstance(data, list) else [data]
    shown = []
    for entry in entries[:MAX_REFUSED_SHOWN]:
        if not isinstance(entry, dict):
            shown.append(("?", "", ""))
            continue
        type_ = entry.get("type", kind if kind != "bulk" else "?")
        user, event = entry.get("userId"), entry.get("event")
        shown.append((_cut(type_), _cut(event or ""), _cut("" if user is None else user)))
    return tuple(shown)


def _cut(value: object) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return text if len(text) <= 80 else text[:79] + "…"


def runtime_key(authorization: str | None, query: str) -> tuple[str, str]:
    """The key of a Runtime API request and where it came from: the ``Authorization:
    Bearer`` header, else a ``publishableKey`` query parameter; ("", "") when none."""
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip(), "bearer"
    for name, value in urllib.parse.parse_qsl(query):
        if name == "publishableKey" and value.startswith("pub_"):
            return value, "query"
    return "", ""


def validation_failed(errors: list[str], items: int = 0) -> Reject:
    shown = errors[:MAX_VALIDATION_ERRORS]
    if len(errors) > len(shown):
        shown.append(f"... and {len(errors) - len(shown)} more problem(s)")
    first = errors[0] if errors else "invalid body"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return Reject(
        400,
        "BODY_VALIDATION_FAILED",
        f"Invalid request body: {first}{more}",
        errors=shown,
        items=items,
    )


def check_max_calls(value: object) -> int:
    """``value`` if it is a whole number above 0 (a server's ``max_calls``)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"max_calls must be a whole number above 0, got {value!r:.40}")
    return value


def drop_oldest(
    requests: list[RequestRecord], calls: list[Any], limit: int, dropped: tuple[int, int]
) -> tuple[int, int]:
    """Drop the oldest requests, with their calls, so that at most ``limit`` of each are
    kept; the requests and calls dropped so far (``dropped`` plus these)."""
    count = dropped_calls = 0
    while count < len(requests) and (
        len(requests) - count > limit or len(calls) - dropped_calls > limit
    ):
        record = requests[count]
        count += 1
        if record.accepted:
            dropped_calls += record.items
    if count:
        del requests[:count]
        del calls[:dropped_calls]
    return dropped[0] + count, dropped[1] + dropped_calls


def records_after(
    requests: list[RequestRecord],
    calls: list[Any],
    dropped: tuple[int, int],
    cursors: tuple[int, int],
    limit: int,
) -> tuple[int, list[RequestRecord], list[Any], tuple[int, int, int]]:
    """For the page: how many requests there were in all, the (at most ``limit``) kept
    after the cursors (the first ``cursors`` requests and calls, counted
    from the start, dropped ones included) with their calls, and where those begin
    (past the cursors when they point among the dropped) with the calls dropped."""
    gone, gone_calls = dropped
    cursor, call_cursor = cursors
    # (a cursor among the dropped: the oldest kept; past the end: the end)
    first = min(max(0, cursor - gone), len(requests))
    first_call = min(max(0, call_cursor - gone_calls), len(calls)) if first else 0
    records = requests[first : first + limit]
    count = sum(r.items for r in records if r.accepted)
    return (
        gone + len(requests),
        records,
        calls[first_call : first_call + count],
        (gone + first, gone_calls + first_call, gone_calls),
    )
