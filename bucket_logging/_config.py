"""A sender's configuration: one immutable, validated object (see :class:`SenderConfig`).

:class:`~bucket_logging.BulkSender` takes its options as keywords, as before; they
are checked once here and kept in a frozen :class:`SenderConfig` that every part of
the sender reads (the batch queue's bounds, the retry policy, the spool's limits).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from ._exceptions import ConfigurationError
from ._retry import RetryPolicy
from ._shutdown import sigterm_enabled

__all__ = [
    "DEFAULT_BASE_URL",
    "ENV_KEY",
    "ENV_OFFLINE",
    "ENV_SPOOL_DIR",
    "ENV_URL",
    "ConfigValue",
    "SenderConfig",
    "SpoolConfig",
    "resolve_key",
    "resolve_offline",
    "resolve_url",
]

#: Where items go unless ``base_url`` or ``BUCKET_TRACKING_URL`` says otherwise.
DEFAULT_BASE_URL: Final = "https://tracking.bucket.co"

ENV_KEY: Final = "BUCKET_TRACKING_KEY"
ENV_URL: Final = "BUCKET_TRACKING_URL"
#: ``1``/``true``/``on``/``yes``: every sender is offline (tests, CI; no key needed).
ENV_OFFLINE: Final = "BUCKET_OFFLINE"

#: The environment variable read when ``spool_dir`` is not given.
ENV_SPOOL_DIR: Final = "BUCKET_SPOOL_DIR"

#: Default ``spool_max_bytes``: 256 MiB, over a million typical items.
DEFAULT_SPOOL_MAX_BYTES: Final = 256 * 1024 * 1024

#: Default ``spool_max_age``: 7 days.
DEFAULT_SPOOL_MAX_AGE: Final = 7 * 24 * 3600.0


def resolve_key(tracking_key: str | None) -> str:
    """The tracking key given, else env ``BUCKET_TRACKING_KEY``, else ""."""
    return tracking_key if tracking_key is not None else os.environ.get(ENV_KEY, "")


def resolve_offline(offline: object) -> bool:
    """``offline`` as given, or env ``BUCKET_OFFLINE`` set to 1/true/on/yes."""
    if offline:
        return True
    return os.environ.get(ENV_OFFLINE, "").strip().lower() in ("1", "true", "on", "yes")


def resolve_url(base_url: str | None) -> str:
    """The base URL given, else env ``BUCKET_TRACKING_URL``, else the default (no slash)."""
    return (base_url or os.environ.get(ENV_URL) or DEFAULT_BASE_URL).rstrip("/")


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
    def endpoint(self) -> str:
        """The bulk endpoint's URL (it holds the tracking key: never logged)."""
        return f"{self.base_url}/{self.tracking_key}/bulk"

    @classmethod
    def build(
        cls,
        tracking_key: str | None,
        *,
        base_url: str | None,
        offline: bool,
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
                "no Bucket tracking key: pass tracking_key=... or set the "
                f"{ENV_KEY} environment variable (or use offline=True or {ENV_OFFLINE}=1)"
            )
        if not offline:
            check_key(key)
        url = resolve_url(base_url)
        if not url.startswith(("http://", "https://")):
            raise ConfigurationError(f"base_url must be an http(s) URL, got {url!r}")
        numbers = {
            name: _number(name, value, kind)
            for name, value, kind in (
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
    """``key`` unless it holds whitespace or control characters (a pasted key's trailing
    newline would only fail at send time, as an invalid URL); the key is not shown."""
    bad = next((c for c in key if c.isspace() or not c.isprintable()), None)
    if bad is not None:
        where = "at its end" if key.rstrip() != key else "in it"
        raise ConfigurationError(
            f"the tracking key has {bad!r} {where} ({len(key)} characters): a key is one "
            f"word of letters and digits; check {ENV_KEY} or tracking_key for a stray "
            "newline or space"
        )
    return key


class ConfigValue:
    """A read-only attribute that reads an object's ``config`` (the sender's options)."""

    def __init__(self, read: Callable[[SenderConfig], Any]) -> None:
        self._read = read

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        return self._read(obj.config)
