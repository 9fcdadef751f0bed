"""A sender's configuration: one immutable, validated object (see :class:`SenderConfig`).

:class:`~bucket_logging.BulkSender` takes its options as keywords, as before; they
are checked once here and kept in a frozen :class:`SenderConfig` that every part of
the sender reads (the batch queue's bounds, the retry policy, the spool's limits).

Two APIs take the same items: Bucket's tracking API (the key in the path,
``{base}/{key}/bulk``) and Reflag's Runtime API (``{base}/bulk``, the key in an
``Authorization: Bearer`` header). The key's prefix chooses (``sec_``/``pub_``:
Runtime API), ``api=`` overrides; the URLs and headers of the chosen API are
derived here once, for the delivery layer.

Each setting is resolved on its own by :mod:`bucket_logging._options` (the one table
of options): the argument, else the ``BUCKET_*`` variable, else the ``REFLAG_*``
variable, else the default (for the URL: the chosen API's host).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Generic, TypeVar, overload

from .. import _options
from .._exceptions import ConfigurationError
from .._version import __version__
from .retry import RetryPolicy

__all__ = [
    "API_RUNTIME",
    "API_TRACKING",
    "DEFAULT_BASE_URL",
    "ENV_KEY",
    "ENV_OFFLINE",
    "ENV_REFLAG_KEY",
    "ENV_REFLAG_OFFLINE",
    "ENV_REFLAG_URL",
    "ENV_REQUIRE_KEY",
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

REFLAG_BASE_URL: Final = "https://front.reflag.com"
"""Reflag's Runtime API (keys ``sec_...`` and ``pub_...``): the default ``base_url`` for them."""

REFLAG_EU_BASE_URL: Final = "https://front-eu.reflag.com"
"""Reflag's Runtime API in the EU (data residency): pass it as ``base_url``."""

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
#: ``1``: a sender without a key (and not offline) is a ConfigurationError.
ENV_REQUIRE_KEY: Final = "BUCKET_REQUIRE_KEY"

#: The environment variable read when ``spool_dir`` is not given.
ENV_SPOOL_DIR: Final = "BUCKET_SPOOL_DIR"

#: Default ``spool_max_bytes`` and ``spool_max_age`` (see :mod:`bucket_logging._options`).
DEFAULT_SPOOL_MAX_BYTES: Final = _options.SPOOL_MAX_BYTES
DEFAULT_SPOOL_MAX_AGE: Final = _options.SPOOL_MAX_AGE


def resolve_key(tracking_key: str | None) -> str:
    """The key given, else env ``BUCKET_TRACKING_KEY``, else ``REFLAG_SECRET_KEY``, else ""."""
    key: str | None = _options.resolve("tracking_key", tracking_key)
    return key or ""


def resolve_offline(offline: object) -> bool:
    """``offline`` as given, or env ``BUCKET_OFFLINE`` or ``REFLAG_OFFLINE`` (a bad value
    of either is a ConfigurationError naming it)."""
    return bool(_options.resolve("offline", offline))


def api_of(key: str, api: str | None = None) -> str:
    """The API a key talks to: ``api`` when given (else env ``BUCKET_API``), else by the
    key's prefix.

    Raises ConfigurationError for an ``api`` that is neither of the two.
    """
    chosen: str | None = _options.resolve("api", api)
    if chosen is None:
        return API_RUNTIME if key.startswith(_RUNTIME_PREFIXES) else API_TRACKING
    return chosen


def resolve_url(base_url: str | None, api: str = API_TRACKING) -> str:
    """The base URL given, else env ``BUCKET_TRACKING_URL``, else ``REFLAG_API_BASE_URL``,
    else the API's default host (no trailing slash)."""
    url: str | None = _options.resolve("base_url", base_url)
    if url is None:
        return REFLAG_BASE_URL if api == API_RUNTIME else DEFAULT_BASE_URL
    return url


@dataclass(frozen=True)
class SpoolConfig:
    """Where and how much a sender spools (see :mod:`bucket_logging._sender.spooling`)."""

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
    flush_interval: float = _options.FLUSH_INTERVAL
    max_batch_items: int = _options.MAX_BATCH_ITEMS
    max_queue_items: int = _options.MAX_QUEUE_ITEMS
    max_queue_bytes: int = _options.MAX_QUEUE_BYTES
    max_concurrent_requests: int = _options.MAX_CONCURRENT_REQUESTS
    request_timeout: float = _options.REQUEST_TIMEOUT
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    dedupe_window: float = _options.DEDUPE_WINDOW
    shutdown_timeout: float = _options.SHUTDOWN_TIMEOUT
    spool: SpoolConfig | None = None
    handle_sigterm: bool = True
    #: Log each request's summary (items, bytes, status) at INFO.
    debug: bool = False
    #: Sees each item (a dict) before it is queued; None: every item is queued as is.
    before_send: Callable[[dict[str, Any]], dict[str, Any] | None] | None = field(
        default=None, compare=False, repr=False
    )
    #: Offline because no key was given or set (``require_key`` off): said at WARNING.
    keyless: bool = False
    #: Added to every event the front ends track (the event's own attributes win).
    attributes: dict[str, Any] | None = field(default=None, compare=False)

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
    def build(cls, arguments: Mapping[str, object]) -> SenderConfig:
        """Resolve and check every option (see :mod:`bucket_logging._options`: the
        argument, else ``BUCKET_*``, else ``REFLAG_*``, else the default); raise
        ConfigurationError if one is wrong."""
        values = _options.resolve_all(arguments)
        key: str = values["tracking_key"] or ""
        offline: bool = values["offline"]
        keyless = not offline and not key
        if keyless and values["require_key"]:
            raise ConfigurationError(
                "no Bucket tracking key or Reflag key: pass tracking_key=... or set the "
                f"{ENV_KEY} or {ENV_REFLAG_KEY} environment variable (or use offline=True "
                f"or {ENV_OFFLINE}=1)"
            )
        offline = offline or keyless
        if not offline:
            check_key(key)
        kind = values["api"] or api_of(key)
        url = values["base_url"] or resolve_url(None, kind)
        spool = None
        if values["spool_dir"] and not offline:
            spool = SpoolConfig(
                values["spool_dir"], values["spool_max_bytes"], values["spool_max_age"]
            )
        return cls(
            tracking_key=key,
            base_url=url,
            offline=offline,
            api=kind,
            flush_interval=values["flush_interval"],
            max_batch_items=values["max_batch_items"],
            max_queue_items=values["max_queue_items"],
            max_queue_bytes=values["max_queue_bytes"],
            max_concurrent_requests=values["max_concurrent_requests"],
            request_timeout=values["request_timeout"],
            retry=RetryPolicy(
                values["retry_budget"], values["backoff_base"], values["backoff_max"]
            ),
            dedupe_window=values["dedupe_window"],
            shutdown_timeout=values["shutdown_timeout"],
            spool=spool,
            handle_sigterm=values["handle_sigterm"],
            debug=values["debug"],
            before_send=values["before_send"],
            keyless=keyless,
            attributes=values["attributes"],
        )


#: The longest key taken (Reflag's and Bucket's keys are under 100 characters; a key
#: goes in every request's URL or header).
MAX_KEY_CHARS: Final = 1024


def check_key(key: str) -> str:
    """``key`` unless a request cannot carry it: whitespace, control or non-ASCII
    characters (a pasted key's trailing newline would only fail at send time, in a
    header or URL error that shows it). The message never shows the key.

    The one check of a key: every sender (the handler's included) and
    ``bucket-logging check`` refuse the same keys with the same message.
    """
    if len(key) > MAX_KEY_CHARS:
        raise ConfigurationError(
            f"the tracking key has {len(key)} characters: a key has at most "
            f"{MAX_KEY_CHARS}; check tracking_key, {ENV_KEY} or {ENV_REFLAG_KEY}"
        )
    bad = next((c for c in key if c.isspace() or not c.isprintable() or not c.isascii()), None)
    if bad is not None:
        where = "at its end" if key.rstrip() != key else "in it"
        if bad.isspace() or not bad.isprintable():
            what = "a newline" if bad in "\r\n" else f"{bad!r}"
            what = "a space" if bad == " " else what
        else:
            what = "a non-ASCII character"
        raise ConfigurationError(
            f"the tracking key has {what} {where} ({len(key)} characters): a key is "
            f"printable ASCII without spaces (letters, digits, '_'); check tracking_key, "
            f"{ENV_KEY} or {ENV_REFLAG_KEY} for a stray newline, space or pasted character"
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
