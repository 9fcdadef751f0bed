"""OTLP/HTTP request bodies read within bounds: protobuf walked on the wire, JSON counted.

The bounds and the reading of :mod:`bucket_logging._frontends.otlp` (which says why):
:func:`decode_json` and :func:`decode_protobuf` turn an ``ExportLogsServiceRequest``
into records, each built by the mapping passed in, spending a :class:`Budget` of
records and values; a body over a bound raises :class:`OtlpTooLarge`, any other body
that is not OTLP :class:`OtlpDecodeError`.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable
from typing import Any, Final

import orjson

from .._runtime.diagnostics import report
from .otlp_wire import (
    MAX_DEPTH,
    TOO_MANY_RECORDS,
    VALUE_WEIGHT,
    Budget,
    OtlpBusy,
    OtlpDecodeError,
    OtlpTooLarge,
    OtlpUnsupportedType,
    Steps,
    count_messages,
)

__all__ = [
    "JSON",
    "MAX_DEPTH",
    "MAX_VALUES",
    "PROTOBUF",
    "Budget",
    "Build",
    "OtlpBusy",
    "OtlpDecodeError",
    "OtlpTooLarge",
    "OtlpUnsupportedType",
    "decode_json",
    "decode_protobuf",
]

#: How many nested values (attributes, array elements, map entries; and every other
#: message of a protobuf body) one body may hold: parsed objects cost far more memory
#: than their bytes on the wire (a 2-byte protobuf message is ~60 bytes parsed).
MAX_VALUES: Final = 1 << 19

PROTOBUF: Final = "protobuf"
JSON: Final = "json"


#: The mapping that turns a record's parts (attributes, body, scope name, time in
#: nanoseconds) into its fields (:func:`bucket_logging._frontends.otlp.record_fields`).
Build = Callable[[dict[str, Any], Any, str, int], dict[str, Any]]


# -- OTLP/JSON -------------------------------------------------------------------------

_INT: Final = re.compile(r"-?[0-9]{1,20}")
_SPECIAL_DOUBLES: Final = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def decode_json(body: bytes, budget: Budget, build: Build) -> list[dict[str, Any]]:
    """The records of an OTLP/JSON body, each built by ``build`` (the mapping)."""
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
                records.append(_json_record(_json_object(record, "logRecords[]"), name, build))
    return records


def _json_record(record: dict[str, Any], scope_name: str, build: Build) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    for pair in _json_list(record, "attributes"):
        key, value = _json_key_value(pair, 0)
        attributes[key] = value
    body = record.get("body")
    when = _time(
        _json_uint64(record.get("timeUnixNano"), "timeUnixNano"),
        _json_uint64(record.get("observedTimeUnixNano"), "observedTimeUnixNano"),
    )
    return build(attributes, None if body is None else _json_any(body, 0), scope_name, when)


#: The first time (Unix nanoseconds) an OTLP record may not have: 2**63, 2262-04-11.
#: OpenTelemetry's SDKs and the Collector hold times as signed 64-bit nanoseconds;
#: above, a ``fixed64`` is no time (2**64-1 would be sent as the year 2554).
END_TIME_UNIX_NANO: Final = 1 << 63


def _time(time_unix_nano: int, observed: int) -> int:
    """The record's time: ``timeUnixNano``, else ``observedTimeUnixNano``; one past
    :data:`END_TIME_UNIX_NANO` is refused (reported) and the next one used (0: the
    time of tracking)."""
    for value, name in ((time_unix_nano, "timeUnixNano"), (observed, "observedTimeUnixNano")):
        if value < END_TIME_UNIX_NANO:
            if value:
                return value
            continue
        report(
            "otlp-time",
            "bucket_logging: an OTLP log record's %s %d is past 2262 (no signed 64-bit "
            "nanosecond time): refused, its items carry %s",
            name,
            value,
            "the observed time or the time of tracking"
            if name == "timeUnixNano"
            else "the time of tracking",
        )
    return 0


def _non_finite(value: float) -> float | None:
    """``value``, or None (reported) for NaN and the infinities, which JSON cannot carry."""
    if math.isfinite(value):
        return value
    report(
        "otlp-non-finite",
        "bucket_logging: an OTLP attribute holds %r, which JSON cannot carry: sent as null",
        value,
    )
    return None


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
        return _non_finite(_json_double(value["doubleValue"]))
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
    """An ``intValue``: a signed 64-bit integer (as a number or a string), kept exact;
    anything beyond that range is no OTLP ``intValue`` and refuses the body."""
    number = value if type(value) is int else None
    if type(value) is str and _INT.fullmatch(value):
        number = int(value)
    if number is None:
        raise OtlpDecodeError(f"intValue is not an integer: {_shown(value)}")
    if not -(1 << 63) <= number < 1 << 63:
        raise OtlpDecodeError(f"intValue is outside the signed 64-bit range: {_shown(value)}")
    return number


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


def decode_protobuf(body: bytes, budget: Budget, build: Build) -> list[dict[str, Any]]:
    """The records of an OTLP protobuf body, each built by ``build`` (the mapping)."""
    """The records of a protobuf request.

    The three outer levels (request, ``ResourceLogs``, ``ScopeLogs``) are walked here
    (resources are skipped unread); each ``LogRecord`` is parsed on its own by
    ``opentelemetry-proto``'s class, so that parsed objects live for one record at a
    time. A record that could hold more messages than the budget left (a message
    costs 2 bytes on the wire but ~60 parsed) is counted before it is parsed.
    """
    record_class = _record_class()
    steps = Steps(budget)
    records: list[dict[str, Any]] = []
    try:
        for start, end in steps.fields(body, 0, len(body), 1):  # resource_logs
            for s_start, s_end in steps.fields(body, start, end, 2):  # scope_logs
                name, chunks = _scope_logs(body, s_start, s_end, steps, budget.records)
                budget.take_records(len(chunks))
                for r_start, r_end in chunks:
                    chunk = body[r_start:r_end]
                    if len(chunk) // 2 > budget.values:
                        count_messages(chunk, budget, "LogRecord")
                    try:
                        record = record_class.FromString(chunk)
                    except Exception as exc:  # DecodeError: not the schema, not UTF-8
                        raise OtlpDecodeError(
                            f"a log record is not valid protobuf ({exc})"
                        ) from None
                    records.append(_pb_record(record, name, budget, build))
    except OtlpDecodeError:
        raise
    except Exception as exc:  # defensive: never a traceback for a body
        raise OtlpDecodeError(f"the body could not be read ({type(exc).__name__})") from None
    budget.settle()
    return records


def _scope_logs(
    body: bytes, start: int, end: int, steps: Steps, records_left: int
) -> tuple[str, list[tuple[int, int]]]:
    """The scope name and the spans of the records of one ``ScopeLogs`` (at most
    ``records_left``)."""
    name = ""
    chunks: list[tuple[int, int]] = []
    for number, f_start, f_end in steps.all_fields(body, start, end):
        if number == 2:  # log_records
            if len(chunks) >= records_left:
                raise OtlpTooLarge(TOO_MANY_RECORDS)
            chunks.append((f_start, f_end))
        elif number == 1:  # scope: its name (field 1); the last one wins, as in protobuf
            for _, n_start, n_end in steps.all_fields(body, f_start, f_end, only=1):
                try:
                    name = body[n_start:n_end].decode("utf-8")
                except UnicodeDecodeError:
                    raise OtlpDecodeError("the scope name is not UTF-8") from None
    return name, chunks


def _pb_record(record: Any, scope_name: str, budget: Budget, build: Build) -> dict[str, Any]:
    attributes = record.attributes
    budget.take_values(VALUE_WEIGHT * len(attributes))
    converted = {kv.key: _pb_any(kv.value, 0, budget) for kv in attributes}
    body = _pb_any(record.body, 0, budget) if record.HasField("body") else None
    when = _time(record.time_unix_nano, record.observed_time_unix_nano)
    return build(converted, body, scope_name, when)


def _pb_any(value: Any, depth: int, budget: Budget) -> Any:
    """A protobuf AnyValue as a plain value."""
    which = value.WhichOneof("value")
    if which == "string_value":
        return value.string_value
    if which == "int_value":
        return value.int_value
    if which == "bool_value":
        return value.bool_value
    if which == "double_value":
        return _non_finite(value.double_value)
    if depth >= MAX_DEPTH and which in ("kvlist_value", "array_value"):
        raise OtlpDecodeError(f"values nest deeper than {MAX_DEPTH} levels")
    if which == "kvlist_value":
        entries = value.kvlist_value.values
        budget.take_values(VALUE_WEIGHT * len(entries))
        return {kv.key: _pb_any(kv.value, depth + 1, budget) for kv in entries}
    if which == "array_value":
        items = value.array_value.values
        budget.take_values(VALUE_WEIGHT * len(items))
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
