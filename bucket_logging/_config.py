"""A sender's configuration: one immutable, validated object (see :class:`SenderConfig`).

:class:`~bucket_logging.BulkSender` takes its options as keywords, as before; they
are checked once here and kept in a frozen :class:`SenderConfig` that every part of
the sender reads (the batch queue's bounds, the retry policy, the spool's limits).

Two APIs take the same items: Bucket's tracking API (the key in the path,
``{base}/{key}/bulk``) and Reflag's Runtime API (``{base}/bulk``, the key in an
``Authorization: Bearer`` header). The key's prefix chooses (``sec_``/``pub_``:
Runtime API), ``api=`` overrides; the URLs and headers of the chosen API are
derived here once, for the delivery layer.

Each setting is resolved on its own: the argument, else the ``BUCKET_*`` variable,
else the ``REFLAG_*`` variable, else the default (for the URL: the chosen API's host).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Generic, TypeVar, overload

from ._exceptions import ConfigurationError
from ._retry import RetryPolicy
from ._shutdown import sigterm_enabled
from ._version import __version__

__all__ = [
    "API_RUNTIME",
    "API_TRACKING",
    "DEFAULT_BASE_URL",
    "ENV_KEY",
    "ENV_OFFLINE",
    "ENV_REFLAG_KEY",
    "ENV_REFLAG_OFFLINE",
    "ENV_REFLAG_URL",
    "ENV_SPOOL_DIR",
    "ENV_URL",
    "REFLAG_BASE_URL",
    "REFLAG_EU_BASE_URL",
    "ConfigValue",
    "SenderConfig",
    "SpoolConfig",
    "api_of",
    "resolve_key",
    "resolve_offline",
    "resolve_url",
]

#: Where items go unless ``base_url`` or ``BUCKET_TRACKING_URL`` says otherwise.
DEFAULT_BASE_URL: Final = "https://tracking.bucket.co"

#: Reflag's Runtime API (keys ``sec_...`` and ``pub_...``), and its EU host.
REFLAG_BASE_URL: Final = "https://front.reflag.com"
REFLAG_EU_BASE_URL: Final = "https://front-eu.reflag.com"

#: The two APIs (``api=``): the key in the path, or in a Bearer header.
API_TRACKING: Final = "tracking"
API_RUNTIME: Final = "runtime"
_RUNTIME_PREFIXES: Final = ("sec_", "pub_")

ENV_KEY: Final = "BUCKET_TRACKING_KEY"
ENV_URL: Final = "BUCKET_TRACKING_URL"
#: ``1``/``true``/``on``/``yes``: every sender is offline (tests, CI; no key needed).
ENV_OFFLINE: Final = "BUCKET_OFFLINE"
#: Reflag's SDKs' variables, read when neither an argument nor ``BUCKET_*`` is set.
ENV_REFLAG_KEY: Final = "REFLAG_SECRET_KEY"
ENV_REFLAG_URL: Final = "REFLAG_API_BASE_URL"
ENV_REFLAG_OFFLINE: Final = "REFLAG_OFFLINE"

#: The environment variable read when ``spool_dir`` is not given.
ENV_SPOOL_DIR: Final = "BUCKET_SPOOL_DIR"

#: Default ``spool_max_bytes``: 256 MiB, over a million typical items.
DEFAULT_SPOOL_MAX_BYTES: Final = 256 * 1024 * 1024

#: Default ``spool_max_age``: 7 days.
DEFAULT_SPOOL_MAX_AGE: Final = 7 * 24 * 3600.0


def resolve_key(tracking_key: str | None) -> str:
    """The key given, else env ``BUCKET_TRACKING_KEY``, else ``REFLAG_SECRET_KEY``, else ""."""
    if tracking_key is not None:
        return tracking_key
    return os.environ.get(ENV_KEY) or os.environ.get(ENV_REFLAG_KEY) or ""


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "on", "yes")


def resolve_offline(offline: object) -> bool:
    """``offline`` as given, or env ``BUCKET_OFFLINE`` or ``REFLAG_OFFLINE`` 1/true/on/yes."""
    if offline:
        return True
    return _truthy(ENV_OFFLINE) or _truthy(ENV_REFLAG_OFFLINE)


def api_of(key: str, api: str | None = None) -> str:
    """The API a key talks to: ``api`` when given, else by the key's prefix.

    Raises ConfigurationError for an ``api`` that is neither of the two.
    """
    if api is None:
        return API_RUNTIME if key.startswith(_RUNTIME_PREFIXES) else API_TRACKING
    if api not in (API_TRACKING, API_RUNTIME):
        raise ConfigurationError(
            f"api must be {API_TRACKING!r} or {API_RUNTIME!r}, got {api!r:.40}"
        )
    return api


def resolve_url(base_url: str | None, api: str = API_TRACKING) -> str:
    """The base URL given, else env ``BUCKET_TRACKING_URL``, else ``REFLAG_API_BASE_URL``,
    else the API's default host (no trailing slash)."""
    default = REFLAG_BASE_URL if api == API_RUNTIME else DEFAULT_BASE_URL
    url = base_url or os.environ.get(ENV_URL) or os.environ.get(ENV_REFLAG_URL) or default
    return url.rstrip("/")


@dataclass(frozen=True)
class SpoolConfig:
    """Where and how much a sender spools (see :mod:`bucket_logging._spool`)."""

    directory: str
    max_bytes: int = DEFAULT_SPOOL_MAX_BYTES
    max_age: float = DEFAULT_SPOOL_MAX_AGE


@dataclass(frozen=True)
class SenderConfig:
    """A sender's options, validated (see :class:`~bucket_logging.BulkSender` for each)."""

    tracking_key: str = field(repr=False)
    base_url: str
    offline: bool = False
    api: str = API_TRACKING
    flush_interval: float = 1.0
    max_batch_items: int = 15_000
    max_queue_items: int = 200_000
    max_queue_bytes: int = 64 * 1024 * 1024
    max_concurrent_requests: int = 4
    request_timeout: float = 10.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    dedupe_window: float = 60.0
    shutdown_timeout: float = 5.0
    spool: SpoolConfig | None = None
    handle_sigterm: bool = True

    @property
    def runtime(self) -> bool:
        """Whether this sender talks to Reflag's Runtime API (the key in a header)."""
        return self.api == API_RUNTIME

    def url_of(self, method: str) -> str:
        """The URL of one API method (``bulk``, ``feedback``, ...).

        On the tracking API it holds the key: never logged.
        """
        if self.runtime:
            return f"{self.base_url}/{method}"
        return f"{self.base_url}/{self.tracking_key}/{method}"

    @property
    def endpoint(self) -> str:
        """The bulk endpoint's URL."""
        return self.url_of("bulk")

    @property
    def feedback_endpoint(self) -> str | None:
        """Where feedback goes one call each (Runtime API), or None: in bulk bodies."""
        return self.url_of("feedback") if self.runtime else None

    @property
    def headers(self) -> dict[str, str]:
        """The API's own request headers: on the Runtime API, the key (never logged)."""
        if not self.runtime:
            return {}
        return {
            "Authorization": f"Bearer {self.tracking_key}",
            "reflag-sdk-version": f"bucket-logging-python/{__version__}",
        }

    @property
    def destination(self) -> str:
        """What the spool's destination hash is made of: the key, and the API.

        (The tracking API keeps the key alone, so that existing spools still match.)
        """
        if self.runtime:
            return f"{API_RUNTIME}\n{self.tracking_key}"
        return self.tracking_key

    @classmethod
    def build(
        cls,
        tracking_key: str | None,
        *,
        base_url: str | None,
        offline: bool,
        api: str | None = None,
        flush_interval: float,
        max_batch_items: int,
        max_queue_items: int,
        max_queue_bytes: int,
        max_concurrent_requests: int,
        request_timeout: float,
        retry_budget: float,
        backoff_base: float,
        backoff_max: float,
        dedupe_window: float,
        shutdown_timeout: float,
        spool_dir: str | os.PathLike[str] | None,
        spool_max_bytes: int,
        spool_max_age: float,
        handle_sigterm: object = True,
    ) -> SenderConfig:
        """Check the options (and the environment); raise ConfigurationError if wrong."""
        key = resolve_key(tracking_key)
        offline = resolve_offline(offline)
        if not offline and not key:
            raise ConfigurationError(
                "no Bucket tracking key or Reflag key: pass tracking_key=... or set the "
                f"{ENV_KEY} or {ENV_REFLAG_KEY} environment variable (or use offline=True "
                f"or {ENV_OFFLINE}=1)"
            )
        if not offline:
            check_key(key)
        kind = api_of(key, api)
        url = resolve_url(base_url, kind)
        if not url.startswith(("http://", "https://")):
            raise ConfigurationError(f"base_url must be an http(s) URL, got {url!r}")
        numbers = {
            name: _number(name, value, type_)
            for name, value, type_ in (
                ("flush_interval", flush_interval, float),
                ("max_batch_items", max_batch_items, int),
                ("max_queue_items", max_queue_items, int),
                ("max_queue_bytes", max_queue_bytes, int),
                ("max_concurrent_requests", max_concurrent_requests, int),
                ("request_timeout", request_timeout, float),
                ("retry_budget", retry_budget, float),
                ("backoff_base", backoff_base, float),
                ("backoff_max", backoff_max, float),
                ("dedupe_window", dedupe_window, float),
                ("shutdown_timeout", shutdown_timeout, float),
                ("spool_max_bytes", spool_max_bytes, int),
                ("spool_max_age", spool_max_age, float),
            )
        }
        for name in _POSITIVE:
            if not numbers[name] > 0:
                raise ConfigurationError(f"{name} must be positive, got {numbers[name]!r}")
        if spool_dir is None:
            spool_dir = os.environ.get(ENV_SPOOL_DIR) or None
        n = numbers
        spool = None
        if spool_dir and not offline:
            spool = SpoolConfig(os.fspath(spool_dir), int(n["spool_max_bytes"]), n["spool_max_age"])
        return cls(
            tracking_key=key,
            base_url=url,
            offline=offline,
            api=kind,
            flush_interval=n["flush_interval"],
            max_batch_items=int(n["max_batch_items"]),
            max_queue_items=int(n["max_queue_items"]),
            max_queue_bytes=int(n["max_queue_bytes"]),
            max_concurrent_requests=int(n["max_concurrent_requests"]),
            request_timeout=n["request_timeout"],
            retry=RetryPolicy(n["retry_budget"], n["backoff_base"], n["backoff_max"]),
            dedupe_window=n["dedupe_window"],
            shutdown_timeout=n["shutdown_timeout"],
            spool=spool,
            handle_sigterm=sigterm_enabled(handle_sigterm),
        )


#: The options that must be above zero.
_POSITIVE: Final = (
    "flush_interval",
    "max_batch_items",
    "max_queue_items",
    "max_queue_bytes",
    "max_concurrent_requests",
    "request_timeout",
    "spool_max_bytes",
    "spool_max_age",
)


def _number(name: str, value: object, kind: type[int] | type[float]) -> float:
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
        expected = "a whole number" if kind is int else "a number"
        raise ConfigurationError(f"{name} must be {expected}, got {value!r}")
    return number


def check_key(key: str) -> str:
    """``key`` unless a request cannot carry it: whitespace, control or non-ASCII
    characters (a pasted key's trailing newline would only fail at send time, in a
    header or URL error that shows it). The message never shows the key.

    The one check of a key: every sender (the handler's included) and
    ``bucket-logging check`` refuse the same keys with the same message.
    """
    bad = next((c for c in key if c.isspace() or not c.isprintable() or not c.isascii()), None)
    if bad is not None:
        where = "at its end" if key.rstrip() != key else "in it"
        if bad.isspace() or not bad.isprintable():
            what = "a newline" if bad in "\r\n" else f"{bad!r}"
            what = "a space" if bad == " " else what
        else:
            what = "a non-ASCII character"
        raise ConfigurationError(
            f"the tracking key has {what} {where} ({len(key)} characters): a key is one "
            f"word of ASCII letters and digits; check tracking_key, {ENV_KEY} or "
            f"{ENV_REFLAG_KEY} for a stray newline, space or character"
        )
    return key


_T = TypeVar("_T")


class ConfigValue(Generic[_T]):
    """A read-only attribute that reads an object's ``config`` (the sender's options)."""

    def __init__(self, read: Callable[[SenderConfig], _T]) -> None:
        self._read = read

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> ConfigValue[_T]: ...
    @overload
    def __get__(self, obj: object, owner: type | None = None) -> _T: ...
    def __get__(self, obj: Any, owner: type | None = None) -> _T | ConfigValue[_T]:
        if obj is None:
            return self
        return self._read(obj.config)
