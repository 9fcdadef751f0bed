"""The files ``bucket-logging ship`` reads: positions, rotation, truncation, the state file.

A :class:`LogFile` is one open file with its identity (device and inode) and the
offset after the last whole line consumed; :class:`StateFile` records those per
path (with a checksum of the file's first bytes), written atomically; :func:`resume`
reopens a path where the state left it.

Rotation (``--follow``, like ``tail -F``): at the end of a file the shipper
compares the path's inode with the open file's. A new file there means the old one
was renamed: its last lines are read, then the new file from its start. A file
shorter than what was read means it was truncated (``copytruncate``): reading
starts over at 0 (lines written between the last read and the truncation are lost,
as with any reader of ``copytruncate``). A file truncated and written again while
the shipper was not running is recognised by its first bytes and read from 0. A
restart with ``--state`` after a rotation finds the old file by its inode in the
same directory (``app.log.1``) and reads its remainder first; a rotated file that
was compressed or deleted meanwhile cannot be read, and its unread lines are lost.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import tempfile
import zlib
from typing import BinaryIO, Final

import orjson

__all__ = [
    "CHUNK_BYTES",
    "MAX_LINE_BYTES",
    "LogFile",
    "NotRegularFile",
    "StateFile",
    "entry_problem",
    "find_rotated",
    "open_regular",
    "resume",
    "unreadable",
]

#: Bytes read at once.
CHUNK_BYTES: Final = 1024 * 1024
#: The state file recognises a file by its inode and a checksum of this many first bytes.
HEAD_BYTES: Final = 256
#: A longer line is not held whole: it is handed on in pieces (and skipped).
MAX_LINE_BYTES: Final = 16 * 1024 * 1024


class StateFile:
    """How far each file was read: ``{"files": {path: {dev, ino, offset}}}``, written atomically."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.files: dict[str, dict[str, int]] = {}
        try:
            with open(path, "rb") as fh:
                data = orjson.loads(fh.read())
            files = data.get("files") if isinstance(data, dict) else None
            if isinstance(files, dict):
                for name, entry in files.items():
                    problem = entry_problem(entry)
                    if problem is None:
                        self.files[name] = entry
                    else:  # a crafted or damaged entry: never trusted, said
                        print(
                            f"bucket-logging ship: the state file {path} has an invalid entry "
                            f"for {name!r:.200} ({problem}): ignored, that file is read from "
                            "its start",
                            file=sys.stderr,
                        )
        except FileNotFoundError:
            pass
        except (OSError, orjson.JSONDecodeError) as exc:
            raise SystemExit(
                f"bucket-logging ship: cannot read the state file {path}: {exc}"
            ) from None

    def save(self, files: dict[str, dict[str, int]]) -> None:
        """Replace the state with ``files`` (merged over the entries of other paths)."""
        self.files = {**self.files, **files}
        body = orjson.dumps({"version": 1, "files": self.files}, option=orjson.OPT_INDENT_2)
        # a new file of a random name (O_EXCL, 0600) in the same directory: a name
        # planted there (a symlink to a file of someone else's) is never followed
        directory, name = os.path.split(os.path.abspath(self.path))
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(body)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


_ENTRY: Final = ("dev", "ino", "offset")
#: The most an offset, an inode or a device number can be (a file offset is signed 64-bit).
_MAX_INT: Final = 2**63 - 1


def entry_problem(entry: object) -> str | None:
    """Why a state file's entry cannot be used (wrong types, out of range), or None."""
    if not isinstance(entry, dict):
        return f"not an object but {type(entry).__name__}"
    for name in _ENTRY:
        value = entry.get(name)
        if type(value) is not int or not 0 <= value <= _MAX_INT:
            return f"{name} must be a whole number from 0, got {value!r:.40}"
    length = entry.get("head_bytes")
    if length is not None and (type(length) is not int or not 0 <= length <= HEAD_BYTES):
        return f"head_bytes must be a whole number from 0 to {HEAD_BYTES}, got {length!r:.40}"
    head = entry.get("head")
    if length is not None and (type(head) is not int or not -1 <= head < 2**32):
        return f"head must be a CRC-32 (a whole number), got {head!r:.40}"
    return None


class NotRegularFile(OSError):
    """A path that is not a regular file (a FIFO, a device, a socket, a directory)."""


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a directory"
    return "not a regular file"


def open_regular(path: str) -> BinaryIO:
    """``path`` opened for reading if it is a regular file; else :class:`NotRegularFile`.

    Opened without blocking (a FIFO's ``open()`` would wait for a writer for good,
    deaf to SIGTERM), then checked on the open descriptor (no race with a swap).
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(
                f"{path} is not a regular file ({_kind(mode)}): ship reads regular files "
                "(pipe anything else to its stdin)"
            )
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


class LogFile:
    """One file being read: its handle, its identity and the bytes of whole lines consumed."""

    def __init__(self, path: str, fh: BinaryIO, offset: int) -> None:
        self.path = path
        self.fh = fh
        st = os.fstat(fh.fileno())
        self.dev, self.ino = st.st_dev, st.st_ino
        self.offset = offset
        self.partial = b""
        fh.seek(offset)

    @classmethod
    def open(cls, path: str, offset: int = 0) -> LogFile:
        """Open ``path`` (a regular file only: else :class:`NotRegularFile`) at ``offset``."""
        return cls(path, open_regular(path), offset)

    def head(self, length: int) -> int:
        """A checksum of the file's first ``length`` bytes (what the state recognises)."""
        try:
            return zlib.crc32(os.pread(self.fh.fileno(), length, 0))
        except OSError:
            return -1

    def entry(self) -> dict[str, int]:
        """The position for the state file: identity, offset, and the head's checksum."""
        length = min(self.offset, HEAD_BYTES)
        return {
            "dev": self.dev,
            "ino": self.ino,
            "offset": self.offset,
            "head_bytes": length,
            "head": self.head(length),
        }

    def same_head(self, entry: dict[str, int]) -> bool:
        """Whether the file still starts as it did when ``entry`` was taken.

        A file truncated and written again (``copytruncate`` while the shipper was
        not running) keeps its inode; its first bytes tell it apart.
        """
        length = entry.get("head_bytes")
        return length is None or self.head(length) == entry.get("head")

    def read_lines(self) -> list[bytes]:
        """The next complete lines; [] at the end of the file for now.

        A line longer than :data:`MAX_LINE_BYTES` is handed on in pieces (not JSON:
        each is counted and skipped) rather than held in memory whole.
        """
        while True:
            data = self.fh.read(CHUNK_BYTES)
            if not data:
                return []
            if self.partial:
                data = self.partial + data
            lines = data.split(b"\n")
            self.partial = lines.pop()
            self.offset += len(data) - len(self.partial)
            if lines:
                return lines
            if len(self.partial) > MAX_LINE_BYTES:
                return self.take_partial()

    def take_partial(self) -> list[bytes]:
        """The last line, without its newline, at the end of the file."""
        line, self.partial = self.partial, b""
        self.offset += len(line)
        return [line] if line else []

    def status(self) -> str:
        """``same``, ``rotated`` (another file at the path), ``truncated`` or ``missing``."""
        try:
            st = os.stat(self.path)
        except OSError:
            return "missing"
        if (st.st_dev, st.st_ino) != (self.dev, self.ino):
            return "rotated"
        if st.st_size < self.offset + len(self.partial):
            return "truncated"
        return "same"

    def restart(self) -> None:
        self.fh.seek(0)
        self.offset = 0
        self.partial = b""

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.fh.close()


def find_rotated(path: str, dev: int, ino: int) -> str | None:
    """The file beside ``path`` that has inode ``ino`` (``path`` renamed by rotation).

    Only a regular file (not a symlink) whose name begins with the stem of ``path``'s
    (``app`` of ``app.log``: ``app.log.1``, ``app.log-20260101``, ``app.1.log``) is
    taken: a state file naming another file's inode never has that file read.
    """
    directory = os.path.dirname(path) or "."
    base = os.path.basename(path)
    stem = base.split(".", 1)[0] or base
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if (
                    entry.inode() == ino
                    and entry.name != base
                    and entry.name.startswith(stem)
                    and entry.name[len(stem) : len(stem) + 1] in (".", "-", "_")
                    and entry.is_file(follow_symlinks=False)
                    and entry.stat(follow_symlinks=False).st_dev == dev
                ):
                    return entry.path
    except OSError:
        return None
    return None


def unreadable(path: str) -> str:
    """Why ``path`` cannot be read (for the summary), or "" when it can be now."""
    try:
        open_regular(path).close()
    except NotRegularFile as exc:
        return str(exc)
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    return ""


def resume(path: str, state: StateFile | None) -> tuple[LogFile | None, LogFile | None]:
    """Open ``path`` where ``state`` left it: (a rotated remainder or None, the file).

    The file is None when it cannot be opened (it does not exist yet, or is not
    readable); a remainder that cannot be opened is None too.
    """
    entry = state.files.get(path) if state is not None else None
    try:
        current: LogFile | None = LogFile.open(path)
    except OSError:
        current = None
    if entry is None:
        return None, current
    if current is not None and (current.dev, current.ino) == (entry["dev"], entry["ino"]):
        size = os.fstat(current.fh.fileno()).st_size
        if size >= entry["offset"] and current.same_head(entry):
            current.fh.seek(entry["offset"])
            current.offset = entry["offset"]
        return None, current  # (shorter, or other first bytes: truncated, from the start)
    old_path = find_rotated(path, entry["dev"], entry["ino"])
    if old_path is None:
        return None, current
    try:
        old = LogFile.open(old_path, entry["offset"])
    except OSError:
        return None, current
    old.path = path  # its lines are the path's: the state entry stays the path's
    return old, current
