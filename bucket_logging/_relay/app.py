"""The relay's ASGI app and its bounds on uvicorn (the ``relay`` extra).

:class:`RelayApp` is an ASGI application: ``POST /`` (any path but ``/v1/logs``)
takes a batch of JSON log events (a JSON array, NDJSON or one object), ``POST
/v1/logs`` an OTLP/HTTP logs export (protobuf or JSON), either optionally gzip;
``GET /livez``, ``/readyz`` (``/health``: its alias) and ``/metrics`` answer
operators (:mod:`bucket_logging._relay.ops`). :mod:`bucket_logging._relay.server` serves
it on uvicorn with the relay's connection bounds.

Bounds, in the order a request meets them:

* **connections**: at most ``max_connections`` open; more are answered 503 with
  ``Retry-After`` and closed at once (before anything of theirs is read);
* **headers**: h11 refuses (400) a request head over 16 KiB (``h11_max_incomplete_
  event_size``) and a malformed or conflicting ``Content-Length``
  (``3_2``, ``+32``, two different values); only one read of the socket beyond that
  is ever buffered;
* **deadline**: every connection must deliver its request (head and body) within
  ``request_timeout`` seconds of its start or of its previous answer, or it is
  closed (slow and stalled clients, idle keep-alive connections); the time spent
  tracking a complete body is not counted;
* **token**: checked in constant time before the body is read, and before ``100
  Continue`` is sent (uvicorn sends it on the app's first read of the body);
* **concurrency**: at most ``max_concurrent`` requests read and tracked at once;
  more get 503 with ``Retry-After``;
* **bytes**: a ``Content-Length`` over ``max_body`` is answered 413 (a chunked body
  as soon as it passes it); gzip is decompressed a bounded step at a time up to
  ``max_decoded`` bytes (a gzip bomb costs at most that), in at most
  :data:`~bucket_logging._relay.bodies.MAX_GZIP_MEMBERS` members walked by offset;
* **objects**: before a body is parsed, the JSON values (objects, arrays, strings,
  numbers, keys) it can hold are counted at memory speed
  (:func:`~bucket_logging._relay.bodies.value_bound`); all requests in progress together
  hold at most ``max_objects`` of them: a body that can never fit gets 413, one that
  does not fit now 503 with ``Retry-After``; a protobuf body is charged as it is read
  (:mod:`bucket_logging._relay.objects`);
* **queue**: a batch with more items than ``max_pending`` can never be queued (413);
  one that does not fit beside what the sender holds gets 503 with ``Retry-After``.

Memory is thus bounded by about ``max_concurrent * (2 * max_body + 3 * max_decoded)
+ max_objects * 100 B`` (see docs/pipelines.md for the figures measured).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, TextIO

import orjson

from .._frontends import otlp as _otlp
from .._frontends.jsonlines import JsonLines
from .._runtime.diagnostics import register_secret
from .bodies import Refused, gunzip, parse_body, value_bound
from .dedupe import durability
from .limits import Limits
from .objects import Pool, otlp_budget
from .ops import Ops
from .origin import BrowserRules
from .sender import RelaySender

__all__ = ["MAX_HEAD", "OTLP_PATH", "RelayApp", "plain_answer"]

#: The OTLP/HTTP logs path.
OTLP_PATH: Final = "/v1/logs"

#: A body over the limit but within this many times it is read and discarded before
#: the 413 (a client still sending would otherwise see a reset, not the answer).
_DRAIN_FACTOR: Final = 4

#: The head a request may have (h11's ``max_incomplete_event_size``).
MAX_HEAD: Final = 16 * 1024

_PHRASES: Final = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    429: "Too Many Requests",
    503: "Service Unavailable",
}

#: google.rpc.Code for an HTTP status (OTLP answers errors with a google.rpc.Status).
_RPC_CODES: Final = {400: 3, 401: 16, 405: 12, 411: 3, 413: 3, 415: 3, 429: 8, 503: 14}

#: One batch is tracked at a time (the sender's refusals are counted per batch).
_TRACKING: Final = threading.Lock()


def plain_answer(status: int, message: str, headers: dict[str, str]) -> bytes:
    """A whole HTTP/1.1 answer that closes the connection (before h11 is involved)."""
    body = orjson.dumps({"success": False, "message": message})
    lines = [f"HTTP/1.1 {status} {_PHRASES.get(status, '')}", "Content-Type: application/json"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines += [f"Content-Length: {len(body)}", "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class _Gone(Exception):
    """The client went away (or was cut off by its deadline) while sending its body."""


class RelayApp:
    """The relay as an ASGI application (see the module documentation).

    Args:
        front: the front end every event or record is tracked through (its sender a
            :class:`~bucket_logging._relay.sender.RelaySender`).
        sender: that RelaySender.
        token: the shared secret of ``Authorization: Bearer``; None for none.
        limits: the bounds.
        log: where refusals are written (never a token or key).
    """

    def __init__(
        self,
        front: JsonLines,
        sender: RelaySender,
        *,
        token: str | None = None,
        limits: Limits | None = None,
        log: TextIO | None = None,
    ) -> None:
        self.front = front
        self.sender = sender
        self.limits = limits or Limits()
        self._token = token.encode() if token else None
        if token:
            register_secret(token)
        self._log = log
        self._lock = threading.Lock()
        self.counts: Counter[int] = Counter()
        self.retry_headers = {"Retry-After": str(self.limits.retry_after)}
        self._in_progress = 0
        #: The values the requests in progress may hold (``max_objects``).
        self.objects = Pool(self.limits.max_objects, self.retry_headers)
        self._pool = ThreadPoolExecutor(
            max(1, self.limits.max_concurrent), thread_name_prefix="bucket-logging relay"
        )
        #: What a browser may do (set by its runner, who knows the bound interface).
        self.browser = BrowserRules()
        #: Retried bodies (not tracked twice) and ``--fsync`` (see :mod:`.dedupe`).
        self.retries, self.commit, self.note = durability(sender, self.limits)
        #: Whether the server is stopping (set by its runner): /readyz says so.
        self.stopping: Callable[[], bool] = lambda: False
        #: GET /metrics, /livez, /readyz, /health, and the counts behind them (the
        #: server replaces ``stopping``: it is looked up on each probe).
        stopping = lambda: self.stopping()  # noqa: E731, PLW0108
        self.ops = Ops.build(sender, self.limits, stopping, self._check_token)

    # -- reporting -------------------------------------------------------------------

    def say(self, line: str) -> None:
        """Write one line to the log stream."""
        if self._log is None:
            return
        with self._lock, contextlib.suppress(OSError, ValueError):
            self._log.write(line + "\n")
            self._log.flush()

    def count(self, status: int) -> None:
        """Count an answer."""
        with self._lock:
            self.counts[status] += 1

    def close(self) -> None:
        """Let the tracking threads finish."""
        self._pool.shutdown(wait=True)
        self.ops.close()

    # -- ASGI ------------------------------------------------------------------------

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Serve one request (the lifespan protocol is acknowledged, nothing more)."""
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].rsplit(".", 1)[-1]
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        otlp = scope["path"] == OTLP_PATH
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            headers[name] = value if name not in headers else headers[name] + b"," + value
        content_type = headers.get(b"content-type", b"").decode("latin-1")
        try:
            status, answer_headers, body = await self._serve(scope, receive, headers, otlp)
        except Refused as refused:
            status, answer_headers = refused.status, refused.headers
            body = self._error_body(otlp, content_type, status, refused.message)
            self.say(f"relay: {status} {refused.message}")
        except _Gone:
            return
        self.count(status)
        self.ops.answered(scope, otlp, status, started)
        if not answer_headers.get("Content-Type"):
            answer_headers = {**answer_headers, "Content-Type": _answer_type(otlp, content_type)}
        raw = [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in answer_headers.items()
        ]
        raw.append((b"content-length", str(len(body)).encode()))
        if status != 200 or self.stopping():
            raw.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})

    def _error_body(self, otlp: bool, content_type: str, status: int, message: str) -> bytes:
        if not otlp:
            return orjson.dumps({"success": False, "message": message})
        return _otlp.rpc_status(_otlp_type(content_type), _RPC_CODES.get(status, 2), message)

    async def _serve(
        self, scope: Any, receive: Any, headers: dict[bytes, bytes], otlp: bool
    ) -> tuple[int, dict[str, str], bytes]:
        method = scope["method"]
        if method in ("GET", "HEAD"):
            if scope["path"] == "/metrics":
                self.browser.check(headers)  # a web page (or a rebound name) reads no counts
            answer = self.ops.get(scope["path"], headers)
            if answer is not None:
                return answer
            raise Refused(405, "only POST", {"Allow": "POST"})
        if method != "POST":
            raise Refused(405, "only POST", {"Allow": "POST"})
        self.browser.check(headers)  # a web page's request: refused, nothing read
        if not otlp:
            self.browser.check_json_type(headers.get(b"content-type", b"").decode("latin-1"))
        self._check_token(headers.get(b"authorization"))  # before 100 Continue
        if self.stopping():
            raise Refused(503, "the relay is stopping", self.retry_headers)
        with self._lock:
            slot = self._in_progress < self.limits.max_concurrent
            if slot:
                self._in_progress += 1
        if not slot:
            raise Refused(503, "too many requests at once", self.retry_headers)
        try:
            body = await self._read_body(receive, headers)
            encoding = headers.get(b"content-encoding", b"").decode("latin-1")
            content_type = headers.get(b"content-type", b"").decode("latin-1")
            loop = asyncio.get_running_loop()
            if otlp:
                return await loop.run_in_executor(
                    self._pool, self.take_otlp, body, encoding, content_type
                )
            status, message = await loop.run_in_executor(self._pool, self.take, body, encoding)
            return status, {}, orjson.dumps({"success": True, "message": message})
        finally:
            with self._lock:
                self._in_progress -= 1

    def _check_token(self, header: bytes | None) -> None:
        """Raise 401 unless ``header`` is ``Bearer <token>`` (compared in constant time)."""
        if self._token is None:
            return
        scheme, _, credentials = (header or b"").partition(b" ")
        if not (
            scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(), self._token)
        ):
            raise Refused(401, "a valid bearer token is required", {"WWW-Authenticate": "Bearer"})

    async def _read_body(self, receive: Any, headers: dict[bytes, bytes]) -> bytes:
        limit = self.limits.max_body
        raw_length = headers.get(b"content-length")
        chunked = b"chunked" in headers.get(b"transfer-encoding", b"").lower()
        if raw_length is None and not chunked:
            raise Refused(411, "send a Content-Length or a chunked body")
        if raw_length is not None and chunked:  # which one a proxy in front reads is unknown
            raise Refused(400, "a Content-Length and a chunked body at once")
        if raw_length is not None and int(raw_length) > limit:  # h11 checked its digits
            waiting = headers.get(b"expect", b"").lower() == b"100-continue"
            if not waiting and int(raw_length) <= _DRAIN_FACTOR * limit:
                await self._discard(receive, _DRAIN_FACTOR * limit)
            raise Refused(413, f"the body is over {limit:,} bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise _Gone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._discard(receive, _DRAIN_FACTOR * limit - size)
                raise Refused(413, f"the body is over {limit:,} bytes")
            if chunk:
                chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _discard(self, receive: Any, budget: int) -> None:
        """Read and forget up to ``budget`` more bytes of the body (so that the client
        reads the answer rather than a reset); the connection's deadline still applies."""
        while budget > 0:
            message = await receive()
            if message["type"] != "http.request":
                return
            budget -= len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    # -- tracking (on a worker thread) -----------------------------------------------

    def _decode(self, body: bytes, encoding: str, json: bool = True) -> bytes:
        encoding = encoding.strip().lower()
        if encoding in ("gzip", "x-gzip"):
            values = self.limits.max_objects if json else None
            return gunzip(body, self.limits.max_decoded, max_values=values)
        if encoding not in ("", "identity"):
            raise Refused(415, "only gzip (or no) Content-Encoding is taken")
        if len(body) > self.limits.max_decoded:
            raise Refused(413, f"the body is over {self.limits.max_decoded:,} bytes")
        return body

    def _begin(self, digest: bytes) -> bool:
        """False for a body tracked within the window (answered 200, not tracked)."""
        state = self.retries.begin(digest)
        if state == "busy":
            raise Refused(503, "an identical body is being tracked", self.retry_headers)
        return state == "new"

    @contextlib.contextmanager
    def _kept(self, digest: bytes) -> Any:
        """Track a new body: once all its items are queued (so in the spool's journal),
        remember it, and with ``--fsync`` wait for the journal's fsync."""
        kept: list[bool] = []  # the caller says whether every item was queued
        try:
            yield kept
            if not (kept and kept[0]):
                return
            if self.commit is not None and not self.commit.commit():
                raise Refused(503, "the spool could not be fsynced", self.retry_headers)
        finally:
            self.retries.end(digest)

    def _end(self, digest: bytes, refused: int) -> None:
        """A request's items are queued (``refused`` of them were not): "end" in the
        journal, then the digest at once (a kill between the two costs a duplicate)."""
        self.note(b"end")
        if not refused:
            self.retries.done(digest)

    def _check_room(self, items: int, otlp: bool = False) -> None:
        limits = self.limits
        if items > limits.max_pending:
            raise Refused(
                413,
                f"the batch has {items:,} events, more than --max-pending "
                f"({limits.max_pending:,}) can ever hold: send smaller batches",
            )
        if self.sender.pending() + items > limits.max_pending:
            self.ops.no_room(otlp, items)
            raise Refused(503, "the sender's queue is full", self.retry_headers)

    def take(self, body: bytes, encoding: str) -> tuple[int, str]:
        """Track one batch of JSON events; (status, message)."""
        text = self._decode(body, encoding)
        del body
        digest = self.retries.digest("bulk", text)
        if not self._begin(digest):
            return 200, "a retried body, tracked already: not tracked again"
        with self._kept(digest) as kept, self.objects.reserve(value_bound(text)):
            objects, bad = parse_body(text)
            del text
            self._check_room(len(objects))
            track = self.front.track
            with _TRACKING:
                self.sender.take_refused()
                self.note(b"begin")  # (a kill before "end": recovery leaves these out)
                tracked = sum(1 for obj in objects if track(obj))
                refused = self.sender.take_refused()
                self._end(digest, refused)
            kept.append(not refused)
        self.ops.records(False, len(objects), tracked, refused, bad)
        if refused:
            raise Refused(
                503, f"the sender refused {refused} item(s): queue full", self.retry_headers
            )
        return 200, f"{len(objects)} event(s), {tracked} tracked, {bad} not objects"

    def take_otlp(
        self, body: bytes, encoding: str, content_type: str
    ) -> tuple[int, dict[str, str], bytes]:
        """Track one OTLP/HTTP logs export; (status, headers, ExportLogsServiceResponse).

        Records whose tags are invalid are reported as a partial success while the
        valid records of the same request are delivered.
        """
        kind = _otlp_type(content_type)
        if not kind:
            raise Refused(415, "OTLP/HTTP takes application/x-protobuf or application/json")
        data = self._decode(body, encoding, kind == "application/json")
        del body
        digest = self.retries.digest(OTLP_PATH, data)
        if not self._begin(digest):
            return 200, {"Content-Type": kind}, _otlp.export_logs_response(kind, rejected=0)
        # JSON: what it can hold, reserved before it is parsed; protobuf: charged as it
        # is read, within a budget proportional to its size (see objects.py)
        json = kind == "application/json"
        values = otlp_budget(data, json, self.limits.max_objects)
        with (
            self._kept(digest) as kept,
            self.objects.reserve(values if json else 0),
            self.objects.charging() as charge,
        ):
            try:
                records = _otlp.decode_export_logs(
                    data,
                    kind,
                    max_records=self.limits.max_pending,
                    max_values=values,
                    charge=None if json else charge,
                )
            except _otlp.OtlpBusy as exc:
                raise Refused(503, str(exc), self.retry_headers) from None
            except _otlp.OtlpTooLarge as exc:
                raise Refused(413, f"{exc}: send smaller batches") from None
            except _otlp.OtlpDecodeError as exc:
                raise Refused(400, f"the body is not an OTLP logs export ({exc})") from None
            del data
            self._check_room(len(records), otlp=True)
            with _TRACKING:
                self.sender.take_refused()
                self.note(b"begin")
                tracked, rejected, message = _otlp.track_records(self.front, records)
                refused = self.sender.take_refused()
                self._end(digest, refused)
            kept.append(not refused)
        self.ops.records(True, len(records), tracked, refused)
        if refused:
            raise Refused(
                503, f"the sender refused {refused} item(s): queue full", self.retry_headers
            )
        answer = _otlp.export_logs_response(kind, rejected=rejected, error_message=message)
        return 200, {"Content-Type": kind}, answer


def _otlp_type(content_type: str) -> str:
    """``application/x-protobuf``, ``application/json``, or "" for anything else."""
    base = content_type.split(";", 1)[0].strip().lower()
    if base in ("application/x-protobuf", "application/protobuf"):
        return "application/x-protobuf"
    if base == "application/json":
        return "application/json"
    return ""


def _answer_type(otlp: bool, content_type: str) -> str:
    if otlp:
        return _otlp_type(content_type) or "application/json"
    return "application/json"
