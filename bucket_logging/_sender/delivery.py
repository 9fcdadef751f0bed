"""Delivery: one batch to the bulk endpoint, with retries and bisection, to an outcome.

On Reflag's Runtime API (a ``feedback_endpoint``), the feedback of a batch is sent
one call each to ``POST /feedback`` (its SDKs never put feedback in a bulk body),
the rest of the batch to ``/bulk``; each request is retried, rejected or given up
on as below. A 403 there means the key is invalid or not allowed: given up at once.

* 5xx, 408, 429 and network errors are retried as :mod:`bucket_logging._sender.retry`
  says (exponential back-off, jitter, a cap, ``Retry-After``, a budget per batch);
* a 400 (or 413) is not retried as is: the batch is bisected to isolate the items
  the server rejects; those are counted, reported and dropped, every other item is
  delivered;
* anything else (retries exhausted, the close deadline, another 4xx) gives the
  items up: :meth:`Delivery.deliver` returns them in its :class:`Outcome`, and the
  caller drops them or leaves them in the spool.

Each request has one deadline (``request_timeout``, its answer included) and at most
64 KiB of an answer's body is read (:mod:`bucket_logging._sender.answers`): a hostile server
costs bounded memory and time.

Requests, retries, sent and rejected items are counted in the ledger here.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx
import orjson

from .._exceptions import DeliveryError
from .._items.item import bulk_body, kind_of
from .._runtime import diagnostics as _diagnostics
from .._runtime.diagnostics import report
from .answers import post_bounded
from .config import SenderConfig
from .ledger import DropReason, Ledger
from .observe import Publisher, observers
from .queue import Batch
from .retry import RetryPolicy, parse_retry_after, retryable

__all__ = ["Delivery", "GiveUp", "Outcome", "Pace", "Post", "RetryableFailure"]

#: Transport errors after which the request surely did not reach the server.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class RetryableFailure(Exception):
    """A retryable failure of one request.

    Attributes:
        detail: what happened, for the report.
        status: the HTTP status, or None for a network error.
        delay: the server's ``Retry-After`` in seconds, if any.
        ambiguous: the request may have reached the server and been accepted (it
            ended without an answer).
    """

    def __init__(self, detail: str, status: int | None = None, delay: float | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.delay = delay
        self.ambiguous = False


#: Sends one body to a URL (None: the bulk endpoint); returns a 2xx or 4xx answer,
#: raises RetryableFailure.
Post = Callable[[bytes, "str | None"], Awaitable[httpx.Response]]

_FEEDBACK_HEAD = b'{"type":"feedback",'


def feedback_body(entry: bytes) -> bytes:
    """A bulk entry of feedback as the body of a single ``/feedback`` call (no ``type``)."""
    if entry.startswith(_FEEDBACK_HEAD):  # how every entry encoded here begins
        return b"{" + entry[len(_FEEDBACK_HEAD) :]
    data = orjson.loads(entry)
    data.pop("type", None)
    return orjson.dumps(data)


@dataclass
class GiveUp:
    """Items delivery gave up on, and why."""

    entries: list[bytes]
    reason: DropReason
    status: int | None
    detail: str


@dataclass
class Outcome:
    """What became of a batch: ``sent`` and ``rejected`` counts, what was given up."""

    sent: int = 0
    rejected: int = 0
    given_up: list[GiveUp] = field(default_factory=list)
    #: A request for (part of) it ended without an answer: it may have arrived.
    ambiguous: bool = False


class Pace:
    """How hard delivery tries right now: a waiting flush, the close deadline.

    Args:
        flush_waiting: whether a flush waits (back-offs are then kept short).
    """

    def __init__(self, flush_waiting: Callable[[], bool]) -> None:
        self.flush_waiting = flush_waiting
        #: ``time.monotonic()`` by which the sender must be closed, or None.
        self.closing_deadline: float | None = None
        self._hurry = asyncio.Event()

    def hurry(self) -> None:
        """Wake every back-off now (a flush or the close is waiting)."""
        self._hurry.set()
        self._hurry = asyncio.Event()

    async def sleep(self, delay: float) -> None:
        """Sleep ``delay`` seconds, or until :meth:`hurry`."""
        if delay <= 0:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._hurry.wait(), delay)


def error_message(response: httpx.Response) -> tuple[str, str]:
    """The (code, readable message) of an error answer, per the API's error body.

    Both come from outside: the keys are redacted, control characters escaped, and
    only then is the text cut (see :func:`~bucket_logging._runtime.diagnostics.outside_text`).
    """
    clean = _diagnostics.outside_text
    try:
        data = response.json()
        error = data.get("error") or {}
        code = str(error.get("code") or "")
        message = str(error.get("message") or "")
        details = [
            str(v.get("message"))
            for v in error.get("validationErrors") or ()
            if isinstance(v, dict) and v.get("message")
        ]
        details = [d for d in details if d not in message]  # (the server may repeat them)
        if details:
            message = (message + ": " if message else "") + "; ".join(details)
        return clean(code, 100), clean(message or response.text, 1000)
    except Exception:
        return "", clean(response.text)


class Delivery:
    """Posts batches to the bulk endpoint for one sender.

    Args:
        client: the sender's HTTP client.
        endpoint: the bulk URL (it may hold the tracking key: never logged).
        ledger: where requests and outcomes are counted.
        feedback_endpoint: where feedback goes one call each, or None (in bulk).
        policy: the retry policy.
        pace: the sender's flush and close state.
        notify: passes a :class:`~bucket_logging.DeliveryError` to ``on_error``.
        request_timeout: seconds for one request, its answer's body included (of which
            at most 64 KiB is read: see :mod:`bucket_logging._sender.answers`).
    """

    @classmethod
    def configured(
        cls,
        client: httpx.AsyncClient,
        config: SenderConfig,
        ledger: Ledger,
        pace: Pace,
        notify: Callable[[DeliveryError], None],
    ) -> Delivery:
        """A delivery to ``config``'s endpoints, with its retry policy, request timeout
        and debug summaries."""
        delivery = cls(
            client,
            config.endpoint,
            ledger,
            feedback_endpoint=config.feedback_endpoint,
            policy=config.retry,
            pace=pace,
            notify=notify,
            request_timeout=config.request_timeout,
        )
        delivery.debug = config.debug
        return delivery

    def __init__(
        self,
        client: httpx.AsyncClient,
        endpoint: str,
        ledger: Ledger,
        *,
        policy: RetryPolicy,
        pace: Pace,
        notify: Callable[[DeliveryError], None],
        feedback_endpoint: str | None = None,
        request_timeout: float = 10.0,
    ) -> None:
        self.client = client
        #: One request's deadline, its answer included (a dripped body is cut).
        self.request_timeout = request_timeout
        self.endpoint = endpoint
        self.feedback_endpoint = feedback_endpoint
        self.ledger = ledger
        self.policy = policy
        self.pace = pace
        self.notify = notify
        #: Where requests go, for the outage reports (the key is in the path: left out).
        url = httpx.URL(endpoint)
        self.host = f"{url.host}:{url.port}" if url.port else str(url.host)
        #: When the current outage began (``time.monotonic()``), or None.
        self._outage_since: float | None = None
        #: Called on the loop at each failed attempt (the engine's waiters look again).
        self.on_failure: Callable[[], object] | None = None
        self._failed_attempts = 0
        self._last_failure = ""
        #: The ``debug`` option: each request's summary at INFO (items, bytes, status).
        self.debug = False

    async def post(self, body: bytes, url: str | None = None) -> httpx.Response:
        """One request (to ``url``, else the bulk endpoint): the answer, unless it
        failed in a retryable way (raised)."""
        self.ledger.count_request()
        try:
            response = await post_bounded(
                self.client, url or self.endpoint, body, timeout=self.request_timeout
            )
        except httpx.TransportError as exc:
            failure = RetryableFailure(f"{type(exc).__name__}: {exc}")
            failure.ambiguous = not isinstance(exc, _NOT_SENT)
            raise failure from None
        status = response.status_code
        if retryable(status):
            raise RetryableFailure(
                f"HTTP {status}", status, parse_retry_after(response.headers.get("Retry-After"))
            )
        return response

    async def deliver(self, batch: Batch | list[bytes], post: Post | None = None) -> Outcome:
        """Deliver one batch (through ``post``, else :meth:`post`) and say what became of it."""
        outcome = Outcome()
        post = post or self.post
        single = self.feedback_endpoint
        if single is not None:
            entries = _entries(batch)
            feedback = [e for e in entries if kind_of(e) == "feedback"]
            if feedback:
                rest = [e for e in entries if kind_of(e) != "feedback"]
                parts = [([e], single) for e in feedback] + ([(rest, None)] if rest else [])
                for i, (part, url) in enumerate(parts):
                    given_up = len(outcome.given_up)
                    await self._send(part, post, outcome, url)
                    if len(outcome.given_up) > given_up:
                        # a wrong key, an outage that outlasted the retry budget, the
                        # close: the other parts would fare the same, and each would
                        # spend a budget of its own; they are given up with it
                        left = [e for later, _ in parts[i + 1 :] for e in later]
                        if left:
                            gave = outcome.given_up[-1]
                            outcome.given_up.append(
                                GiveUp(left, gave.reason, gave.status, gave.detail)
                            )
                        break
                return outcome
        await self._send(batch, post, outcome)
        return outcome

    async def _send(
        self, batch: Batch | list[bytes], post: Post, outcome: Outcome, url: str | None = None
    ) -> None:
        """``batch`` to the bulk endpoint, or its one entry to ``url`` (a single call)."""
        if url is not None:
            body = feedback_body(_entries(batch)[0])
        else:
            body = batch.body() if isinstance(batch, Batch) else bulk_body(batch)
        started = time.monotonic()
        attempt = 0
        ambiguous = False
        while True:
            try:
                if ambiguous and not outcome.ambiguous:
                    # the last request may have arrived: these may be duplicates
                    outcome.ambiguous = True
                    self.ledger.count_redelivered(len(batch))
                response = await self._timed(post, body, url, len(batch))
            except RetryableFailure as failure:
                if self.debug:
                    self._summary(url, len(batch), len(body), failure.detail)
                ambiguous = ambiguous or failure.ambiguous
                self._failed(failure)
                attempt += 1
                pace = self.pace
                now = time.monotonic()
                closing = pace.closing_deadline
                delay = self.policy.next_delay(
                    attempt,
                    failure.delay,
                    now - started,
                    flush_waiting=pace.flush_waiting(),
                    closing_in=None if closing is None else closing - now,
                )
                if delay is None:
                    reason: DropReason = "retries_exhausted"
                    detail = failure.detail
                    if closing is not None:
                        reason = "shutdown"  # (close() says the same of the queue's rest)
                        detail = self.shutdown_loss()
                    outcome.given_up.append(GiveUp(_entries(batch), reason, failure.status, detail))
                    return
                self.ledger.count_retry()
                await pace.sleep(delay)
                continue
            if self._outage_since is not None:
                self._recovered()
            status = response.status_code
            if self.debug:
                self._summary(url, len(batch), len(body), f"HTTP {status}")
            if 200 <= status < 300:
                self.ledger.count_sent(len(batch))
                outcome.sent += len(batch)
                return
            code, message = error_message(response)
            if status in (400, 413) and code != "INVALID_API_KEY":
                entries = _entries(batch)
                if len(entries) == 1:
                    self._reject(entries[0], status, message)
                    outcome.rejected += 1
                    return
                half = len(entries) // 2
                await self._send(entries[:half], post, outcome)
                await self._send(entries[half:], post, outcome)
                return
            detail = code or message
            if status == 403:  # the Runtime API's answer to a wrong key
                detail = f"the key is invalid or not allowed ({detail}); check it and base_url"
            elif status in (400, 401, 404):
                detail += " (check the tracking key and base_url)"
            outcome.given_up.append(GiveUp(_entries(batch), "client_error", status, detail))
            return

    def _summary(self, url: str | None, items: int, size: int, outcome: str) -> None:
        """One request's summary (the ``debug`` option); the host only, never the key."""
        _diagnostics.info(
            "bucket_logging: POST %s %s: %d item(s), %d bytes -> %s",
            self.host,
            "bulk" if url is None else "feedback",
            items,
            size,
            _diagnostics.outside_text(outcome),
        )

    async def _timed(self, post: Post, body: bytes, url: str | None, items: int) -> httpx.Response:
        """``post(body, url)``, its duration and items told to the observers (if any)."""
        if not observers:
            return await post(body, url)
        started = time.perf_counter()
        try:
            return await post(body, url)
        finally:
            Publisher.requested(time.perf_counter() - started, items)

    @property
    def failing_seconds(self) -> float:
        """How long the endpoint has been failing (0 while it answers)."""
        since = self._outage_since
        return 0.0 if since is None else time.monotonic() - since

    @property
    def failing(self) -> bool:
        """Whether the endpoint is failing (its last request failed)."""
        return self._outage_since is not None

    def _failed(self, failure: RetryableFailure) -> None:
        """A request failed: the first failure of an outage is said at once, with its cause."""
        self.ledger.count_failed()
        self._failed_attempts += 1
        self._last_failure = _diagnostics.outside_text(failure.detail)
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            self._say_outage()
        if self.on_failure is not None:
            self.on_failure()

    def _say_outage(self) -> None:
        report(
            "outage",
            "bucket_logging: cannot deliver to %s (%s); retrying for up to %gs, the items "
            "are kept meanwhile",
            self.host,
            self._last_failure,
            self.policy.budget,
        )

    def shutdown_loss(self) -> str:
        """What items lost at the shutdown deadline are reported with (and why, in an outage)."""
        return "not delivered before the shutdown deadline" + self.outage_note()

    def outage_note(self) -> str:
        """`` (<host> failing for Ns: <last cause>)`` during an outage, else ""."""
        since = self._outage_since
        if since is None:
            return ""
        return (
            f" ({self.host} failing for {time.monotonic() - since:.1f}s, "
            f"{self._failed_attempts} attempt(s): {self._last_failure})"
        )

    def _recovered(self) -> None:
        """The endpoint answers again after an outage: say so, once."""
        since, attempts = self._outage_since, self._failed_attempts
        self._outage_since, self._failed_attempts = None, 0
        report(
            "outage-over",
            "bucket_logging: delivery to %s recovered after %.1fs (%d failed attempt(s))",
            self.host,
            time.monotonic() - (since or 0.0),
            attempts,
        )

    def _reject(self, entry: bytes, status: int, message: str) -> None:
        self.ledger.count_rejected(1)
        self.notify(DeliveryError("rejected", 1, status, message))
        report(
            "rejected",
            "bucket_logging: the server rejected an item (%s; HTTP %d: %s): %.300s",
            kind_of(entry),
            status,
            message,
            entry.decode("utf-8", "replace"),
        )


def _entries(batch: Batch | list[bytes]) -> list[bytes]:
    return batch.entries() if isinstance(batch, Batch) else batch
