"""``BucketLogRecordProcessor``: OpenTelemetry log records become tracking calls, in process.

For an application that logs through the OpenTelemetry Logs API (directly, or
stdlib ``logging`` through OpenTelemetry's ``LoggingHandler``), add the processor
to its ``LoggerProvider`` beside the exporters::

    from opentelemetry.sdk._logs import LoggerProvider
    from bucket_logging.otel import BucketLogRecordProcessor

    provider = LoggerProvider()
    provider.add_log_record_processor(BucketLogRecordProcessor("trCqx4DGo1lk3Lcct5NHLjWy"))

A record's attributes are read as the fields of a ``ship`` line (``bucket_event``,
``user_id``, ``bucket_attributes`` as a map or as flat ``bucket_attributes.plan``
keys), its body is the message rules match, its scope name the logger name and
its timestamp the item's time: the same mapping as the relay's ``POST /v1/logs``
(:mod:`bucket_logging._frontends.otlp`), through the same
:class:`~bucket_logging._frontends.jsonlines.JsonLines` front end.

``on_emit`` runs on the logging thread: it never raises, never waits for the
network (items are queued on the background sender) and costs a scan of the
record's attribute keys when the record carries no ``bucket_*`` key and no rule is
configured. ``force_flush`` and ``shutdown`` (called by
``LoggerProvider.shutdown()``, also at exit) wait for the sender to deliver.

This module imports ``opentelemetry-sdk`` (``pip install 'bucket-logging[otel]'``);
``import bucket_logging`` does not.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk._logs import LogRecordProcessor

from ._frontends.jsonlines import JsonLines
from ._frontends.otlp import plain_attributes, plain_value, record_fields
from ._tracking.rules import NO_RULES
from ._tracking.senders import Sender

try:  # the SDK's attribute mapping: its keys are read without its lock (never mutated here)
    from opentelemetry.attributes import BoundedAttributes as _Bounded
except ImportError:  # pragma: no cover - every supported SDK has it
    _Bounded = None  # type: ignore[assignment,misc]

__all__ = ["BucketLogRecordProcessor"]


class BucketLogRecordProcessor(LogRecordProcessor):
    """A ``LogRecordProcessor`` that tracks tagged OpenTelemetry log records.

    Takes the keywords of :class:`~bucket_logging.BucketProcessor` and
    :class:`~bucket_logging.LoguruSink`.

    Args:
        tracking_key: a Reflag key (``sec_...``) or a Bucket tracking key; defaults to
            env ``BUCKET_TRACKING_KEY``, else ``REFLAG_SECRET_KEY``.
        base_url: the API's base URL (the sender's default when None).
        rules: zero-code rules, matched against the record's body (the message as
            logged: OpenTelemetry's ``LoggingHandler`` sends the formatted message,
            so match ``"User * signed in"``, not ``"User %s signed in"``) and its
            scope name.
        user_id_field: the attribute holding the user id (``"user.id"`` for
            OpenTelemetry's semantic conventions).
        company_id_field: the attribute holding the company id.
        sender: an existing sender to use instead of the shared one for the key.
        **sender_options: passed on to the sender (``offline=True``, ``spool=...``).
            ``tracking_plan=`` (a tracking plan's path; default
            ``BUCKET_TRACKING_PLAN``) is the tracking path's: every call is checked
            against the plan (docs: "Tracking plan").

    Raises:
        ConfigurationError: when a rule or an option is invalid, or no tracking key
            is given or set in the environment with ``require_key=True`` (without
            it, tracking stays off and says so once at WARNING).
    """

    def __init__(
        self,
        tracking_key: str | None = None,
        *,
        base_url: str | None = None,
        rules: list[dict[str, Any]] | None = None,
        user_id_field: str = "user_id",
        company_id_field: str = "company_id",
        sender: Sender | None = None,
        **sender_options: Any,
    ) -> None:
        self._front = JsonLines(
            tracking_key,
            base_url=base_url,
            rules=rules,
            user_id_field=user_id_field,
            company_id_field=company_id_field,
            sender=sender,
            **sender_options,
        )
        rules_ = self._front.tracker.rules
        self._rule_cache = None if rules_ is None else rules_.template_cache
        self._track = self._front.track

    @property
    def sender(self) -> Sender:
        """The sender items are queued on."""
        return self._front.sender

    def on_emit(self, log_record: Any) -> None:
        """Track the record if it carries ``bucket_*`` attributes or a rule matches it.

        ``log_record`` is the SDK's ``ReadWriteLogRecord`` (``LogData`` for older
        SDKs: both hold ``log_record`` and ``instrumentation_scope``). Never raises.
        """
        try:
            record = log_record.log_record
            attributes = record.attributes
            keys = attributes._dict if type(attributes) is _Bounded else attributes
            for key in keys or ():
                if key.startswith("bucket_"):
                    break
            else:  # untagged: only a rule can ask for it
                cache = self._rule_cache
                if cache is None:
                    return
                body = record.body
                if type(body) is str and cache.get(body) is NO_RULES:
                    return
            scope = log_record.instrumentation_scope
            body = record.body
            self._track(
                record_fields(
                    plain_attributes(keys),
                    body if body is None or type(body) is str else plain_value(body, 0),
                    scope.name if scope is not None else "",
                    record.timestamp or record.observed_timestamp or 0,
                )
            )
        except Exception:  # a log call never raises
            return

    emit = on_emit  # the name of the method in SDKs before 1.35

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Wait until the sender delivered what is queued, at most ``timeout_millis``;
        True when it did. Never raises."""
        return self._front.flush(timeout_millis / 1000)

    def shutdown(self) -> None:
        """Deliver what is queued, within the sender's ``shutdown_timeout`` (the
        shared sender itself is closed by its exit hook). Never raises."""
        self._front.flush()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._front._rule_count()} rule(s)>"
