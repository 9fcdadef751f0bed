"""The relay's own log lines as JSON (``--log-format json``): one object a line.

Each line the relay writes (its banner, each refusal, the drain, the summary at exit,
the library's messages on the ``bucket_logging`` logger) becomes::

    {"time": "2026-12-07T23:20:08.123Z", "level": "warning", "message": "relay: 413 ...",
     "status": 413}

``time`` is UTC (ISO 8601, milliseconds), ``level`` one of ``debug``, ``info``,
``warning``, ``error``; the other keys are the line's fields (``status`` of an answer,
``worker`` of a worker's line, ``logger`` of a library message). The relay's token and
tracking key are never written: they are registered secrets, replaced in every line.

:func:`use_json` puts it in place for the process (before the relay starts serving):
``sys.stderr`` becomes a :class:`JsonLines` stream (so every ``print`` to it, and a
traceback, line by line) and the ``bucket_logging`` logger gets a handler of its own.

May import: the process layer.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from typing import Any, Final, TextIO

import orjson

from .._runtime.diagnostics import redact

__all__ = ["JsonFormatter", "JsonLines", "line_object", "use_json"]

_STATUS: Final = re.compile(r"^relay(?: worker (\d+))?: (\d{3}) ")
_WORKER: Final = re.compile(r"^relay worker (\d+)")


def _now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


def line_object(line: str, level: str = "", **fields: Any) -> dict[str, Any]:
    """The JSON object of one plain log line of the relay (its level and fields read
    from the line when not given)."""
    line = redact(line)
    found: dict[str, Any] = {}
    status = _STATUS.match(line)
    if status:
        if status.group(1):
            found["worker"] = int(status.group(1))
        found["status"] = int(status.group(2))
    else:
        worker = _WORKER.match(line)
        if worker:
            found["worker"] = int(worker.group(1))
    if not level:
        if line.startswith(("WARNING", "Traceback", "  ")) or "status" in found:
            level = "warning"
        elif line.startswith("ERROR"):
            level = "error"
        else:
            level = "info"
    return {"time": _now(), "level": level, "message": line, **found, **fields}


class JsonLines:
    """A text stream writing every complete line written to it as one JSON object."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._lock = threading.Lock()
        self._partial = ""

    def write(self, text: str) -> int:
        """Buffer ``text``; write out each line it completes."""
        with self._lock:
            lines = (self._partial + text).split("\n")
            self._partial = lines.pop()
            out = [orjson.dumps(line_object(line)) + b"\n" for line in lines if line.strip()]
            if out:
                self.stream.write(b"".join(out).decode())
        return len(text)

    def flush(self) -> None:
        """Flush the stream below."""
        self.stream.flush()

    def isatty(self) -> bool:
        """Never a terminal (JSON is for pipelines)."""
        return False

    def fileno(self) -> int:
        """The stream's descriptor."""
        return self.stream.fileno()


class JsonFormatter(logging.Formatter):
    """A log record as one JSON object (for the ``bucket_logging`` logger)."""

    def format(self, record: logging.LogRecord) -> str:
        """``{"time", "level", "message", "logger"}``, secrets replaced."""
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        level = record.levelname.lower()
        obj = line_object(message, "warning" if level == "warn" else level, logger=record.name)
        return orjson.dumps(obj).decode()


def use_json() -> None:
    """From now on, this process writes its log lines as JSON (see the module)."""
    raw = sys.stderr
    if isinstance(raw, JsonLines):
        return
    sys.stderr = JsonLines(raw)
    handler = logging.StreamHandler(raw)
    handler.setFormatter(JsonFormatter())
    library = logging.getLogger("bucket_logging")
    library.addHandler(handler)
    library.propagate = False
