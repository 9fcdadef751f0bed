"""OTLP log records become the fields of a JSON line: protobuf and JSON bodies, the
answers, and the records whose tags are invalid counted one by one."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest
from google.protobuf.json_format import MessageToDict
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from support import FakeSender

from bucket_logging._frontends.jsonlines import JsonLines
from bucket_logging._frontends.otlp import (
    OtlpUnsupportedType,
    decode_export_logs,
    export_logs_response,
    media_type,
    record_fields,
    rpc_status,
    track_records,
)

PB = "application/x-protobuf"
JSON = "application/json"
T_NS = 1_767_323_045_678_000_000  # 2026-01-02T03:04:05.678Z


def av(value: Any) -> AnyValue:
    """A Python value as a protobuf AnyValue."""
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, dict):
        return AnyValue(kvlist_value=KeyValueList(values=kvs(value)))
    if isinstance(value, list):
        return AnyValue(array_value=ArrayValue(values=[av(v) for v in value]))
    raise TypeError(value)


def kvs(attributes: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=av(v)) for k, v in attributes.items()]


def request(*records: LogRecord, scope: str = "app.auth", **resource: Any) -> bytes:
    """A protobuf ExportLogsServiceRequest with one resource and one scope."""
    return ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(
                resource=Resource(attributes=kvs(resource)),
                scope_logs=[
                    ScopeLogs(scope=InstrumentationScope(name=scope), log_records=list(records))
                ],
            )
        ]
    ).SerializeToString()


def record(body: Any = None, time: int = T_NS, **attributes: Any) -> LogRecord:
    rec = LogRecord(time_unix_nano=time, attributes=kvs(attributes))
    if body is not None:
        rec.body.CopyFrom(av(body))
    return rec


def json_request(*records: dict[str, Any], scope: str = "app.auth") -> bytes:
    return orjson.dumps(
        {"resourceLogs": [{"scopeLogs": [{"scope": {"name": scope}, "logRecords": list(records)}]}]}
    )


def decode(body: bytes, content_type: str = PB, **options: Any) -> list[dict[str, Any]]:
    return decode_export_logs(body, content_type, max_records=options.pop("max_records", 1000))


# --------------------------------------------------------------------------- the mapping


def test_protobuf_attributes_are_the_fields_with_plain_values() -> None:
    body = request(
        record(
            "User ada signed in",
            bucket_event="Signed in",
            user_id=42,
            bucket_attributes={"plan": "pro", "seats": 3, "trial": False},
            ratio=0.5,
            tags=["a", 1, True, {"k": "v"}],
            raw=b"\x00\xff",
        ),
        service="api",  # a resource attribute: not read
    )
    assert decode(body) == [
        {
            "bucket_event": "Signed in",
            "user_id": 42,
            "bucket_attributes": {"plan": "pro", "seats": 3, "trial": False},
            "ratio": 0.5,
            "tags": ["a", 1, True, {"k": "v"}],
            "raw": base64.b64encode(b"\x00\xff").decode(),
            "event": "User ada signed in",
            "logger": "app.auth",
            "timestamp": pytest.approx(T_NS / 1e9, abs=1e-6),
        }
    ]


def test_json_and_protobuf_bodies_of_one_request_give_the_same_fields() -> None:
    rec = record("hi", bucket_event="E", user_id=7, bucket_attributes={"n": [1, 2.5, "x"]})
    rec.trace_id = bytes.fromhex("5b8efff798038103d269b633813fc60c")
    rec.span_id = bytes.fromhex("eee19b7ec3c1b174")
    rec.severity_number = 9
    rec.severity_text = "INFO"
    rec.observed_time_unix_nano = T_NS + 5
    proto = request(rec)
    as_json = MessageToDict(ExportLogsServiceRequest.FromString(proto))
    # OTLP/JSON: ids in hex (protobuf's own JSON mapping would give base64)
    log = as_json["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]
    log["traceId"] = "5b8efff798038103d269b633813fc60c"
    log["spanId"] = "eee19b7ec3c1b174"
    assert decode(orjson.dumps(as_json), JSON) == decode(proto)


def test_json_sixty_four_bit_integers_as_strings_or_numbers_and_unknown_fields() -> None:
    records = [
        {
            "timeUnixNano": str(T_NS),
            "body": {"stringValue": "a"},
            "attributes": [
                {"key": "user_id", "value": {"intValue": "9007199254740993"}},  # > 2**53
                {"key": "n", "value": {"intValue": 5}},
                {"key": "d", "value": {"doubleValue": "2.5"}},
                {"key": "inf", "value": {"doubleValue": "Infinity"}},
                {"key": "empty", "value": {}},
                {"key": "absent"},
                {"key": "future", "value": {"someNewValue": 1}},
            ],
            "someFutureField": {"x": [1, 2]},
            "traceId": "5b8efff798038103d269b633813fc60c",
            "eventName": "login",
        },
        {"observedTimeUnixNano": T_NS, "body": None, "attributes": None},
    ]
    first, second = decode(json_request(*records), JSON)
    assert first == {
        "user_id": 9007199254740993,
        "n": 5,
        "d": 2.5,
        "inf": None,  # (JSON cannot carry it: reported)
        "empty": None,
        "absent": None,
        "future": None,
        "event": "a",
        "logger": "app.auth",
        "timestamp": pytest.approx(T_NS / 1e9, abs=1e-6),
    }
    assert second == {"logger": "app.auth", "timestamp": pytest.approx(T_NS / 1e9, abs=1e-6)}


def test_time_is_the_event_time_else_the_observed_time_else_absent() -> None:
    observed = record("x", time=0)
    observed.observed_time_unix_nano = T_NS + 1_000_000_000
    both = record("y", time=T_NS)
    both.observed_time_unix_nano = T_NS + 1_000_000_000
    fields = decode(request(observed, both, record("z", time=0)))
    assert fields[0]["timestamp"] == pytest.approx(T_NS / 1e9 + 1, abs=1e-6)
    assert fields[1]["timestamp"] == pytest.approx(T_NS / 1e9, abs=1e-6)
    assert "timestamp" not in fields[2]


def test_flat_dotted_keys_are_read_as_maps() -> None:
    fields = record_fields(
        {
            "bucket_event": "Upgraded",
            "bucket_attributes.plan": "pro",
            "bucket_attributes.seats.max": 5,  # only the first dot splits
            "bucket_user.name": "Ada",
            "bucket_company.tier": "gold",
            "bucket_feedback.score": 4,
            "user.id": "u1",  # not a tag: stays as it is
            "bucket_attributes_x.y": 1,  # not a tag prefix
        },
        None,
        "",
        0,
    )
    assert fields == {
        "bucket_event": "Upgraded",
        "bucket_attributes": {"plan": "pro", "seats.max": 5},
        "bucket_user": {"name": "Ada"},
        "bucket_company": {"tier": "gold"},
        "bucket_feedback": {"score": 4},
        "user.id": "u1",
        "bucket_attributes_x.y": 1,
    }
    merged = record_fields({"bucket_attributes": {"a": 1}, "bucket_attributes.b": 2}, None, "", 0)
    assert merged == {"bucket_attributes": {"a": 1, "b": 2}}
    kept = record_fields({"bucket_attributes": "x", "bucket_attributes.b": 2}, None, "", 0)
    assert kept == {"bucket_attributes": "x", "bucket_attributes.b": 2}


def test_a_map_body_gives_fields_and_the_attributes_win() -> None:
    fields = decode(
        request(
            record(
                {"event": "Report viewed", "user_id": 1, "report": "sales"},
                user_id=2,
            )
        )
    )
    assert fields[0]["event"] == "Report viewed"
    assert fields[0]["user_id"] == 2
    assert fields[0]["report"] == "sales"
    other = decode(request(record(42), record(True), record([1, "a"])))
    assert [f["event"] for f in other] == ["42", "true", '[1,"a"]']


def test_content_types() -> None:
    assert media_type("application/x-protobuf") == "protobuf"
    assert media_type("Application/JSON; charset=utf-8") == "json"
    assert media_type("text/plain") is None
    assert media_type(None) is None
    assert decode(json_request(), "application/json; charset=utf-8") == []
    assert decode(b"{}", JSON) == []
    assert decode(b"", PB) == []  # the empty message is a valid (empty) request
    with pytest.raises(OtlpUnsupportedType):
        decode(b"{}", "text/plain")


# --------------------------------------------------------------------------- answers


def test_export_logs_response_in_the_request_content_type() -> None:
    assert export_logs_response(PB) == b""
    assert export_logs_response(JSON) == b"{}"
    assert ExportLogsServiceResponse.FromString(export_logs_response(PB)) == (
        ExportLogsServiceResponse()
    )
    partial = ExportLogsServiceResponse.FromString(
        export_logs_response(PB, rejected=3, error_message="bad tags é")
    )
    assert partial.partial_success.rejected_log_records == 3
    assert partial.partial_success.error_message == "bad tags é"
    assert orjson.loads(export_logs_response(JSON, rejected=3, error_message="bad")) == {
        "partialSuccess": {"rejectedLogRecords": "3", "errorMessage": "bad"}
    }
    big = ExportLogsServiceResponse.FromString(export_logs_response(PB, rejected=2**40))
    assert big.partial_success.rejected_log_records == 2**40
    # text/plain etc.: answered in JSON
    assert export_logs_response("text/plain", rejected=1) == (
        b'{"partialSuccess":{"rejectedLogRecords":"1"}}'
    )


def test_rpc_status_in_the_request_content_type() -> None:
    status = Status.FromString(rpc_status(PB, 3, "the body is not OTLP ü"))
    assert (status.code, status.message) == (3, "the body is not OTLP ü")
    assert orjson.loads(rpc_status(JSON, 14, "stopping")) == {"code": 14, "message": "stopping"}
    assert Status.FromString(rpc_status(PB, 0, "")) == Status()


# --------------------------------------------------------------------------- tracking


def front(**options: Any) -> tuple[JsonLines, FakeSender]:
    sender = FakeSender()
    return JsonLines(sender=sender, **options), sender


def test_decoded_records_are_tracked_like_ship_lines() -> None:
    lines, sender = front()
    body = request(
        record(
            "signed in",
            bucket_event="Signed in",
            user_id=42,
            company_id="acme",
            bucket_attributes={"plan": "pro"},
        ),
        record("profile", user_id=42, bucket_user={"name": "Ada"}),
        record("upgrade", user_id=42, bucket_event="Upgraded", **{"bucket_attributes.seats": 5}),
        record("untagged", user_id=42),
    )
    assert track_records(lines, decode(body)) == (3, 0, "")
    assert sender.calls == [
        {
            "type": "event",
            "event": "Signed in",
            "userId": 42,
            "companyId": "acme",
            "attributes": {"plan": "pro"},
        },
        {"type": "user", "userId": 42, "attributes": {"name": "Ada"}},
        {"type": "event", "event": "Upgraded", "userId": 42, "attributes": {"seats": 5}},
    ]
    assert all(item.to_dict()["timestamp"] == "2026-01-02T03:04:05.678Z" for item in sender.items)


def test_invalid_tags_are_counted_per_record_and_the_valid_records_still_delivered() -> None:
    lines, sender = front()
    body = request(
        record("ok", bucket_event="Good", user_id=1),
        record("bad name", bucket_event=5, user_id=2),
        record("no user", bucket_event="Orphaned"),
        record("half", bucket_event="Half", user_id=3, bucket_user="not a map"),
        record("ok too", bucket_event="Also good", user_id=4),
    )
    tracked, rejected, message = track_records(lines, decode(body))
    assert (tracked, rejected) == (5, 3)
    assert message.startswith("3 log record(s) with invalid tracking tags; the first: ")
    assert "bucket_event must be the event name" in message
    assert sender.events == ["Good", "Half", "Also good"]


def test_track_checked_tells_a_lines_refused_calls() -> None:
    lines, sender = front()
    assert lines.track_checked({"bucket_event": "E", "user_id": 1}) == (True, None)
    assert lines.track_checked({"message": "untagged"}) == (False, None)
    tracked, problem = lines.track_checked({"bucket_event": "E"})
    assert tracked
    assert problem is not None
    assert "user" in problem
    # nothing is collected outside track_checked
    assert lines.track({"bucket_event": 3, "user_id": 1})
    assert lines.track_checked({"bucket_event": "F", "user_id": 1}) == (True, None)
    assert sender.events == ["E", "F"]


def test_user_id_field_of_the_semantic_conventions() -> None:
    lines, sender = front(user_id_field="user.id")
    body = json_request(
        {
            "body": {"stringValue": "signed in"},
            "attributes": [
                {"key": "bucket_event", "value": {"stringValue": "Signed in"}},
                {"key": "user.id", "value": {"stringValue": "u-1"}},
            ],
        }
    )
    assert track_records(lines, decode(body, JSON)) == (1, 0, "")
    assert sender.calls == [{"type": "event", "event": "Signed in", "userId": "u-1"}]


def test_rules_match_the_body_and_the_scope_name() -> None:
    rules = [
        {"match": "User * signed in", "event": "Signed in", "logger": "app.auth"},
        {"match": "Report viewed", "event": "Viewed report", "attributes": "*"},
    ]
    lines, sender = front(rules=rules)
    body = request(
        record("User ada signed in", user_id=1),
        record("User bob signed in", user_id=2, scope_only="x"),
        record("Report viewed", user_id=3, report="sales"),
    )
    other_scope = request(record("User eve signed in", user_id=4), scope="app.other")
    track_records(lines, decode(body) + decode(other_scope))
    assert sender.calls == [
        {"type": "event", "event": "Signed in", "userId": 1},
        {"type": "event", "event": "Signed in", "userId": 2},
        # "*": the record's own attributes, without the structural keys
        {"type": "event", "event": "Viewed report", "userId": 3, "attributes": {"report": "sales"}},
    ]


def test_protobuf_without_opentelemetry_proto_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "opentelemetry.proto.logs.v1.logs_pb2", None)
    with pytest.raises(OtlpUnsupportedType, match=r"bucket-logging\[relay\]"):
        decode(request(record("x")))
    assert decode(json_request({"body": {"stringValue": "x"}}), JSON)  # JSON needs nothing
