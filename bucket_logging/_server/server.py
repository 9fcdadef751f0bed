"""A local Bucket tracking server: the API on 127.0.0.1, for tests, demos and development.

:class:`TrackingServer` speaks the Bucket Tracking HTTP API
(``POST /{tracking_key}/{user|company|event|feedback|bulk}``) and Reflag's Runtime
API (``POST /{user|company|event|feedback|bulk}`` with ``Authorization: Bearer
<key>``, or a ``pub_`` key in ``?publishableKey=``), validates every body
with :func:`bucket_logging._items.item.validate_wire` (the very rules the client applies),
records the accepted calls and can be told to misbehave: fail, throttle, reset
connections, hang, or reject chosen items.

    with TrackingServer() as srv:
        client.post(f"{srv.url}/any-key/bulk", json=[...])
        srv.wait_for(1, timeout=5)
        srv.calls  # [{"type": "event", ...}]

It is a stdlib ``ThreadingHTTPServer`` speaking HTTP/1.1 with keep-alive, served from
a daemon thread (or the calling thread, see :meth:`TrackingServer.serve_forever`).
The tracking key is never printed or recorded.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Collection
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, cast

import orjson

from .._items.item import validate_wire
from .._runtime import diagnostics as _diagnostics
from .._runtime import shutdown as _shutdown
from .._runtime.diagnostics import report
from .records import (
    Faults,
    Reject,
    RequestRecord,
    check_max_calls,
    drop_oldest,
    records_after,
    validation_failed,
)

if TYPE_CHECKING:
    from .http import HTTPServer

__all__ = ["RequestRecord", "TrackingServer"]

_REFLAG = ("sec_", "pub_")

#: How many accepted calls (and records of requests) a server keeps by default:
#: about 30 MB of typical calls.
MAX_CALLS: Final = 100_000


class TrackingServer:
    """A local HTTP server speaking the Bucket Tracking API, recording what it accepts.

    Args:
        host: the interface to listen on.
        port: the port; 0 picks a free one (see :attr:`port` once started).
        tracking_keys: when given, only these keys are accepted; others get 400
            ``INVALID_API_KEY`` (in the path), 403 (Runtime API). By default any key
            is accepted in the path, and any ``sec_``/``pub_`` key on the Runtime API.
        on_call: called with each accepted call (a dict, ``type`` included), on the
            server's thread, before it is recorded. Exceptions are reported and ignored.
        on_request: called with the :class:`RequestRecord` of every request answered.
        max_calls: at most this many accepted calls, and records of requests, are kept;
            beyond, the oldest requests are dropped with their calls (counted:
            :attr:`dropped_calls`, and shown on the page).

    Use it as a context manager, or call :meth:`start` and :meth:`stop`. A stopped
    server can be started again; it listens on the same port and keeps its records.

    Every request is recorded before it is answered: a client that got its response
    finds it in :attr:`calls` and :attr:`requests`. :meth:`wait_for` is for clients
    that send in the background.

    The fault switches act after the body is read, on every request (even ones that
    would be rejected), at most one a request, in this order: :meth:`delay`, then
    :meth:`reset_next`, :meth:`fail_next`, :meth:`throttle_next`; then validation
    and :meth:`reject_items`.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        tracking_keys: Collection[str] | None = None,
        on_call: Callable[[dict[str, Any]], None] | None = None,
        on_request: Callable[[RequestRecord], None] | None = None,
        max_calls: int = MAX_CALLS,
    ) -> None:
        self._max_calls = check_max_calls(max_calls)
        #: requests and calls dropped (the oldest, over max_calls) since the last clear
        self._dropped = (0, 0)
        self._host = host
        self._port = port
        self._keys = frozenset(tracking_keys) if tracking_keys is not None else None
        self._on_call = on_call
        self._on_request = on_request
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._calls: list[dict[str, Any]] = []
        self._requests: list[RequestRecord] = []
        self._received = 0
        self._epoch = os.urandom(6).hex()  # a new one on each clear(), for the page
        self._faults = Faults()
        #: what the page shows of a tracking plan (see ``Hooks.plan``), or None
        self.plan_view: Any = None
        # life cycle
        self._life = threading.Lock()
        self._httpd: HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle -----------------------------------------------------------------

    def _bind(self) -> HTTPServer:
        with self._life:
            if self._httpd is not None:
                raise RuntimeError("the tracking server is already running")
            from .http import Hooks, HTTPServer  # noqa: PLC0415 - only when serving

            hooks = Hooks(
                self._received_one,
                self._before_answer,
                self._check_key,
                self._accept,
                self._record,
                lambda: self.calls,
                self.clear,
                self._records_since,
                self.plan_view,
            )
            httpd = HTTPServer(hooks, (self._host, self._port))
            self._port = int(httpd.server_address[1])
            self._httpd = httpd
            return httpd

    def start(self) -> TrackingServer:
        """Bind and serve from a daemon thread; return self."""
        httpd = self._bind()
        thread = threading.Thread(
            target=httpd.run,
            args=(None,),
            name=f"bucket-tracking-server:{self._port}",
            daemon=True,
        )
        self._thread = thread
        _shutdown.start_thread(thread)  # (its request threads inherit the signal mask)
        return self

    def serve_forever(self, on_ready: Callable[[TrackingServer], None] | None = None) -> None:
        """Bind and serve on the calling thread until :meth:`stop` or Ctrl-C.

        ``on_ready(self)`` is called once the server listens (its :attr:`url` is known).
        """
        httpd = self._bind()
        try:
            if on_ready is not None:
                on_ready(self)
            httpd.run(0.5 if sys.platform == "win32" else None)
        finally:
            self.stop()
            httpd.server_close()  # here, once the loop is out: stop() leaves it to us

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving: close every connection and interrupt delayed requests.

        Waits up to ``timeout`` seconds for the handler threads; idempotent.
        """
        with self._life:
            httpd, self._httpd = self._httpd, None
            thread, self._thread = self._thread, None
        if httpd is None:
            return
        _diagnostics.logger.info(
            "tracking server %s:%d stopped: %s", self._host, self._port, self.summary()
        )
        handlers = httpd.close_connections()  # also sets httpd.stopping
        httpd.wake()
        if thread is not None:
            if thread is not threading.current_thread():
                thread.join(timeout)
            httpd.server_close()
        # else serve_forever() runs the loop: it closes the sockets once the loop is
        # out (closing them under a loop about to wait would leave it waiting forever)
        for handler in handlers:
            if handler is not threading.current_thread():
                handler.join(timeout)

    def summary(self) -> str:
        """What the server accepted and refused so far, in one line (logged at INFO on the
        ``bucket_logging`` logger when it stops)."""
        with self._lock:
            kinds: dict[str, int] = {}
            for call in self._calls:
                kind = str(call.get("type"))
                kinds[kind] = kinds.get(kind, 0) + 1
            refused = sum(1 for r in self._requests if not r.accepted)
            requests = len(self._requests)
            dropped = self._dropped[1]
        by_kind = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
        accepted = sum(kinds.values())
        return (
            f"{accepted} call(s) accepted{f' ({by_kind})' if by_kind else ''} "
            f"in {requests} request(s), {refused} request(s) refused"
            + (f"; the {dropped} oldest call(s) dropped (over max_calls)" if dropped else "")
        )

    @property
    def running(self) -> bool:
        """Whether the server is listening."""
        return self._httpd is not None

    def __enter__(self) -> TrackingServer:
        if self._httpd is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<TrackingServer {self._host}:{self._port} {state}>"

    @property
    def host(self) -> str:
        """The interface the server listens on."""
        return self._host

    @property
    def port(self) -> int:
        """The port (the one picked, once started with port 0)."""
        return self._port

    @property
    def url(self) -> str:
        """The base URL a client uses, e.g. ``http://127.0.0.1:8787``.

        Clients post to ``{url}/{tracking_key}/bulk``, or to ``{url}/bulk`` with a
        Reflag key in ``Authorization: Bearer``.
        """
        if self._port == 0:
            raise RuntimeError("the port is picked on start(): start the server first")
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    # -- records --------------------------------------------------------------------

    @property
    def calls(self) -> list[dict[str, Any]]:
        """A copy of the accepted calls, in order, each with its ``type``."""
        with self._lock:
            return list(self._calls)

    @property
    def dropped_calls(self) -> int:
        """How many accepted calls were dropped (the oldest, over ``max_calls``)."""
        with self._lock:
            return self._dropped[1]

    @property
    def call_count(self) -> int:
        """Calls accepted since the last clear, those dropped over ``max_calls`` too."""
        with self._lock:
            return len(self._calls) + self._dropped[1]

    @property
    def requests(self) -> list[RequestRecord]:
        """A copy of the records of every request answered, in order."""
        with self._lock:
            return list(self._requests)

    def calls_of(self, kind: str) -> list[dict[str, Any]]:
        """The accepted calls of one kind (``"event"``, ``"user"``, ...)."""
        with self._lock:
            return [c for c in self._calls if c.get("type") == kind]

    def wait_for(self, count: int, timeout: float | None = 5.0) -> bool:
        """Block until ``count`` calls were accepted (dropped ones too); False on timeout."""
        with self._changed:
            enough = lambda: len(self._calls) + self._dropped[1] >= count  # noqa: E731
            return self._changed.wait_for(enough, timeout)

    def wait_for_requests(self, count: int, timeout: float | None = 5.0) -> bool:
        """Block until at least ``count`` requests were answered; False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self._requests) >= count, timeout)

    @property
    def received(self) -> int:
        """How many requests arrived in full (counted before any delay or fault)."""
        with self._lock:
            return self._received

    def wait_for_received(self, count: int, timeout: float | None = 5.0) -> bool:
        """Block until at least ``count`` requests arrived in full; False on timeout.

        Unlike :meth:`wait_for_requests` this counts a request as soon as its body is
        read, so a test can tell that a request is now held by :meth:`delay`.
        """
        with self._changed:
            return self._changed.wait_for(lambda: self._received >= count, timeout)

    def clear(self) -> None:
        """Forget the recorded calls and requests and the received count (not the faults)."""
        with self._lock:
            self._calls.clear()
            self._requests.clear()
            self._dropped = (0, 0)
            self._received = 0
            self._epoch = os.urandom(6).hex()

    def _records_since(
        self, epoch: str, requests: int, calls: int, limit: int
    ) -> tuple[str, int, list[RequestRecord], list[dict[str, Any]], tuple[int, int, int]]:
        """For the page: the epoch (new on each :meth:`clear`), how many requests there
        are, and the (at most ``limit``) requests after the first ``requests`` with
        their calls, those after the first ``calls``; from the start when ``epoch``
        is not the current one; and where they begin (requests, calls: past the
        cursor when the oldest were dropped) and how many calls were dropped."""
        with self._lock:
            if epoch != self._epoch:
                requests = calls = 0
            found = records_after(
                self._requests, self._calls, self._dropped, (requests, calls), limit
            )
            return (self._epoch, *found)

    # -- fault switches -------------------------------------------------------------

    def fail_next(self, n: int, status: int = 500) -> None:
        """Answer the next ``n`` requests with ``status`` (500 by default), recording nothing."""
        self._faults.set(fail=(n, status))

    def throttle_next(self, n: int, retry_after: float = 1) -> None:
        """Answer the next ``n`` requests with 429 and ``Retry-After: retry_after``.

        Whole seconds are sent as an integer (``Retry-After: 2``); fractions as a
        decimal (``Retry-After: 0.2``), for fast tests.
        """
        self._faults.set(throttle=(n, float(retry_after)))

    def reset_next(self, n: int) -> None:
        """Reset the connection of the next ``n`` requests without answering (after the body
        is read), so that the client sees a connection reset."""
        self._faults.set(reset=n)

    def delay(self, seconds: float) -> None:
        """Wait ``seconds`` before answering every request; ``delay(0)`` restores.

        :meth:`stop` interrupts the wait; the request is then dropped unanswered.
        """
        self._faults.set(delay=max(0.0, float(seconds)))

    def reject_items(self, predicate: Callable[[dict[str, Any]], bool] | None) -> None:
        """Fail requests holding an entry for which ``predicate(entry)`` is true.

        Such a request is answered 400 ``BODY_VALIDATION_FAILED`` naming the entries
        (``items[3]: rejected by the server``) and nothing of it is recorded; even
        entries the client considers valid. ``reject_items(None)`` turns it off.
        """
        self._faults.set(reject=predicate)

    def reset_faults(self) -> None:
        """Turn every fault switch off."""
        self._faults.set(fail=(0, 500), throttle=(0, 1.0), reset=0, delay=0.0, reject=None)

    # -- called by the handler ------------------------------------------------------

    def _received_one(self) -> None:
        with self._changed:
            self._received += 1
            self._changed.notify_all()

    def _before_answer(self, stopping: threading.Event) -> None:
        """Apply the delay and the counted faults to one request."""
        self._faults.before_answer(stopping)

    def _check_key(self, key: str, api: str) -> None:
        if api == "runtime":  # Reflag's Runtime API: 403 for a missing or wrong key
            known = key in self._keys if self._keys is not None else key.startswith(_REFLAG)
            if not known:
                raise Reject(403, "FORBIDDEN", "the key is invalid or not allowed")
        elif self._keys is not None and key not in self._keys:
            raise Reject(400, "INVALID_API_KEY", "invalid tracking key")

    def _accept(
        self, kind: str, content_type: str | None, encoding: str | None, body: bytes
    ) -> list[dict[str, Any]]:
        """Validate a body; return the calls to record, or raise Reject."""
        media = (content_type or "").split(";", 1)[0].strip().lower()
        if media != "application/json":
            raise validation_failed(
                [f"Content-Type must be application/json, got {content_type or 'none'!r:.60}"]
            )
        if encoding is not None:
            raise validation_failed([f"Content-Encoding {encoding!r:.40} is not supported"])
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise validation_failed([f"the body is not valid JSON: {exc}"]) from None
        errors: list[str] = []
        reject = self._faults.reject
        if kind == "bulk":
            if not isinstance(data, list):
                raise validation_failed(
                    [f"the bulk body must be a JSON array, not {_json_type(data)}"]
                )
            for i, entry in enumerate(data):
                for problem in validate_wire(entry):
                    errors.append(f"items[{i}]: {problem}")
            calls = data
        else:
            errors.extend(validate_wire(data, kind))
            calls = [data if "type" in data else {"type": kind, **data}] if not errors else []
        if errors:
            raise validation_failed(errors, len(data) if kind == "bulk" else 1)
        if reject is not None:
            for i, call in enumerate(calls):
                if _safe_predicate(reject, call):
                    prefix = f"items[{i}]: " if kind == "bulk" else ""
                    errors.append(f"{prefix}rejected by the server")
            if errors:
                raise validation_failed(errors, len(calls))
        return cast("list[dict[str, Any]]", calls)

    def _record(self, record: RequestRecord, calls: list[dict[str, Any]] | None) -> None:
        if calls and self._on_call is not None:
            for call in calls:
                try:
                    self._on_call(call)
                except Exception as exc:
                    report("server.on_call", "tracking server: on_call raised %r", exc)
        if self._on_request is not None:
            try:
                self._on_request(record)
            except Exception as exc:
                report("server.on_request", "tracking server: on_request raised %r", exc)
        with self._changed:
            if calls:
                self._calls.extend(calls)
            self._requests.append(record)
            self._dropped = drop_oldest(self._requests, self._calls, self._max_calls, self._dropped)
            self._changed.notify_all()


def _safe_predicate(predicate: Callable[[dict[str, Any]], bool], call: dict[str, Any]) -> bool:
    try:
        return bool(predicate(call))
    except Exception as exc:
        report("server.reject_items", "tracking server: reject_items predicate raised %r", exc)
        return False


def _json_type(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if value is None:
        return "null"
    return type(value).__name__
