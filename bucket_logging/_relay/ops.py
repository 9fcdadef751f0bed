"""What operators ask the relay: ``GET /metrics``, ``/livez``, ``/readyz``, ``/health``.

:class:`Ops` is the relay app's one hook for them: it answers those paths (the
probes: :mod:`.probes`; the metrics: :mod:`.metrics`) and counts every request and
every body's records as the app answers them.

Who may read what: the probes answer anyone who can reach the port (they say only
ready or not, and why: no data, no key); ``/metrics`` asks for the relay's token when
it has one (``Authorization: Bearer``, as Prometheus sends it with
``authorization: {credentials_file: ...}``), like ``POST``.

May import: the relay's metrics, probes, limits and sender wrapper.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson

from .limits import Limits
from .metrics import RelayMetrics
from .probes import Probes
from .sender import RelaySender

__all__ = ["Ops"]

_JSON = {"Content-Type": "application/json"}


class Ops:
    """The relay's metrics and probes, for one serving process.

    Args:
        probes: the probes (built by the app with its sender and bounds).
        metrics: the metrics (a new :class:`RelayMetrics` when None).
        check_token: raises the app's 401 unless the request's ``Authorization`` is right.
    """

    def __init__(
        self,
        probes: Probes,
        check_token: Callable[[bytes | None], None],
        metrics: RelayMetrics | None = None,
    ) -> None:
        self.probes = probes
        self.metrics = metrics or RelayMetrics()
        self._check_token = check_token

    @classmethod
    def build(
        cls,
        sender: RelaySender,
        limits: Limits,
        stopping: Callable[[], bool],
        check_token: Callable[[bytes | None], None],
    ) -> Ops:
        """The ops of a relay app with this sender, bounds, drain state and token check."""
        probes = Probes(
            pending=sender.pending,
            max_pending=limits.max_pending,
            stopping=stopping,
            alive=sender.alive,
        )
        return cls(probes, check_token)

    def get(
        self, path: str, headers: dict[bytes, bytes]
    ) -> tuple[int, dict[str, str], bytes] | None:
        """The answer to ``GET path``, or None for a path that is not an operator's."""
        if path == "/livez":
            return self._json(*self.probes.live())
        if path in ("/readyz", "/health"):
            status, body = self.probes.ready()
            if status != 200:
                return status, {**_JSON, "Retry-After": "5"}, orjson.dumps(body)
            return self._json(status, body)
        if path == "/metrics":
            self._check_token(headers.get(b"authorization"))
            if not self.metrics.enabled:
                return (
                    404,
                    _JSON,
                    orjson.dumps(
                        {
                            "success": False,
                            "message": "no metrics (--no-metrics, or prometheus_client "
                            "is not installed)",
                        }
                    ),
                )
            accept = headers.get(b"accept", b"").decode("latin-1")
            text, content_type = self.metrics.exposition(accept)
            return 200, {"Content-Type": content_type}, text
        return None

    @staticmethod
    def _json(status: int, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        return status, _JSON, orjson.dumps(body)

    @staticmethod
    def receiver(method: str, path: str, otlp: bool) -> str:
        """The ``receiver`` label of a request."""
        if otlp:
            return "otlp"
        if method == "POST":
            return "ndjson"
        if path == "/metrics":
            return "metrics"
        if path in ("/livez", "/readyz", "/health"):
            return "probe"
        return "other"

    def answered(self, scope: Any, otlp: bool, status: int, started: float) -> None:
        """Count a request answered ``status`` (it began at ``started``, perf_counter)."""
        self.metrics.request(self.receiver(scope["method"], scope["path"], otlp), status, started)

    def refused_early(self, status: int) -> None:
        """A connection answered ``status`` before the app saw a request (the connection
        cap's 503, h11's 400 for a malformed head): counted as receiver ``other``."""
        self.metrics.request("other", status, time.perf_counter())

    def records(
        self, otlp: bool, received: int, tracked: int, queue_full: int, not_objects: int = 0
    ) -> None:
        """Count a body's records: ``received`` records (JSON objects or OTLP records)
        of which ``tracked`` were tracked, ``queue_full`` of their items refused by the
        sender, and ``not_objects`` values that were not objects."""
        self.metrics.records(
            "otlp" if otlp else "ndjson",
            received + not_objects,
            max(0, tracked - queue_full),
            {
                "not_an_object": not_objects,
                "not_tracked": received - tracked,
                "queue_full": queue_full,
            },
        )

    def no_room(self, otlp: bool, records: int) -> None:
        """A batch of ``records`` did not fit beside what the sender holds (503)."""
        self.metrics.records("otlp" if otlp else "ndjson", records, 0, {"no_room": records})

    def close(self) -> None:
        """Stop watching the sender."""
        self.probes.close()
