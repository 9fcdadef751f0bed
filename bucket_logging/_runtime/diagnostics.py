"""The library's own voice: rate-limited diagnostics on the ``bucket_logging`` logger.

Everything the library has to say (rejected input, dropped items, delivery
failures) goes through :func:`report`. Messages are plain lines without
tracebacks, limited per topic so that a bad log statement in a hot loop cannot
flood the logs, and scrubbed of every tracking key the process has registered.

This module also knows what must never be tracked: records of the library's own
logger and of its HTTP client (``httpx``, ``httpcore``), and anything logged from a
sender's own thread. Front ends ask :func:`is_internal` before doing any work.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import quote

from .._said import LOGGER_NAME, PREFIX, logger, prefixed
from .state import state as _state

__all__ = [
    "INTERNAL_LOGGER_PREFIXES",
    "INTERNAL_ROOTS",
    "LOGGER_NAME",
    "internal_logger",
    "internal_names",
    "internal_threads",
    "is_internal",
    "is_loopback",
    "logger",
    "named_locally",
    "outside_text",
    "redact",
    "register_secret",
    "report",
    "warn_if_insecure",
    "warn_once",
    "when_logging_is_configured",
]

#: Loggers whose records are never tracked.
INTERNAL_LOGGER_PREFIXES: Final = ("bucket_logging", "httpx", "httpcore")

#: Top-level names of :data:`INTERNAL_LOGGER_PREFIXES`, for a set look-up.
INTERNAL_ROOTS: Final = frozenset(INTERNAL_LOGGER_PREFIXES)

#: Thread ids of the senders' background threads; their records are never tracked.
internal_threads: Final = _state.internal_threads

#: Every registered key, with the forms it takes in a URL (percent-encoded).
_secrets: Final = _state.secrets
_REDACTED: Final = "<tracking-key>"
_PERCENT: Final = re.compile("%[0-9A-F]{2}")
_MIN_SECRET: Final = 8

#: At most one message per topic per this many seconds; the rest are counted.
RATE_LIMIT_SECONDS: Final = 10.0

#: Per topic: when a message last passed, how many were suppressed since, and that
#: message (for the summary at exit); guarded by ``state.reports_lock``.
_last: Final = _state.reports
#: The items the suppressed messages of a topic were about (``report(items=...)``).
_suppressed_items: Final = _state.suppressed_items
#: Past this many topics, a new one shares the limit of its kind (the part before ``|``).
_MAX_TOPICS: Final = 1024
_VALUES: Final = re.compile(r"'[^']*'|\"[^\"]*\"|\d+")


def is_internal(logger_name: str, thread_id: int | None) -> bool:
    """Whether a record from ``logger_name`` on ``thread_id`` is the library's own."""
    return thread_id in internal_threads or logger_name.partition(".")[0] in INTERNAL_ROOTS


#: :func:`internal_logger`'s answers so far, by logger name (applications have a
#: bounded set of loggers; past :data:`_NAMES_CACHED` names nothing more is kept).
internal_names: Final = _state.internal_names
_NAMES_CACHED: Final = 4096


def internal_logger(logger_name: object) -> bool:
    """Whether ``logger_name`` is one of the library's own (or not a name at all).

    The hot paths read :data:`internal_names` first and call this on a miss.
    """
    internal = type(logger_name) is not str or (logger_name.partition(".")[0] in INTERNAL_ROOTS)
    if type(logger_name) is str and len(internal_names) < _NAMES_CACHED:
        internal_names[logger_name] = internal
    return internal


def register_secret(secret: str) -> None:
    """Remember a tracking key so that :func:`redact` removes it from every message.

    Keys shorter than 8 characters are not real tracking keys (Bucket's are 24) and
    would mangle ordinary words, so they are not registered.
    """
    if len(secret) >= _MIN_SECRET:
        forms: tuple[str, ...] = (
            secret,
            quote(secret),
            quote(secret, safe=""),
            urllib.parse.quote_plus(secret),
        )
        # as an error shows a refused key: its repr, its bytes' repr, without its blanks
        escaped = (repr(secret)[1:-1], repr(secret.encode("utf-8", "replace"))[2:-1])
        forms += tuple(f for f in (*escaped, secret.strip()) if len(f) >= _MIN_SECRET)
        for form in forms:
            _secrets.add(form)
            _secrets.add(_PERCENT.sub(lambda m: m.group(0).lower(), form))


def redact(text: str) -> str:
    """Replace every registered tracking key in ``text`` (also as a URL encodes it)."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, _REDACTED)
    return text


#: Characters that would let outside text forge log lines or drive a terminal: C0
#: and C1 controls, DEL, line separators and bidirectional overrides (U+202E...).
_CONTROLS: Final = {
    code: f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    for code in (
        *range(0x20),
        *range(0x7F, 0xA0),
        0x200E,
        0x200F,
        0x2028,
        0x2029,
        *range(0x202A, 0x202F),
        *range(0x2066, 0x206A),
    )
}
_CONTROLS.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})
#: The same characters as JSON escapes, for text that must stay valid JSON.
_JSON_CONTROLS: Final = {code: f"\\u{code:04x}" for code in _CONTROLS}


def escape_controls(text: str, *, json: bool = False) -> str:
    """``text`` with control and bidi characters written as escapes (``\\n``, ``\\x1b``).

    With ``json``, as JSON escapes (``\\u001b``, ``\\u202e``): encoded JSON stays valid
    (a JSON encoder escapes C0 controls already, but not DEL, C1 or bidi characters).
    """
    return text.translate(_JSON_CONTROLS if json else _CONTROLS)


def outside_text(text: str, limit: int = 300) -> str:
    """Text from outside (a server's answer, a spool row) made fit for a log line.

    The keys are redacted first, then control characters escaped, then the text is cut
    to ``limit`` characters: cutting first could leave part of a key behind.
    """
    text = escape_controls(redact(text))
    return text if len(text) <= limit else text[: limit - 3] + "..."


#: Host names that are this machine's loopback interface (Debian's /etc/hosts names).
_LOOPBACK_NAMES: Final = frozenset(
    {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}
)
_warned: Final = _state.warned


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine's loopback interface: ``localhost`` (and its
    /etc/hosts aliases), 127.0.0.0/8, ``::1`` (bracketed or not).

    The one loopback check: it decides whether the relay may run without a token and
    whether a plain ``http://`` URL is worth a warning. Names under ``.localhost`` are
    loopback names too (RFC 6761: resolvers answer them with the loopback address);
    any other name is taken as reaching the network.
    """
    host = host.strip("[]").lower().rstrip(".")
    if host in _LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def named_locally(host: str | None, bound: str) -> bool:
    """Whether a request whose ``Host`` header is ``host`` may be answered by a local
    service listening on ``bound``: always when it listens beyond loopback (its user
    chose to share it); else when ``host`` names an address or a loopback name, not a
    web site's name rebound to 127.0.0.1 (DNS rebinding). No ``Host`` (HTTP/1.0) is no
    browser: answered.

    The one Host rule: ``serve``'s every path and the relay's.
    """
    if not is_loopback(bound) or host is None:
        return True
    try:
        name = urllib.parse.urlsplit(f"//{host.strip()}").hostname or ""
    except ValueError:
        return False
    if is_loopback(name):
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def warn_if_insecure(url: str, verify: object) -> None:
    """Warn once per process when the tracking key would cross the network unprotected:
    a plain ``http://`` URL to a host that is not this machine, or ``verify=False``."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    topics = []
    if parts.scheme == "http" and not is_loopback(host):
        topics.append(
            (
                "insecure-http",
                f"bucket_logging: base_url {escape_controls(url)} is plain http: the tracking "
                "key and the tracked data cross the network unencrypted (use https://)",
            )
        )
    if verify is False and not is_loopback(host):
        topics.append(
            (
                "insecure-verify",
                "bucket_logging: verify=False: TLS certificates are not checked, so anyone on "
                f"the path to {escape_controls(host)} can read the tracking key",
            )
        )
    for topic, text in topics:
        warn_once(topic, "%s", text)


def warn_once(topic: str, message: str, *args: object) -> None:
    """:func:`report` a message once per process (until the state's reset)."""
    with _state.reports_lock:
        if topic in _warned:
            return
        _warned.add(topic)
    report(topic, message, *args)


class _ThreadFilter(logging.Filter):
    """Drops the HTTP client's records emitted on a sender's thread.

    httpx logs every request at INFO; those records would reach the application's
    handlers (and carry the tracking key in the URL). Records of the application's
    own httpx use, on its own threads, pass untouched.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        # the emitting thread, not record.thread: that is None with logThreads off
        return threading.get_ident() not in internal_threads


_thread_filter: Final = _ThreadFilter()

# Filters are not inherited: every logger the HTTP stack and asyncio log on is named.
_SILENCED: Final = (
    "httpx",
    "httpcore",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
    "hpack",
    "asyncio",
)


def silence_http_client_logs() -> None:
    """Install the filter on the HTTP client's and asyncio's loggers (idempotent)."""
    for name in _SILENCED:
        log = logging.getLogger(name)
        if _thread_filter not in log.filters:
            log.addFilter(_thread_filter)


def report(
    topic: str, message: str, *args: Any, level: int = logging.WARNING, items: int = 0
) -> None:
    """Log ``message % args`` on the ``bucket_logging`` logger, rate-limited per topic.

    Never raises. When messages of a topic were suppressed, the next one that passes
    says how many; ``items`` is how many items the message is about (a drop), so that
    the suppressed ones are summed up rather than read as the shown one's count.
    """
    try:
        if not logger.isEnabledFor(level):
            return
        now = time.monotonic()
        with _state.reports_lock:
            if topic not in _last and len(_last) >= _MAX_TOPICS:
                topic = topic.partition("|")[0]
            last, suppressed, said = _last.get(topic, (-RATE_LIMIT_SECONDS, 0, ""))
            if now - last < RATE_LIMIT_SECONDS:
                _last[topic] = (last, suppressed + 1, said)
                if items:
                    _suppressed_items[topic] = _suppressed_items.get(topic, 0) + items
                return
            _last[topic] = (now, 0, said)
            held = _suppressed_items.pop(topic, 0)
        text = escape_controls(redact(message % args if args else message))
        with _state.reports_lock:  # the message shown, for the summary at exit
            entry = _last.get(topic)
            if entry is not None and entry[0] == now:
                _last[topic] = (now, entry[1], text)
        if suppressed:
            text += f" ({suppressed} similar message(s){_in_all(held)} suppressed)"
        logger.log(level, "%s", prefixed(text))
    except Exception:  # a diagnostic must never break the caller
        pass


def info(message: str, *args: Any) -> None:
    """Log ``message % args`` at INFO on the ``bucket_logging`` logger, not rate-limited
    (the start-up line, the ``debug`` summaries); keys redacted. Never raises."""
    try:
        if logger.isEnabledFor(logging.INFO):
            text = escape_controls(redact(message % args if args else message))
            logger.info("%s", prefixed(text))
    except Exception:  # a diagnostic must never break the caller
        pass


def configuring_logging() -> bool:
    """Whether this thread is inside ``logging.config.dictConfig`` or ``fileConfig``
    (both hold the ``logging`` module's lock while they build handlers and loggers)."""
    try:
        owned = getattr(getattr(logging, "_lock", None), "_is_owned", None)
        return bool(owned()) if callable(owned) else False
    except Exception:  # an unknown logging: say things at once
        return False


def when_logging_is_configured(say: Callable[[], None]) -> None:
    """Call ``say`` now or, inside ``dictConfig``/``fileConfig``, once they are done.

    A handler built by ``dictConfig`` exists before the loggers and the root's handlers
    it is configured with: a line said then goes nowhere (the root is still at WARNING,
    without handlers). So the line waits on a thread of its own for the configuration
    to release ``logging``'s lock, and is said through the handlers it set up. The
    thread is not a daemon: a script that exits at once still says it. Never raises.
    """
    if not configuring_logging():
        say()
        return

    def later() -> None:
        try:
            with logging._lock:  # type: ignore[attr-defined]  # (released by the configuration)
                pass
        except Exception:  # pragma: no cover - an unknown logging
            pass
        say()

    try:
        threading.Thread(target=later, name="bucket-logging start-up line").start()
    except Exception:  # (no thread at interpreter exit: say it now)
        say()


def _in_all(items: int) -> str:
    return f" about {items} item(s) in all" if items else ""


def problem_topic(kind: str, logger_name: str, template: object, problem: str) -> str:
    """The rate-limit topic of one distinct problem: its kind, the log statement (logger
    and template) and the problem's words without the values (quoted text, numbers), so
    that a hot loop's varying values share a limit but different problems do not."""
    shape = _VALUES.sub("_", problem)[:200]
    return f"{kind}|{logger_name}|{str(template)[:200]}|{shape}"


def report_suppressed() -> None:
    """Say what the rate limits suppressed and no later message reported (at exit): one
    line per topic, with the last message of it that was shown. Never raises."""
    try:
        with _state.reports_lock:
            pending = [
                (n, said, _suppressed_items.pop(topic, 0))
                for topic, (_, n, said) in _last.items()
                if n
            ]
            for topic, (last, _, said) in list(_last.items()):
                _last[topic] = (last, 0, said)
        for count, said, items in pending:
            if items:  # (the shown message's own count is not theirs)
                text = f"{count} more message(s) about {items} item(s) in all suppressed, "
                text += "like this one shown earlier: "
            else:
                text = f"{count} more message(s) like this one suppressed: "
            text += said.removeprefix(PREFIX)[:300]
            logger.warning("%s", prefixed(text))
    except Exception:  # a diagnostic must never break the caller
        pass
