"""OTLP values the API cannot take are refused and reported, never sent changed
(issue 30, item 8): a ``timeUnixNano`` past signed 64-bit nanoseconds, an ``intValue``
beyond 64 bits, NaN and the infinities, an id over :data:`MAX_ID_CHARS` characters
(from every front end); and the documented memory bound per unit of the values budget
is true for protobuf values (measured here)."""

from __future__ import annotations

import logging
import tracemalloc
from typing import Any

import orjson
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from support import FakeSender

from bucket_logging import BucketHandler
from bucket_logging._frontends.jsonlines import JsonLines
from bucket_logging._frontends.otlp import OtlpDecodeError, decode_export_logs, record_fields
from bucket_logging._frontends.otlp_decode import decode_protobuf
from bucket_logging._frontends.otlp_wire import VALUE_BYTES, VALUE_WEIGHT, Budget
from bucket_logging._items.validation import MAX_ID_CHARS

PB = "application/x-protobuf"
JSON = "application/json"
NOW_NS = 1_796_000_000 * 10**9


def _json(*records: dict[str, Any]) -> bytes:
    return orjson.dumps({"resourceLogs": [{"scopeLogs": [{"logRecords": list(records)}]}]})


def _pb(*records: LogRecord) -> bytes:
    request = ExportLogsServiceRequest()
    request.resource_logs.add().scope_logs.add().log_records.extend(records)
    return request.SerializeToString()


def _attrs(**values: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": v} for k, v in values.items()]


def test_a_time_past_signed_64_bit_nanoseconds_is_refused_and_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    top = 2**64 - 1
    with caplog.at_level(logging.WARNING, logger="bucket_logging"):
        (json_fields,) = decode_export_logs(
            _json({"timeUnixNano": str(top), "observedTimeUnixNano": str(NOW_NS)}),
            JSON,
            max_records=10,
        )
        (pb_fields,) = decode_export_logs(_pb(LogRecord(time_unix_nano=top)), PB, max_records=10)
    assert json_fields["timestamp"] == NOW_NS / 1e9  # the observed time
    assert "timestamp" not in pb_fields  # the time of tracking
    assert "18446744073709551615" in caplog.text and "2262" in caplog.text
    (ok,) = decode_export_logs(_pb(LogRecord(time_unix_nano=2**63 - 1)), PB, max_records=1)
    assert ok["timestamp"] == (2**63 - 1) / 1e9


def test_an_int_value_is_kept_exact_within_64_bits_and_refused_beyond() -> None:
    for text in ("9223372036854775807", "-9223372036854775808", "12345678901234567"):
        (fields,) = decode_export_logs(
            _json({"attributes": _attrs(user_id={"intValue": text})}), JSON, max_records=1
        )
        assert fields["user_id"] == int(text) and type(fields["user_id"]) is int
    for text in ("12345678901234567890", "99999999999999999999", "-9223372036854775809"):
        with pytest.raises(OtlpDecodeError, match="64-bit"):
            decode_export_logs(
                _json({"attributes": _attrs(user_id={"intValue": text})}), JSON, max_records=1
            )
    with pytest.raises(OtlpDecodeError, match="64-bit"):
        decode_export_logs(
            _json({"attributes": _attrs(user_id={"intValue": 2**63})}), JSON, max_records=1
        )


@pytest.mark.parametrize("special", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinities_are_reported_not_silently_null(
    special: str, caplog: pytest.LogCaptureFixture
) -> None:
    value = float(special.replace("Infinity", "inf"))
    with caplog.at_level(logging.WARNING, logger="bucket_logging"):
        (json_fields,) = decode_export_logs(
            _json({"attributes": _attrs(x={"doubleValue": special})}), JSON, max_records=1
        )
        record = LogRecord(attributes=[KeyValue(key="x", value=AnyValue(double_value=value))])
        (pb_fields,) = decode_export_logs(_pb(record), PB, max_records=1)
    assert json_fields["x"] is None and pb_fields["x"] is None
    assert "which JSON cannot carry" in caplog.text


def test_an_id_over_the_documented_length_is_refused_from_otlp_and_every_front_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    long = "u" * (MAX_ID_CHARS + 1)
    sender = FakeSender()
    front = JsonLines(sender=sender)
    (fields,) = decode_export_logs(
        _json(
            {"attributes": _attrs(bucket_event={"stringValue": "E"}, user_id={"stringValue": long})}
        ),
        JSON,
        max_records=1,
    )
    _, problem = front.track_checked(fields)
    assert problem is not None and f"over the {MAX_ID_CHARS} allowed" in problem
    assert sender.items == []
    ok, _ = front.track_checked({"bucket_event": "E", "user_id": "u" * MAX_ID_CHARS})
    assert ok and len(sender.items) == 1
    handler = BucketHandler(sender=sender)
    log = logging.getLogger("tests.otlp_bounds.ids")
    log.addHandler(handler)
    log.propagate = False
    try:
        with caplog.at_level(logging.WARNING, logger="bucket_logging"):
            log.warning("e", extra={"bucket_event": "E", "user_id": "x" * 1_000_000})
            log.warning("e", extra={"bucket_event": "E", "user_id": 1, "company_id": long})
    finally:
        log.removeHandler(handler)
    assert len(sender.items) == 1
    assert f"over the {MAX_ID_CHARS} allowed" in caplog.text


def _request_of(values: int, kind: str) -> tuple[bytes, int]:
    per = 500
    records = []
    for _ in range(values // per):
        record = LogRecord()
        for i in range(per):
            kv = record.attributes.add()
            kv.key = f"k{i}"
            if kind == "string":
                kv.value.string_value = "v"
            elif kind == "int":
                kv.value.int_value = 10**12 + i
            elif kind == "double":
                kv.value.double_value = i + 0.5
            elif kind == "map":
                kv.value.kvlist_value.SetInParent()
            elif kind == "array":
                kv.value.array_value.SetInParent()
        records.append(record)
    return _pb(*records), (values // per) * per


@pytest.mark.parametrize("kind", ["string", "int", "double", "map", "array"])
def test_a_unit_of_the_values_budget_costs_at_most_its_documented_bytes(kind: str) -> None:
    body, values = _request_of(20_000, kind)
    budget = Budget(10**6, 10**8)

    tracemalloc.start()
    try:
        records = decode_protobuf(body, budget, record_fields)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    units = 10**8 - budget.values
    assert units == VALUE_WEIGHT * values
    assert len(records) == values // 500
    assert peak / units <= VALUE_BYTES, f"{peak / units:.0f} bytes a unit ({kind})"
