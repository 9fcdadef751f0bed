"""``bucket-logging ship``: JSON-lines log files (or stdin) to tracking.

    $ bucket-logging ship app.log                    # read it, send, summarise, exit
    $ bucket-logging ship --follow --state ship.state /var/log/app/*.log
    $ kubectl logs deploy/app | bucket-logging ship   # stdin when no file is given

Every line is parsed as JSON and handed to :class:`~bucket_logging._frontends.jsonlines.JsonLines`
(the tags, ids, rules and timestamps of a line are read exactly as for a structlog
event dict). Lines that are not JSON objects are counted and skipped.

Reading and delivery
--------------------
Files are read in chunks of complete lines; a last line without its newline is
taken at the end of the file (and waited for with ``--follow``). Reading waits
while the sender holds more than :data:`MAX_AHEAD` items, so a slow or unreachable
endpoint slows the reading down rather than filling memory. With ``--state``, every
:data:`CHECKPOINT_SECONDS` second (or :data:`CHECKPOINT_LINES` lines, or
:data:`CHECKPOINT_BYTES` bytes) the position reached (per file: device, inode, and
the offset after the last whole line read) is handed to a background thread. It
takes the latest position, waits until the sender delivered everything queued until
then (``flush``), and writes it (a temporary file, ``fsync``, then ``os.replace``:
the file is always whole). At the end (or on ``SIGTERM``/``SIGINT`` with
``--follow``) the sender is closed, which delivers what is queued within its
``shutdown_timeout`` or, with a spool (``--spool-dir`` or ``BUCKET_SPOOL_DIR``),
leaves it on disk; the final position is written only if nothing was dropped.

The window, after a restart with the same ``--state``: nothing is lost, since the
state never passes a line whose items were not delivered (or spooled at exit). The
lines read after the last written position are read again: after a crash or
``kill -9``, at most about the sender's backlog (:data:`MAX_AHEAD` items) plus one
second of reading can be sent twice. When items are lost anyway (the endpoint
refused them past the sender's ``retry_budget``, without a spool), the shipper
stops, says so and exits with status 1; the state stays before them.

Rotation, truncation and the state file: see :mod:`bucket_logging._cli.logfiles`.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Final, TextIO

import orjson

from .._frontends.jsonlines import JsonLines
from .._runtime import shutdown as _shutdown
from .._tracking import wire as _wire
from .logfiles import (
    CHUNK_BYTES,
    MAX_LINE_BYTES,
    LogFile,
    NotRegularFile,
    StateFile,
    resume,
    unreadable,
)

__all__ = [
    "CHECKPOINT_BYTES",
    "CHECKPOINT_LINES",
    "CHECKPOINT_SECONDS",
    "Shipper",
]

#: A checkpoint is taken at least every this many lines ...
CHECKPOINT_LINES: Final = 20_000
#: ... or bytes read ...
CHECKPOINT_BYTES: Final = 8 * 1024 * 1024
#: ... or seconds.
CHECKPOINT_SECONDS: Final = 1.0
#: Reading waits while the sender holds more items than this (backpressure).
MAX_AHEAD: Final = 50_000
#: Seconds between looks at a followed file that has no new lines.
POLL_SECONDS: Final = 0.2
#: Files at least this large get a progress line on a terminal.
PROGRESS_FROM_BYTES: Final = 16 * 1024 * 1024


@dataclass
class _Counts:
    lines: int = 0
    tracked: int = 0
    skipped: int = 0
    unreadable: list[str] = field(default_factory=list)


class _Checkpointer:
    """Writes the latest checkpoint once the sender delivered what was queued before it.

    Reading never waits for it: a checkpoint handed over while the previous one is
    still waiting for its flush replaces any other waiting one (the latest wins).
    """

    def __init__(self, front: JsonLines, state: StateFile | None) -> None:
        self._front = front
        self._sender: Any = front.sender
        self._state = state
        self._cond = threading.Condition()
        self._latest: dict[str, dict[str, int]] | None = None
        self._closing = False
        self._drops_lock = threading.Lock()
        self._dropped = self._dropped_total()
        self.lost = 0
        self._thread: threading.Thread | None = None
        if state is not None:
            self._thread = threading.Thread(
                target=self._run, name="bucket-logging ship checkpoints", daemon=True
            )
            _shutdown.start_thread(self._thread)

    def _dropped_total(self) -> int:
        stats = getattr(self._sender, "stats", None)
        return int(stats.dropped_total) if stats is not None else 0

    def check_drops(self) -> bool:
        """True while the sender dropped nothing since the shipper started."""
        with self._drops_lock:
            total = self._dropped_total()
            if total > self._dropped:
                self.lost += total - self._dropped
                self._dropped = total
            return self.lost == 0

    def submit(self, files: dict[str, dict[str, int]]) -> None:
        """Hand over a checkpoint (never blocks)."""
        with self._cond:
            self._latest = files
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._latest is not None or self._closing)
                if self._closing:
                    return
                files, self._latest = self._latest, None
            while not self._front.flush(0.5):  # what was queued up to now: delivered?
                if self._closing:
                    return
            if self.check_drops() and self._state is not None and files is not None:
                self._state.save(files)

    def finish(self, files: dict[str, dict[str, int]] | None) -> None:
        """Close the sender (deliver or spool), then write ``files`` if nothing was lost."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()
        close = getattr(self._sender, "close", None)
        if callable(close):
            close()
        else:
            self._front.flush()
        if self.check_drops() and files is not None and self._state is not None:
            self._state.save(files)


class Shipper:
    """Reads JSON lines and tracks them through a :class:`JsonLines` front end."""

    def __init__(
        self,
        front: JsonLines,
        *,
        state: StateFile | None = None,
        progress: TextIO | None = None,
    ) -> None:
        self._front = front
        self._track = front.track
        self._state = state
        self._progress = progress
        self.counts = _Counts()
        self.stop = threading.Event()
        stats = getattr(front.sender, "stats", None)
        self._sent0 = stats.sent if stats is not None else 0
        self._rejected0 = (stats.rejected if stats is not None else 0) + _wire.rejected_calls()
        self._checkpointer = _Checkpointer(front, state)
        self._files: list[LogFile] = []
        #: Paths said to be no regular file (under ``--follow``), until one is there.
        self._said: set[str] = set()
        self._since_lines = 0
        self._since_bytes = 0
        self._moved = False  # a file was rotated or truncated since the last checkpoint
        self._since = time.monotonic()
        self._total_bytes = 0
        self._shown = 0.0

    # -- lines -------------------------------------------------------------------------

    def _feed(self, lines: Iterable[bytes]) -> None:
        loads = orjson.loads
        track = self._track
        counts = self.counts
        n = skipped = tracked = size = 0
        for line in lines:
            n += 1
            size += len(line)
            if not line or line.isspace():
                continue
            try:
                obj = loads(line)
            except orjson.JSONDecodeError:
                skipped += 1
                continue
            if type(obj) is not dict:
                skipped += 1
            elif track(obj):
                tracked += 1
        counts.lines += n
        counts.skipped += skipped
        counts.tracked += tracked
        self._since_lines += n
        self._since_bytes += size + n

    def _snapshot(self) -> dict[str, dict[str, int]]:
        return {f.path: f.entry() for f in self._files}

    def _maybe_checkpoint(self, force: bool = False) -> None:
        now = time.monotonic()
        if not (
            force
            or self._since_lines >= CHECKPOINT_LINES
            or self._since_bytes >= CHECKPOINT_BYTES
            or ((self._since_lines or self._moved) and now - self._since >= CHECKPOINT_SECONDS)
        ):
            return
        self._moved = False
        self._since_lines = self._since_bytes = 0
        self._since = now
        if self._state is not None:
            self._checkpointer.submit(self._snapshot())
        self._keep_up()
        self._show_progress(now)

    def _keep_up(self) -> None:
        """Wait while the sender holds more than :data:`MAX_AHEAD` items (backpressure)."""
        sender: Any = self._front.sender
        checkpointer = self._checkpointer
        while True:
            if not checkpointer.check_drops():  # lost: stop, the state stays behind them
                self.stop.set()
                return
            if getattr(sender, "pending", 0) <= MAX_AHEAD or self.stop.is_set():
                return
            self.stop.wait(0.01)

    # -- sources -------------------------------------------------------------------------

    def ship_stream(self, stream: BinaryIO) -> None:
        """Ship every line of ``stream`` (stdin) until its end or :attr:`stop`."""
        partial = b""
        read = getattr(stream, "read1", stream.read)
        while not self.stop.is_set():
            data = read(CHUNK_BYTES)
            if not data:
                break
            lines = (partial + data).split(b"\n")
            partial = lines.pop()
            if len(partial) > MAX_LINE_BYTES:  # not held whole: handed on (and skipped)
                lines.append(partial)
                partial = b""
            self._feed(lines)
            self._maybe_checkpoint()
        if partial:
            self._feed([partial])

    def ship_files(self, paths: list[str], follow: bool = False) -> None:
        """Ship the files, to their end or (``follow``) until :attr:`stop`."""
        waiting: list[str] = []
        for path in paths:
            old, current = resume(path, self._state)
            if old is not None:
                self._drain_old(old)
            if current is not None:
                self._files.append(current)
            elif follow:
                waiting.append(path)
            else:
                self.counts.unreadable.append(path)
        self._total_bytes = sum(os.fstat(f.fh.fileno()).st_size for f in self._files)
        if not follow:
            for f in self._files:
                self._read_to_end(f)
            return
        while not self.stop.is_set():
            progressed = False
            for path in waiting[:]:
                try:
                    self._files.append(LogFile.open(path))
                except NotRegularFile as exc:  # (a FIFO, a device): said once, waited on
                    if path not in self._said:
                        self._said.add(path)
                        print(
                            f"bucket-logging ship: {exc}; waiting for a regular file there",
                            file=sys.stderr,
                            flush=True,
                        )
                except OSError:
                    pass
                else:
                    waiting.remove(path)
                    self._said.discard(path)
            for index, f in enumerate(self._files):
                lines = f.read_lines()
                if lines:
                    self._feed(lines)
                    progressed = True
                    self._maybe_checkpoint()
                    continue
                status = f.status()
                if status == "rotated":
                    self._read_to_end(f)  # the old file's last lines
                    f.close()
                    try:
                        self._files[index] = LogFile.open(f.path)
                    except OSError:  # renamed again already: wait for it
                        self._files.remove(f)
                        waiting.append(f.path)
                    progressed = self._moved = True
                elif status == "truncated":
                    f.restart()
                    progressed = self._moved = True
            if not progressed:
                self._maybe_checkpoint()
                self.stop.wait(POLL_SECONDS)

    def _read_to_end(self, f: LogFile) -> None:
        while not self.stop.is_set():
            lines = f.read_lines()
            if not lines:
                self._feed(f.take_partial())
                return
            self._feed(lines)
            self._maybe_checkpoint()

    def _drain_old(self, old: LogFile) -> None:
        """A rotated file's remainder (found after a restart): read it to its end."""
        self._files.append(old)
        self._read_to_end(old)
        self._files.remove(old)
        old.close()

    # -- the end ---------------------------------------------------------------------------

    def finish(self) -> int:
        """Deliver (or spool) what is queued, write the last checkpoint, summarise.

        Returns the exit status: 1 when items were lost or a file could not be read.
        """
        self._clear_progress()
        if not self.stop.is_set():  # the end of the input: deliver all, however long
            while not self._front.flush(1.0) and not self.stop.is_set():
                pass  # (a signal stops waiting: the sender's shutdown deadline applies)
        self._checkpointer.finish(self._snapshot() if self._files else None)
        for f in self._files:
            f.close()
        stats = getattr(self._front.sender, "stats", None)
        sent = (stats.sent if stats is not None else 0) - self._sent0
        rejected = (
            (stats.rejected if stats is not None else 0) + _wire.rejected_calls() - self._rejected0
        )
        counts = self.counts
        lost = self._checkpointer.lost
        summary = (
            f"ship: {counts.lines} line(s) read, {sent} item(s) sent, "
            f"{counts.skipped} skipped (not JSON objects), {rejected} rejected"
        )
        marked = self._front.already_tracked
        if marked:
            summary += f", {marked} tracked by the application already (bucket_tracked)"
        if lost:
            summary += f", {lost} LOST (not delivered; the state was not advanced past them)"
        for path in counts.unreadable:
            why = unreadable(path) or path
            print(f"bucket-logging ship: cannot read {why}", file=sys.stderr)
        print(summary, file=sys.stderr, flush=True)
        return 1 if lost or counts.unreadable else 0

    # -- progress --------------------------------------------------------------------------

    def _show_progress(self, now: float) -> None:
        out = self._progress
        if out is None or self._total_bytes < PROGRESS_FROM_BYTES or now - self._shown < 0.5:
            return
        self._shown = now
        done = sum(f.offset for f in self._files)
        percent = min(100.0, 100.0 * done / self._total_bytes)
        with contextlib.suppress(OSError, ValueError):
            out.write(f"\rship: {percent:5.1f}%  {self.counts.lines:,} lines ")
            out.flush()

    def _clear_progress(self) -> None:
        if self._shown and self._progress is not None:
            with contextlib.suppress(OSError, ValueError):
                self._progress.write("\r\x1b[K")
                self._progress.flush()
