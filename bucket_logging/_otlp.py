"""OpenTelemetry log records as the fields of a JSON log line: the OTLP mapping.

One mapping serves the relay's ``POST /v1/logs`` (OTLP/HTTP, protobuf or JSON
bodies, :func:`decode_export_logs`) and the in-process
:class:`bucket_logging.otel.BucketLogRecordProcessor` (:func:`record_fields`).
Either way a record becomes a fields dict that
:class:`~bucket_logging._jsonlines.JsonLines` reads exactly like a ``ship`` line:

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
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final

import orjson

if TYPE_CHECKING:
    from ._jsonlines import JsonLines

__all__ = [
    "MAX_DEPTH",
    "MAX_VALUES",
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

#: How many nested values (attributes, array elements, map entries; and every other
#: message of a protobuf body) one body may hold: parsed objects cost far more memory
#: than their bytes on the wire (a 2-byte protobuf message is ~60 bytes parsed).
MAX_VALUES: Final = 1 << 19
#: How deep values may nest (maps in arrays in maps ...).
MAX_DEPTH: Final = 32

#: The prefixes of flat dotted keys that are read as maps.
DOTTED_TAGS: Final = ("bucket_attributes", "bucket_user", "bucket_company", "bucket_feedback")

PROTOBUF: Final = "protobuf"
JSON: Final = "json"

#: google.rpc.Code values for :func:`rpc_status`.
INVALID_ARGUMENT: Final = 3
RESOURCE_EXHAUSTED: Final = 8
UNAVAILABLE: Final = 14


class OtlpDecodeError(ValueError):
    """The body is not an OTLP ``ExportLogsServiceRequest`` (the relay answers 400)."""


class OtlpTooLarge(OtlpDecodeError):
    """The body holds more records (or values) than allowed (the relay answers 413)."""


class OtlpUnsupportedType(OtlpDecodeError):
    """The content type is neither protobuf nor JSON (the relay answers 415)."""


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
    body: bytes, content_type: str | None, *, max_records: int, max_values: int = MAX_VALUES
) -> list[dict[str, Any]]:
    """The log records of an OTLP ``ExportLogsServiceRequest``, each as fields.

    ``body`` is the request body (already gunzipped); ``content_type`` its header.
    Raises :class:`OtlpUnsupportedType` for a content type other than protobuf or
    JSON, :class:`OtlpTooLarge` past ``max_records`` records or ``max_values``
    values, :class:`OtlpDecodeError` for anything else that is not OTLP.
    """
    kind = media_type(content_type)
    if kind is None:
        raise OtlpUnsupportedType(
            f"Content-Type {(content_type or '')[:60]!r} is neither application/x-protobuf "
            "nor application/json"
        )
    budget = _Budget(max_records, max_values)
    if kind == JSON:
        return _decode_json(body, budget)
    return _decode_protobuf(body, budget)


_TOO_MANY_RECORDS: Final = "the request holds more log records than allowed"
_TOO_MANY_VALUES: Final = "the request holds more attributes and values than allowed"


class _Budget:
    __slots__ = ("records", "values")

    def __init__(self, records: int, values: int) -> None:
        self.records = records
        self.values = values

    def take_records(self, count: int) -> None:
        self.records -= count
        if self.records < 0:
            raise OtlpTooLarge(_TOO_MANY_RECORDS)

    def take_values(self, count: int) -> None:
        self.values -= count
        if self.values < 0:
            raise OtlpTooLarge(_TOO_MANY_VALUES)


# -- OTLP/JSON -------------------------------------------------------------------------

_INT: Final = re.compile(r"-?[0-9]{1,20}")
_SPECIAL_DOUBLES: Final = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _decode_json(body: bytes, budget: _Budget) -> list[dict[str, Any]]:
    # containers cost memory once parsed: bound them by counting before parsing
    budget.take_values(body.count(b"{") + body.count(b"[") - 1)
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise OtlpDecodeError(f"the body is not JSON ({str(exc)[:120]})") from None
    if type(request) is not dict:
        raise OtlpDecodeError("the body is not a JSON object (an ExportLogsServiceRequest)")
    records: list[dict[str, Any]] = []
    for resource in _json_list(request, "resourceLogs"):
        for entry in _json_list(_json_object(resource, "resourceLogs[]"), "scopeLogs"):
            scope_logs = _json_object(entry, "scopeLogs[]")
            scope = scope_logs.get("scope")
            name = ""
            if scope is not None:
                name = _json_str(_json_object(scope, "scope").get("name"), "scope.name")
            log_records = _json_list(scope_logs, "logRecords")
            budget.take_records(len(log_records))
            for record in log_records:
                records.append(_json_record(_json_object(record, "logRecords[]"), name))
    return records


def _json_record(record: dict[str, Any], scope_name: str) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    for pair in _json_list(record, "attributes"):
        key, value = _json_key_value(pair, 0)
        attributes[key] = value
    body = record.get("body")
    when = _json_uint64(record.get("timeUnixNano"), "timeUnixNano") or _json_uint64(
        record.get("observedTimeUnixNano"), "observedTimeUnixNano"
    )
    return record_fields(attributes, None if body is None else _json_any(body, 0), scope_name, when)


def _json_key_value(pair: object, depth: int) -> tuple[str, Any]:
    pair = _json_object(pair, "a key-value")
    key = _json_str(pair.get("key"), "key")
    value = pair.get("value")
    return key, None if value is None else _json_any(value, depth)


def _json_any(value: object, depth: int) -> Any:
    """An OTLP/JSON AnyValue as a plain value (None when it has no known field)."""
    if type(value) is not dict:
        raise OtlpDecodeError(f"an AnyValue is not an object: {_shown(value)}")
    if depth >= MAX_DEPTH:
        raise OtlpDecodeError(f"values nest deeper than {MAX_DEPTH} levels")
    if "stringValue" in value:
        return _json_str(value["stringValue"], "stringValue")
    if "intValue" in value:
        return _json_int(value["intValue"])
    if "boolValue" in value:
        flag = value["boolValue"]
        if type(flag) is not bool:
            raise OtlpDecodeError(f"boolValue is not true or false: {_shown(flag)}")
        return flag
    if "doubleValue" in value:
        return _json_double(value["doubleValue"])
    if "kvlistValue" in value:
        entries = _json_list(_json_object(value["kvlistValue"], "kvlistValue"), "values")
        result: dict[str, Any] = {}
        for pair in entries:
            key, item = _json_key_value(pair, depth + 1)
            result[key] = item
        return result
    if "arrayValue" in value:
        items = _json_list(_json_object(value["arrayValue"], "arrayValue"), "values")
        return [None if item is None else _json_any(item, depth + 1) for item in items]
    if "bytesValue" in value:
        return _json_str(value["bytesValue"], "bytesValue")  # base64 text, kept as such
    return None


def _json_object(value: object, what: str) -> dict[str, Any]:
    if type(value) is not dict:
        raise OtlpDecodeError(f"{what} is not an object: {_shown(value)}")
    return value


def _json_list(obj: dict[str, Any], key: str) -> list[Any]:
    value = obj.get(key)
    if value is None:
        return []
    if type(value) is not list:
        raise OtlpDecodeError(f"{key} is not an array: {_shown(value)}")
    return value


def _json_str(value: object, what: str) -> str:
    if value is None:
        return ""
    if type(value) is not str:
        raise OtlpDecodeError(f"{what} is not a string: {_shown(value)}")
    return value


def _json_int(value: object) -> int:
    if type(value) is int:
        return value
    if type(value) is str and _INT.fullmatch(value):
        return int(value)
    raise OtlpDecodeError(f"intValue is not an integer: {_shown(value)}")


def _json_double(value: object) -> float:
    if type(value) is float or type(value) is int:
        return float(value)
    if type(value) is str:
        special = _SPECIAL_DOUBLES.get(value)
        if special is not None:
            return special
        if len(value) <= 40:
            try:
                return float(value)
            except ValueError:
                pass
    raise OtlpDecodeError(f"doubleValue is not a number: {_shown(value)}")


def _json_uint64(value: object, what: str) -> int:
    if value is None:
        return 0
    if type(value) is str and _INT.fullmatch(value):
        value = int(value)
    if type(value) is int and 0 <= value < 1 << 64:
        return value
    raise OtlpDecodeError(f"{what} is not an unsigned 64-bit integer: {_shown(value)}")


def _shown(value: object) -> str:
    if type(value) is str:
        return repr(value[:40])
    if type(value) in (dict, list):
        return f"a JSON {'object' if type(value) is dict else 'array'}"
    return repr(value)[:40]


# -- protobuf ------------------------------------------------------------------------------


def _decode_protobuf(body: bytes, budget: _Budget) -> list[dict[str, Any]]:
    """The records of a protobuf request.

    The three outer levels (request, ``ResourceLogs``, ``ScopeLogs``) are walked here
    (resources are skipped unread); each ``LogRecord`` is parsed on its own by
    ``opentelemetry-proto``'s class, so that parsed objects live for one record at a
    time. A record that could hold more messages than the budget left (a message
    costs 2 bytes on the wire but ~60 parsed) is counted before it is parsed.
    """
    record_class = _record_class()
    steps = _Steps(budget)
    records: list[dict[str, Any]] = []
    try:
        for start, end in steps.fields(body, 0, len(body), 1):  # resource_logs
            for s_start, s_end in steps.fields(body, start, end, 2):  # scope_logs
                name, chunks = _scope_logs(body, s_start, s_end, steps, budget.records)
                budget.take_records(len(chunks))
                for r_start, r_end in chunks:
                    chunk = body[r_start:r_end]
                    if len(chunk) // 2 > budget.values:
                        _count_messages(chunk, budget, "LogRecord")
                    try:
                        record = record_class.FromString(chunk)
                    except Exception as exc:  # DecodeError: not the schema, not UTF-8
                        raise OtlpDecodeError(
                            f"a log record is not valid protobuf ({exc})"
                        ) from None
                    records.append(_pb_record(record, name, budget))
    except OtlpDecodeError:
        raise
    except Exception as exc:  # defensive: never a traceback for a body
        raise OtlpDecodeError(f"the body could not be read ({type(exc).__name__})") from None
    return records


def _scope_logs(
    body: bytes, start: int, end: int, steps: _Steps, records_left: int
) -> tuple[str, list[tuple[int, int]]]:
    """The scope name and the spans of the records of one ``ScopeLogs`` (at most
    ``records_left``)."""
    name = ""
    chunks: list[tuple[int, int]] = []
    for number, f_start, f_end in steps.all_fields(body, start, end):
        if number == 2:  # log_records
            if len(chunks) >= records_left:
                raise OtlpTooLarge(_TOO_MANY_RECORDS)
            chunks.append((f_start, f_end))
        elif number == 1:  # scope: its name (field 1); the last one wins, as in protobuf
            for _, n_start, n_end in steps.all_fields(body, f_start, f_end, only=1):
                try:
                    name = body[n_start:n_end].decode("utf-8")
                except UnicodeDecodeError:
                    raise OtlpDecodeError("the scope name is not UTF-8") from None
    return name, chunks


def _pb_record(record: Any, scope_name: str, budget: _Budget) -> dict[str, Any]:
    attributes = record.attributes
    budget.take_values(len(attributes))
    converted = {kv.key: _pb_any(kv.value, 0, budget) for kv in attributes}
    body = _pb_any(record.body, 0, budget) if record.HasField("body") else None
    when = record.time_unix_nano or record.observed_time_unix_nano
    return record_fields(converted, body, scope_name, when)


def _pb_any(value: Any, depth: int, budget: _Budget) -> Any:
    """A protobuf AnyValue as a plain value."""
    which = value.WhichOneof("value")
    if which == "string_value":
        return value.string_value
    if which == "int_value":
        return value.int_value
    if which == "bool_value":
        return value.bool_value
    if which == "double_value":
        return value.double_value
    if depth >= MAX_DEPTH and which in ("kvlist_value", "array_value"):
        raise OtlpDecodeError(f"values nest deeper than {MAX_DEPTH} levels")
    if which == "kvlist_value":
        entries = value.kvlist_value.values
        budget.take_values(len(entries))
        return {kv.key: _pb_any(kv.value, depth + 1, budget) for kv in entries}
    if which == "array_value":
        items = value.array_value.values
        budget.take_values(len(items))
        return [_pb_any(item, depth + 1, budget) for item in items]
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    return None


def _record_class() -> Any:
    try:
        from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord  # noqa: PLC0415
    except ImportError:
        raise OtlpUnsupportedType(
            "protobuf bodies need opentelemetry-proto (pip install 'bucket-logging[relay]'); "
            "send application/json"
        ) from None
    return LogRecord


class _Steps:
    """Walks the fields of the outer messages, each field taken from a budget (time)."""

    __slots__ = ("left",)

    def __init__(self, budget: _Budget) -> None:
        self.left = 4 * budget.values  # a valid request has 1 to 3 outer fields per record

    def fields(self, data: bytes, start: int, end: int, number: int) -> Iterator[tuple[int, int]]:
        """The spans of the length-delimited fields ``number`` of the message data[start:end]."""
        for _, s, e in self.all_fields(data, start, end, only=number):
            yield s, e

    def all_fields(
        self, data: bytes, start: int, end: int, only: int = 0
    ) -> Iterator[tuple[int, int, int]]:
        """(number, start, end) of the length-delimited fields of data[start:end] (those
        numbered ``only`` when given), as they are found; the other fields are skipped."""
        pos = start
        try:
            while pos < end:
                self.left -= 1
                if self.left < 0:
                    raise OtlpTooLarge("the request holds more protobuf fields than allowed")
                tag = data[pos]
                pos += 1
                if tag >= 0x80:
                    tag, pos = _varint(data, pos - 1)
                wire = tag & 7
                if wire == 2:
                    length = data[pos]
                    pos += 1
                    if length >= 0x80:
                        length, pos = _varint(data, pos - 1)
                    if pos + length > end:
                        raise OtlpDecodeError("a protobuf field runs past its message")
                    if not only or tag >> 3 == only:
                        yield tag >> 3, pos, pos + length
                    pos += length
                elif wire == 0:
                    _, pos = _varint(data, pos)
                elif wire == 1:
                    pos += 8
                elif wire == 5:
                    pos += 4
                else:
                    raise OtlpDecodeError(f"protobuf wire type {wire} is not OTLP")
        except IndexError:
            raise OtlpDecodeError("the protobuf body is truncated") from None
        if pos > end:
            raise OtlpDecodeError("a protobuf field runs past its message")


# The message fields of the OTLP logs schema, by message: field number -> message.
_SCHEMA: Final[dict[str, dict[int, tuple[str, int]]]] = {
    # message: {field number: (message, 1 when it counts as a value as the parse counts
    # them: an attribute or map entry, an array element)}
    "LogRecord": {5: ("AnyValue", 0), 6: ("KeyValue", 1)},
    "KeyValue": {2: ("AnyValue", 0)},
    "AnyValue": {5: ("ArrayValue", 0), 6: ("KeyValueList", 0)},
    "ArrayValue": {1: ("AnyValue", 1)},
    "KeyValueList": {1: ("KeyValue", 1)},
}
# How many fields (of any kind) the walk reads per value of the budget.
_FIELDS_PER_VALUE: Final = 8
# How deep messages of a valid record can nest: LogRecord > KeyValue > AnyValue, then
# two levels per nested value.
_MAX_MESSAGE_DEPTH: Final = 3 + 2 * MAX_DEPTH + 2


def _count_messages(body: bytes, budget: _Budget, message: str) -> None:
    """Walk the wire format of ``body`` (a ``message``) and check that the values inside
    (as the parse will count them) are within the budget, before anything is parsed.

    Raises :class:`OtlpTooLarge` past the budget (or past ``_FIELDS_PER_VALUE`` times
    as many fields: time), :class:`OtlpDecodeError` for wire data that is not a
    protobuf message. Costs no memory beyond a stack of ``_MAX_MESSAGE_DEPTH`` entries.
    """
    data = body
    stack: list[tuple[int, dict[int, tuple[str, int]]]] = []
    schema = _SCHEMA
    fields = schema[message]
    pos, end = 0, len(data)
    values = budget.values
    fields_left = _FIELDS_PER_VALUE * values  # time: unknown scalar fields cost no memory
    try:
        while True:
            while pos >= end:
                if pos > end:
                    raise OtlpDecodeError("a protobuf field runs past its message")
                if not stack:
                    return  # within the budget (the parse takes the values from it)
                end, fields = stack.pop()
            tag = data[pos]  # a tag and a length are nearly always one byte: inline
            pos += 1
            if tag >= 0x80:
                tag, pos = _varint(data, pos - 1)
            fields_left -= 1
            if fields_left < 0:
                raise OtlpTooLarge("the request holds more protobuf fields than allowed")
            wire = tag & 7
            if wire == 2:
                length = data[pos]
                pos += 1
                if length >= 0x80:
                    length, pos = _varint(data, pos - 1)
                child = fields.get(tag >> 3)
                if child is not None:
                    values -= child[1]
                    if values < 0:
                        raise OtlpTooLarge(_TOO_MANY_VALUES)
                    if len(stack) >= _MAX_MESSAGE_DEPTH:
                        raise OtlpDecodeError(f"values nest deeper than {MAX_DEPTH} levels")
                    stack.append((end, fields))
                    end = pos + length
                    fields = schema[child[0]]
                    continue
                pos += length
            elif wire == 0:
                _, pos = _varint(data, pos)
            elif wire == 1:
                pos += 8
            elif wire == 5:
                pos += 4
            else:
                raise OtlpDecodeError(f"protobuf wire type {wire} is not OTLP")
    except IndexError:
        raise OtlpDecodeError("the protobuf body is truncated") from None


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    byte = data[pos]
    if byte < 0x80:
        return byte, pos + 1
    result = byte & 0x7F
    shift = 7
    while True:
        pos += 1
        byte = data[pos]
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos + 1
        shift += 7
        if shift > 63:
            raise OtlpDecodeError("a protobuf varint is longer than 10 bytes")


# --------------------------------------------------------------------------- answers


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
