"""OpenTelemetry log records as the fields of a JSON log line: the OTLP mapping.

One mapping serves the relay's ``POST /v1/logs`` (OTLP/HTTP, protobuf or JSON
bodies, :func:`decode_export_logs`) and the in-process
:class:`bucket_logging.otel.BucketLogRecordProcessor` (:func:`record_fields`).
Either way a record becomes a fields dict that
:class:`~bucket_logging._frontends.jsonlines.JsonLines` reads exactly like a ``ship`` line:

* the record's **attributes are its fields**: a map value becomes a dict, an array a
  list, an ``intValue`` an int (OTLP/JSON sends it as a string), so ``bucket_event``,
  ``user_id``, ``bucket_user`` and ``bucket_attributes`` (a map) work as tags;
* **flat dotted keys** for SDKs whose attributes cannot be maps:
  ``bucket_attributes.plan`` is ``plan`` inside ``bucket_attributes`` (likewise
  ``bucket_user.``, ``bucket_company.``, ``bucket_feedback.``); only the first dot
  splits (``bucket_attributes.plan.tier`` is the attribute ``plan.tier``);
* the **body** is the message that rules match (the line's ``event``); a body that
  is a map (a structured log parsed by a Collector) gives fields too, its own
  ``event`` / ``message`` / ``msg`` being the message; the record's attributes win
  over its entries;
* the **scope name** is the logger name (``logger``), for rules' ``logger``;
* the item's **time** is ``timeUnixNano``, else ``observedTimeUnixNano`` (else the
  time of tracking);
* **resource and scope attributes are not read** (``service.name``, ``host.name``
  ...): they describe the sender, not the user's action, and would otherwise flood
  a rule's ``"attributes": "*"``; put what tracking needs on the record.

Severity, trace and span ids, flags and ``eventName`` are not read. Id field names
are the front end's (``user_id_field="user.id"`` for OpenTelemetry's semantic
conventions).

Decoding is bounded: a body is read into at most ``max_records`` records and
``max_values`` (:data:`MAX_VALUES`) values, nested at most :data:`MAX_DEPTH` deep;
a body over a bound raises :class:`OtlpTooLarge` (the relay answers 413), any other
body that is not an ``ExportLogsServiceRequest`` raises :class:`OtlpDecodeError`
(400) with a short reason, never a traceback. Parsed objects cost far more memory
than their bytes, so they are counted before they are built:

* JSON: every ``{`` and ``[`` of the body counts as a value (a byte count, before
  orjson parses it);
* protobuf: the request, ``ResourceLogs`` and ``ScopeLogs`` levels are walked on the
  wire (resources are skipped unread) and each ``LogRecord`` is parsed on its own by
  ``opentelemetry-proto``'s generated class (the ``relay`` extra), so parsed
  messages live for one record at a time; a record that could hold more values than
  the budget left is walked on the wire first. Attributes, map entries and array
  elements count as values. Every walk reads a bounded number of fields (time: a
  flood of tiny unknown fields is refused too).

JSON bodies follow the OTLP/JSON rules: field names in lowerCamelCase, 64-bit
integers as strings or numbers, trace and span ids in hex, unknown fields ignored.
They are parsed by orjson: on a 22 MB body of 10,000 records it took 0.35 s where
protobuf's ``json_format.Parse`` took 2.1 s (which also wants base64 ids, not hex).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

import orjson

from .otlp_decode import (
    JSON,
    MAX_DEPTH,
    MAX_VALUES,
    PROTOBUF,
    Budget,
    OtlpBusy,
    OtlpDecodeError,
    OtlpTooLarge,
    OtlpUnsupportedType,
    decode_json,
    decode_protobuf,
)

if TYPE_CHECKING:
    from .jsonlines import JsonLines

__all__ = [
    "MAX_DEPTH",
    "MAX_VALUES",
    "OtlpBusy",
    "OtlpDecodeError",
    "OtlpTooLarge",
    "OtlpUnsupportedType",
    "decode_export_logs",
    "export_logs_response",
    "media_type",
    "plain_attributes",
    "plain_value",
    "record_fields",
    "rpc_status",
    "track_records",
]

#: The prefixes of flat dotted keys that are read as maps.
DOTTED_TAGS: Final = ("bucket_attributes", "bucket_user", "bucket_company", "bucket_feedback")

#: google.rpc.Code values for :func:`rpc_status`.
INVALID_ARGUMENT: Final = 3
RESOURCE_EXHAUSTED: Final = 8
UNAVAILABLE: Final = 14


def media_type(content_type: str | None) -> str | None:
    """``"protobuf"``, ``"json"`` or None for a ``Content-Type`` header value."""
    base = (content_type or "").partition(";")[0].strip().lower()
    if base in ("application/x-protobuf", "application/protobuf"):
        return PROTOBUF
    if base == "application/json":
        return JSON
    return None


# --------------------------------------------------------------------------- mapping


def record_fields(
    attributes: dict[str, Any], body: Any, scope_name: str, time_unix_nano: int
) -> dict[str, Any]:
    """The fields of one log record, for :meth:`JsonLines.track`.

    ``attributes`` (plain values: dicts, lists, str, int, float, bool, None) become
    the fields (the dict is used, not copied); see the module documentation for the
    rest. ``time_unix_nano`` 0 means unknown.
    """
    if type(body) is dict:
        fields = {**body, **attributes}
    else:
        fields = attributes
        if body is not None:
            fields["event"] = body if type(body) is str else _message_text(body)
    for key in [k for k in fields if "." in k and k.startswith("bucket_")]:
        _merge_dotted(fields, key)
    if scope_name:
        fields["logger"] = scope_name
    if time_unix_nano:
        fields["timestamp"] = time_unix_nano / 1e9
    return fields


def _message_text(body: Any) -> str:
    """A body that is neither text nor a map (a number, a list) as the message."""
    if type(body) is bool:
        return "true" if body else "false"
    try:
        return orjson.dumps(body).decode()
    except TypeError:
        return str(body)


def _merge_dotted(fields: dict[str, Any], key: str) -> None:
    prefix, _, name = key.partition(".")
    if prefix not in DOTTED_TAGS or not name:
        return
    target = fields.get(prefix)
    if target is None:
        target = fields[prefix] = {}
    elif type(target) is not dict:
        return  # bucket_attributes="x": the tracker reports it; the dotted key stays
    target[name] = fields.pop(key)


def track_records(front: JsonLines, records: Iterable[dict[str, Any]]) -> tuple[int, int, str]:
    """Track decoded records through ``front``: ``(tracked, rejected, error_message)``.

    ``rejected`` counts the records whose tags were invalid (one of their calls was
    not sent; their valid calls still were); ``error_message`` names the first
    problem, for OTLP's ``partialSuccess``. Never raises.
    """
    tracked = rejected = 0
    first = ""
    check = front.track_checked
    for record in records:
        ok, problem = check(record)
        if ok:
            tracked += 1
        if problem is not None:
            rejected += 1
            if not first:
                first = problem
    if rejected:
        first = f"{rejected} log record(s) with invalid tracking tags; the first: {first}"
    return tracked, rejected, first


# --------------------------------------------------------------------------- decoding


def decode_export_logs(
    body: bytes,
    content_type: str | None,
    *,
    max_records: int,
    max_values: int = MAX_VALUES,
    charge: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """The log records of an OTLP ``ExportLogsServiceRequest``, each as fields.

    ``body`` is the request body (already gunzipped); ``content_type`` its header.
    Raises :class:`OtlpUnsupportedType` for a content type other than protobuf or
    JSON, :class:`OtlpTooLarge` past ``max_records`` records or ``max_values``
    values, :class:`OtlpDecodeError` for anything else that is not OTLP. ``charge``
    is called with the values as they are taken (a shared pool: it raises
    :class:`~bucket_logging._frontends.otlp_wire.OtlpBusy` to refuse).
    """
    kind = media_type(content_type)
    if kind is None:
        raise OtlpUnsupportedType(
            f"Content-Type {(content_type or '')[:60]!r} is neither application/x-protobuf "
            "nor application/json"
        )
    budget = Budget(max_records, max_values, charge)
    if kind == JSON:
        return decode_json(body, budget, record_fields)
    return decode_protobuf(body, budget, record_fields)


def export_logs_response(
    content_type: str | None, *, rejected: int = 0, error_message: str = ""
) -> bytes:
    """An ``ExportLogsServiceResponse`` body in the request's content type.

    With ``rejected`` records or an ``error_message`` it carries ``partialSuccess``
    (OTLP clients log it and do not retry); else it is empty (full success). JSON
    unless ``content_type`` is protobuf.
    """
    if media_type(content_type) == PROTOBUF:
        if not rejected and not error_message:
            return b""
        partial = b""
        if rejected:
            partial += b"\x08" + _encode_varint(rejected)
        if error_message:
            text = error_message.encode("utf-8", "replace")
            partial += b"\x12" + _encode_varint(len(text)) + text
        return b"\x0a" + _encode_varint(len(partial)) + partial
    if not rejected and not error_message:
        return b"{}"
    success: dict[str, Any] = {}
    if rejected:
        success["rejectedLogRecords"] = str(rejected)  # int64: a string in OTLP/JSON
    if error_message:
        success["errorMessage"] = error_message
    return orjson.dumps({"partialSuccess": success})


def rpc_status(content_type: str | None, code: int, message: str) -> bytes:
    """A ``google.rpc.Status`` body (the answer to a request that failed) in the
    request's content type: JSON unless ``content_type`` is protobuf.

    ``code`` is a ``google.rpc.Code`` (:data:`INVALID_ARGUMENT` for a body that is
    not OTLP, :data:`RESOURCE_EXHAUSTED`, :data:`UNAVAILABLE`).
    """
    if media_type(content_type) == PROTOBUF:
        out = b""
        if code:
            out += b"\x08" + _encode_varint(code & 0xFFFFFFFFFFFFFFFF)
        if message:
            text = message.encode("utf-8", "replace")
            out += b"\x12" + _encode_varint(len(text)) + text
        return out
    return orjson.dumps({"code": code, "message": message})


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


# --------------------------------------------------------------------------- SDK values


def plain_attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    """The attributes of an OpenTelemetry SDK log record as plain values (tuples as
    lists, mappings as dicts, bytes as base64 text), for :func:`record_fields`."""
    if not attributes:
        return {}
    result = dict(attributes)
    for key, value in result.items():
        if type(value) not in _SCALARS:
            result[key] = plain_value(value, 0)
    return result


_SCALARS: Final = frozenset({str, int, float, bool, type(None)})


def plain_value(value: Any, depth: int) -> Any:
    """An SDK ``AnyValue`` as a plain value (see :func:`plain_attributes`)."""
    if type(value) in _SCALARS:
        return value
    if depth >= MAX_DEPTH:
        return None
    if type(value) is dict:
        return {
            k if type(k) is str else str(k): v if type(v) in _SCALARS else plain_value(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, Mapping):
        return {str(k): plain_value(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, (list, tuple)):
        return [plain_value(v, depth + 1) for v in value]
    if isinstance(value, (str, int, float)):  # subclasses (an IntEnum, a str subclass)
        return value
    return str(value)
