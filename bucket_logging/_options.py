"""Every option of a sender, in one table: name, type, default, variable, check, doc.

:data:`OPTIONS` is the one place where an option's default is spelled (the
constants below), where its ``BUCKET_*`` variable is named, and where its value is
checked. Everything else is derived from it:

* :class:`~bucket_logging.BulkSender`'s keyword defaults reference the constants
  (``flush_interval: float = FLUSH_INTERVAL``), so the signature stays explicit and
  typed; a test asserts that signature and table agree;
* :func:`resolve` applies the one rule to every option: **the argument, else the
  ``BUCKET_*`` variable, else the ``REFLAG_*`` variable, else the default**. An
  argument left at its default counts as not given (so ``BucketHandler()`` in a
  container reads ``BUCKET_FLUSH_INTERVAL``); a bad value of a variable is a
  :class:`~bucket_logging.ConfigurationError` that names the variable;
* the settings table of ``docs/configuration.md`` is :func:`markdown_table`
  (a test keeps the page in step).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import httpx

from ._bounds import CLAMP, REFUSE, Bounds
from ._exceptions import ConfigurationError

__all__ = [
    "BACKOFF_BASE",
    "BACKOFF_MAX",
    "CLAMP",
    "DEDUPE_WINDOW",
    "FLUSH_INTERVAL",
    "MAX_BATCH_ITEMS",
    "MAX_CONCURRENT_REQUESTS",
    "MAX_QUEUE_BYTES",
    "MAX_QUEUE_ITEMS",
    "MAX_URL_CHARS",
    "OPTIONS",
    "REFUSE",
    "REQUEST_TIMEOUT",
    "RETRY_BUDGET",
    "SHUTDOWN_TIMEOUT",
    "SPOOL_MAX_AGE",
    "SPOOL_MAX_BYTES",
    "TRACKING_OPTIONS",
    "Bounds",
    "Option",
    "attributes_from_env",
    "given",
    "markdown_table",
    "resolve",
    "resolve_all",
]

# --------------------------------------------------------------------------- defaults
# (spelled here only: the table, BulkSender's signature, SenderConfig and RetryPolicy
# reference these names)

FLUSH_INTERVAL: Final = 1.0
MAX_BATCH_ITEMS: Final = 15_000
MAX_QUEUE_ITEMS: Final = 200_000
MAX_QUEUE_BYTES: Final = 64 * 1024 * 1024
MAX_CONCURRENT_REQUESTS: Final = 4
REQUEST_TIMEOUT: Final = 10.0
RETRY_BUDGET: Final = 300.0
BACKOFF_BASE: Final = 0.5
BACKOFF_MAX: Final = 30.0
DEDUPE_WINDOW: Final = 60.0
SHUTDOWN_TIMEOUT: Final = 5.0
#: 256 MiB, over a million typical items.
SPOOL_MAX_BYTES: Final = 256 * 1024 * 1024
#: 7 days.
SPOOL_MAX_AGE: Final = 7 * 24 * 3600.0

_TRUE: Final = frozenset({"1", "true", "on", "yes"})
_FALSE: Final = frozenset({"0", "false", "off", "no"})

# --------------------------------------------------------------------------- checks
# Each takes the value and where it came from (the option's name, or the variable's)
# and returns the value to use, or raises ConfigurationError naming that source.


def _bad(source: str, expected: str, value: object) -> ConfigurationError:
    return ConfigurationError(f"{source} must be {expected}, got {value!r:.60}")


def _number(value: object, source: str, kind: type[int] | type[float]) -> float:
    """``value`` as a number: ints and floats as given, numeric strings (INI files and
    environment variables give them) converted; anything else a ConfigurationError."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(int(value.strip())) if kind is int else float(value.strip())
        except ValueError:
            number = float("nan")
    else:
        number = float("nan")
    if math.isnan(number) or (kind is int and not number.is_integer()):
        raise _bad(source, "a whole number" if kind is int else "a number", value)
    return number


def _positive(number: float, source: str) -> float:
    if not number > 0:
        raise ConfigurationError(f"{source} must be positive, got {number!r}")
    return number


def check_float(value: object, source: str) -> float:
    """A number (a numeric string too)."""
    return _number(value, source, float)


def check_positive_float(value: object, source: str) -> float:
    """A number above zero."""
    return _positive(_number(value, source, float), source)


def check_positive_int(value: object, source: str) -> int:
    """A whole number above zero."""
    return int(_positive(_number(value, source, int), source))


def check_bool(value: object, source: str) -> bool:
    """``True``/``False``, or ``1``/``true``/``on``/``yes`` and ``0``/``false``/``off``/``no``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise _bad(source, "true or false (1/true/on/yes or 0/false/off/no)", value)


def check_api(value: object, source: str) -> str | None:
    """``"tracking"`` or ``"runtime"`` (None: chosen by the key's prefix)."""
    if value is None:
        return None
    text = value.strip().lower() if isinstance(value, str) else value
    if text not in ("tracking", "runtime"):
        raise _bad(source, "'tracking' or 'runtime'", value)
    return str(text)


#: The longest base URL taken (the API's hosts are about 30 characters).
MAX_URL_CHARS: Final = 2048


def check_url(value: object, source: str) -> str | None:
    """An ``http(s)://`` URL (None: the API's host), without its trailing slash: at
    most :data:`MAX_URL_CHARS` printable ASCII characters, with a host, that httpx
    can parse."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise _bad(source, "an http(s) URL", value)
    if len(value) > MAX_URL_CHARS:
        raise ConfigurationError(
            f"{source} must be an http(s) URL of at most {MAX_URL_CHARS} characters, "
            f"got {len(value)} characters"
        )
    text = value.strip()
    if any(c.isspace() or not c.isprintable() or not c.isascii() for c in text):
        raise _bad(source, "an http(s) URL without spaces, control or non-ASCII characters", value)
    try:
        host = httpx.URL(text).host
    except Exception as exc:  # httpx.InvalidURL, and what its parser raises
        raise _bad(source, f"an http(s) URL ({exc})", value) from None
    if not host:
        raise _bad(source, "an http(s) URL with a host", value)
    return text.rstrip("/")


def check_key(value: object, source: str) -> str | None:
    """A string (checked further once the sender knows it is online); never shown."""
    if value is None or isinstance(value, str):
        return value
    raise ConfigurationError(f"{source} must be a string, not {type(value).__name__}")


def _path(value: object, source: str, what: str) -> str | None:
    """A filesystem path as a str (None or empty: off), else a ConfigurationError."""
    if value is None or value == "":
        return None
    if isinstance(value, (str, os.PathLike)):
        path = os.fspath(value)
        if isinstance(path, str):
            return path
    raise _bad(source, what, value)


def check_path(value: object, source: str) -> str | None:
    """A directory path (None or empty: off)."""
    return _path(value, source, "a directory path")


def check_file(value: object, source: str) -> str | None:
    """A file path (None or empty: off)."""
    return _path(value, source, "a file path")


def check_callable(value: object, source: str) -> object:
    """A callable, or None."""
    if value is not None and not callable(value):
        raise _bad(source, "a callable or None", value)
    return value


def check_attributes(value: object, source: str) -> dict[str, Any] | None:
    """A dict of attributes with string keys, or its JSON text (None or empty: none)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise _bad(source, "a JSON object of attributes", value) from None
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise _bad(source, "a dict of attributes with string keys", value)
    return dict(value) or None


#: ``BUCKET_ATTRIBUTES_<NAME>=value``: one attribute each (the name in lower case).
ATTRIBUTE_PREFIX: Final = "BUCKET_ATTRIBUTES_"


def attributes_from_env(env: Mapping[str, str]) -> dict[str, Any] | None:
    """The every-event attributes of the environment: ``BUCKET_ATTRIBUTES`` (a JSON
    object), then one ``BUCKET_ATTRIBUTES_<NAME>=value`` per attribute (a string,
    ``<NAME>`` in lower case; it wins over the JSON's). None when neither is set."""
    text = env.get("BUCKET_ATTRIBUTES")
    found = check_attributes(text, "BUCKET_ATTRIBUTES") if text and text.strip() else None
    attributes = dict(found or {})
    for variable in sorted(env):
        if variable.startswith(ATTRIBUTE_PREFIX) and len(variable) > len(ATTRIBUTE_PREFIX):
            attributes[variable[len(ATTRIBUTE_PREFIX) :].lower()] = env[variable]
    return attributes or None


def check_any(value: object, source: str) -> object:
    """Taken as given (checked where it is used)."""
    return value


# --------------------------------------------------------------------------- bounds
# (see bucket_logging._bounds)


def _seconds(low: float, high: float, below: str = CLAMP, above: str = CLAMP) -> Bounds:
    return Bounds(low, high, below, above, "s")


def _count(low: float, high: float, below: str = REFUSE, above: str = CLAMP) -> Bounds:
    return Bounds(low, high, below, above, "")


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Option:
    """One option of a sender (a :class:`~bucket_logging.BulkSender` keyword).

    Attributes:
        name: the keyword.
        type: its type, as the signature spells it.
        default: the value when neither the argument nor a variable sets it.
        env: its ``BUCKET_*`` variable, or None for an option only Python can give
            (a callable, a transport).
        reflag_env: Reflag's SDKs' variable, read after ``env``, or None.
        check: turns a value (an argument or a variable's text) into the value used,
            or raises :class:`~bucket_logging.ConfigurationError` naming its source.
        doc: one line for the settings table.
        shown_default: the default as the settings table shows it, when the value
            alone says too little.
        read_env: reads the option's value from the whole environment (None: unset),
            for an option of several variables; None: ``env`` alone is read.
        bounds: the range a number must lie in, and what happens outside it
            (None: not a number).
    """

    name: str
    type: str
    default: Any
    env: str | None
    reflag_env: str | None
    check: Callable[[object, str], Any]
    doc: str
    shown_default: str | None = None
    read_env: Callable[[Mapping[str, str]], Any] | None = None
    bounds: Bounds | None = None


def _o(
    name: str,
    type_: str,
    default: Any,
    check: Callable[[object, str], Any],
    doc: str,
    *,
    env: str | bool | None = True,
    reflag: str | None = None,
    shown: str | None = None,
    read_env: Callable[[Mapping[str, str]], Any] | None = None,
    bounds: Bounds | None = None,
) -> Option:
    variable = f"BUCKET_{name.upper()}" if env is True else (env or None)
    return Option(name, type_, default, variable, reflag, check, doc, shown, read_env, bounds)


#: Every option of a sender, in the order of :class:`~bucket_logging.BulkSender`'s signature.
OPTIONS: Final[tuple[Option, ...]] = (
    _o("tracking_key", "str | None", None, check_key,
       "a Reflag key (`sec_...`, `pub_...`) or a Bucket tracking key; never logged",
       env="BUCKET_TRACKING_KEY", reflag="REFLAG_SECRET_KEY",
       shown="none: tracking is off (said once at WARNING; calls are counted as offline)"),
    _o("base_url", "str | None", None, check_url,
       "the API's base URL (EU data residency: `https://front-eu.reflag.com`, "
       "in Python `bucket_logging.REFLAG_EU_BASE_URL`)",
       env="BUCKET_TRACKING_URL", reflag="REFLAG_API_BASE_URL",
       shown="the API's host: `https://front.reflag.com` (runtime) or "
       "`https://tracking.bucket.co` (tracking)"),
    _o("offline", "bool", False, check_bool,
       "validate and count items, send nothing (no key needed)", reflag="REFLAG_OFFLINE"),
    _o("require_key", "bool", False, check_bool,
       "without a key (and not offline), raise `ConfigurationError` instead of staying off"),
    _o("api", "str | None", None, check_api,
       "`runtime` (Reflag's Runtime API, the key in a Bearer header) or `tracking` "
       "(the key in the path)", shown="by the key: `sec_`/`pub_` → `runtime`, else `tracking`"),
    _o("flush_interval", "float", FLUSH_INTERVAL, check_positive_float,
       "seconds between sends of a partial batch",
       bounds=_seconds(0.01, 3600)),
    _o("max_batch_items", "int", MAX_BATCH_ITEMS, check_positive_int,
       "items per request (bodies also stay ≤ 2,000,000 bytes)",
       bounds=_count(1, 100_000)),
    _o("max_queue_items", "int", MAX_QUEUE_ITEMS, check_positive_int,
       "items held in memory; beyond, new items are dropped and counted",
       bounds=_count(1, 100_000_000)),
    _o("max_queue_bytes", "int", MAX_QUEUE_BYTES, check_positive_int,
       "encoded bytes held in memory (same)", shown="`67108864` (64 MiB)",
       bounds=_count(1, 16 * 1024**3)),
    _o("max_concurrent_requests", "int", MAX_CONCURRENT_REQUESTS, check_positive_int,
       "bulk requests in flight at once", bounds=_count(1, 64)),
    _o("request_timeout", "float", REQUEST_TIMEOUT, check_positive_float,
       "seconds for one HTTP request", bounds=_seconds(0.1, 600)),
    _o("retry_budget", "float", RETRY_BUDGET, check_float,
       "seconds one batch is retried before it is dropped (or left in the spool)",
       bounds=_seconds(0, 30 * 86400, below=REFUSE)),
    _o("backoff_base", "float", BACKOFF_BASE, check_float,
       "the first retry delay in seconds (doubles each time, with jitter)",
       bounds=_seconds(0.01, 3600, below=REFUSE)),
    _o("backoff_max", "float", BACKOFF_MAX, check_float,
       "the cap of one retry delay in seconds (`Retry-After` is honoured)",
       bounds=_seconds(0.01, 3600, below=REFUSE)),
    _o("dedupe_window", "float", DEDUPE_WINDOW, check_float,
       "seconds within which identical user/company updates are sent once; `0` = off",
       bounds=_seconds(0, 86400, below=REFUSE)),
    _o("shutdown_timeout", "float", SHUTDOWN_TIMEOUT, check_float,
       "seconds the exit (and `close()`) may spend delivering the queue",
       bounds=_seconds(0, 3600, below=REFUSE)),
    _o("transport", "httpx.AsyncBaseTransport | None", None, check_any,
       "an httpx transport, e.g. `httpx.MockTransport` in tests", env=None),
    _o("verify", "bool | str | ssl.SSLContext", True, check_any,
       "TLS certificate verification (httpx's `verify`)", env=None),
    _o("on_error", "Callable[[DeliveryError], object] | None", None, check_callable,
       "called on the sender's thread with a `DeliveryError` when items are dropped",
       env=None),
    _o("before_send", "Callable[[dict[str, Any]], dict[str, Any] | None] | None", None,
       check_callable,
       "sees each item (a dict) before it is queued: return it (changed or not), or "
       "`None` to drop it (`stats.dropped['before_send']`)", env=None),
    _o("attributes", "dict[str, Any] | None", None, check_attributes,
       "attributes added to every tracked event (environment, release, region...); the "
       "event's own win; also `BUCKET_ATTRIBUTES_<NAME>=value`, one each",
       shown="none", read_env=attributes_from_env),
    _o("debug", "bool", False, check_bool,
       "log each request's summary (items, bytes, status) at INFO on `bucket_logging`"),
    _o("spool_dir", "str | os.PathLike[str] | None", None, check_path,
       "a directory for the on-disk spool: items survive crashes and outages",
       shown="off"),
    _o("spool_max_bytes", "int", SPOOL_MAX_BYTES, check_positive_int,
       "the spool's size limit in bytes (oldest batches dropped beyond)",
       shown="`268435456` (256 MiB)", bounds=_count(1, 1024**4)),
    _o("spool_max_age", "float", SPOOL_MAX_AGE, check_positive_float,
       "seconds a batch is kept in the spool", shown="`604800.0` (7 days)",
       bounds=_seconds(1, 366 * 86400)),
    _o("handle_sigterm", "bool", True, check_bool,
       "deliver the queue on SIGTERM when it has its default disposition"),
)  # fmt: skip

#: The options of the tracking path (every front end and ``track()``), not of a sender.
TRACKING_OPTIONS: Final[tuple[Option, ...]] = (
    _o("tracking_plan", "str | os.PathLike[str] | None", None, check_file,
       "a tracking plan (YAML or JSON): every call is checked against it "
       "([Tracking plan](tracking-plan.md)); needs the `plan` extra", shown="off"),
)  # fmt: skip

#: The table by option name (the sender's and the tracking path's).
BY_NAME: Final[Mapping[str, Option]] = {o.name: o for o in OPTIONS + TRACKING_OPTIONS}
_SENDER_NAMES: Final = frozenset(option.name for option in OPTIONS)


def _given(option: Option, value: object) -> bool:
    """Whether an argument sets the option: not None, and not left at its default."""
    if value is None or (isinstance(value, str) and not value):
        return False
    try:
        return bool(value != option.default) or type(value) is not type(option.default)
    except Exception:  # an odd object's comparison: it was given
        return True


def given(arguments: Mapping[str, object]) -> dict[str, object]:
    """The arguments that set their option (not None, not left at the default; see
    :func:`resolve`), by option name; unknown names are kept (and refused later)."""
    return {
        name: value
        for name, value in arguments.items()
        if name not in BY_NAME or _given(BY_NAME[name], value)
    }


def resolve(name: str, value: object = None, environ: Mapping[str, str] | None = None) -> Any:
    """One option's value by the one rule: the argument, else ``BUCKET_*``, else
    ``REFLAG_*``, else the default; checked (a bad variable's error names it).

    An empty variable counts as unset.
    """
    option = BY_NAME[name]
    if _given(option, value):
        return _checked(option, value, name)
    env = os.environ if environ is None else environ
    if option.read_env is not None:
        found = option.read_env(env)
        return _checked(option, option.default if found is None else found, name)
    for variable in (option.env, option.reflag_env):
        if variable is not None:
            text = env.get(variable)
            if text is not None and text.strip():
                return _checked(option, text, variable)
    return _checked(option, option.default, name)


def _checked(option: Option, value: object, source: str) -> Any:
    """The option's check, then its bounds (both name ``source``)."""
    checked = option.check(value, source)
    if option.bounds is not None:
        return option.bounds.apply(checked, source)
    return checked


def resolve_all(arguments: Mapping[str, object]) -> dict[str, Any]:
    """Every option's value (see :func:`resolve`); ``arguments`` by option name."""
    unknown = set(arguments) - _SENDER_NAMES
    if unknown:
        raise ConfigurationError(f"unknown sender option(s): {', '.join(sorted(unknown))}")
    return {option.name: resolve(option.name, arguments.get(option.name)) for option in OPTIONS}


def _shown(option: Option) -> str:
    if option.shown_default is not None:
        return option.shown_default
    return f"`{option.default!r}`"


def markdown_table() -> str:
    """The settings table of ``docs/configuration.md`` (Markdown), from :data:`OPTIONS`."""
    rows = [
        "| option | type | default | variable | range | meaning |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for option in OPTIONS + TRACKING_OPTIONS:
        variables = " ".join(
            f"`{v}`" if i == 0 else f"(else `{v}`)"
            for i, v in enumerate(v for v in (option.env, option.reflag_env) if v)
        )
        # (an HTML code element: a bare | would end the cell on GitHub, and an escaped one
        # shows its backslash on the site; &#124; is a | on both)
        type_ = option.type.replace("|", "&#124;")
        rows.append(
            f"| `{option.name}` | <code>{type_}</code> | {_shown(option)} | "
            f"{variables or '— (Python only)'} | "
            f"{option.bounds.table_text() if option.bounds else '—'} | {option.doc} |"
        )
    return "\n".join(rows) + "\n"
