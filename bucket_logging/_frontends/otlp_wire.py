"""OTLP protobuf on the wire, and what one body may cost: the :class:`Budget`.

:class:`Budget` bounds one body: its records, its values (memory: a value parsed costs
at most :data:`VALUE_BYTES` bytes per unit of the budget; a protobuf value counts
:data:`VALUE_WEIGHT` units) and the protobuf fields read (time, for the outer levels
and for the records walked before they are parsed). A budget may charge a shared pool
as its values are taken (the relay's ``--max-objects``, shared by the requests in
progress): a body is charged for what it holds as it is read, not for what it could
hold up front. :class:`Steps` walks the outer messages, :func:`count_messages` the
messages of a record, both without building anything.

May import: nothing of the package.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Final

__all__ = [
    "FIELDS_PER_VALUE",
    "MAX_DEPTH",
    "MAX_WALK_FIELDS",
    "TOO_MANY_RECORDS",
    "VALUE_BYTES",
    "VALUE_WEIGHT",
    "Budget",
    "OtlpBusy",
    "OtlpDecodeError",
    "OtlpTooLarge",
    "OtlpUnsupportedType",
    "Steps",
    "count_messages",
    "varint",
]

#: How deep values may nest (maps in arrays in maps ...).
MAX_DEPTH: Final = 32
#: What one unit of a values budget may cost in memory once parsed, at most (bytes;
#: measured in tests/frontends/test_otlp_bounds.py).
VALUE_BYTES: Final = 100
#: Units of the budget one protobuf value (an attribute, a map entry, an array
#: element) takes: parsed into Python it costs up to about 145 bytes (a map value).
VALUE_WEIGHT: Final = 2
#: Protobuf fields a record's walk may read per unit of the budget: a value takes 2
#: to 4 fields on the wire (KeyValue, key, AnyValue and its field), per 2 units, and a
#: record a few scalars besides.
FIELDS_PER_VALUE: Final = 3
#: Fields any body may read besides (a record's scalars, the request's envelope).
FIELDS_SLACK: Final = 64
#: The most fields the walks of one body's records may read (about 0.3 s of CPU): a
#: record is walked only when it could hold more than the budget left (over a
#: megabyte, nearly always), and unknown scalar fields cost time, not memory.
MAX_WALK_FIELDS: Final = 1 << 19
#: Outer fields (ResourceLogs, ScopeLogs, their scalars) read per record allowed.
OUTER_FIELDS_PER_RECORD: Final = 4
#: A budget charges its pool this many values at a time.
CHARGE_BLOCK: Final = 4096


class OtlpDecodeError(ValueError):
    """The body is not an OTLP ``ExportLogsServiceRequest`` (the relay answers 400)."""


class OtlpTooLarge(OtlpDecodeError):
    """The body holds more records (or values) than allowed (the relay answers 413)."""


class OtlpUnsupportedType(OtlpDecodeError):
    """The content type is neither protobuf nor JSON (the relay answers 415)."""


class OtlpBusy(OtlpDecodeError):
    """The shared pool of values is spent by other requests now (the relay answers 503)."""


TOO_MANY_RECORDS: Final = "the request holds more log records than allowed"
_TOO_MANY_VALUES: Final = "the request holds more attributes and values than allowed"
_TOO_MANY_FIELDS: Final = "the request holds more protobuf fields than allowed"


class Budget:
    """What one body may still hold and cost (raising OtlpTooLarge past any of it).

    Args:
        records: log records.
        values: units of values (memory: see the module documentation).
        charge: called with the units taken, :data:`CHARGE_BLOCK` at a time, as they
            are taken (it raises :class:`OtlpBusy` to refuse); :attr:`charged` says
            how many were charged, for the caller to give back.
    """

    __slots__ = ("_charge", "_uncharged", "charged", "fields", "outer", "records", "values")

    def __init__(
        self, records: int, values: int, charge: Callable[[int], None] | None = None
    ) -> None:
        self.records = records
        self.values = values
        self.fields = min(FIELDS_PER_VALUE * values + FIELDS_SLACK, MAX_WALK_FIELDS)
        self.outer = OUTER_FIELDS_PER_RECORD * records + FIELDS_SLACK
        self._charge = charge
        self._uncharged = 0
        self.charged = 0

    def take_records(self, count: int) -> None:
        """Take ``count`` records."""
        self.records -= count
        if self.records < 0:
            raise OtlpTooLarge(TOO_MANY_RECORDS)

    def take_values(self, count: int) -> None:
        """Take ``count`` units of values (charging the pool as they add up)."""
        self.values -= count
        if self.values < 0:
            raise OtlpTooLarge(_TOO_MANY_VALUES)
        if self._charge is not None:
            self._uncharged += count
            if self._uncharged >= CHARGE_BLOCK:
                self.settle()

    def settle(self) -> None:
        """Charge the pool what was taken and not charged yet."""
        count, self._uncharged = self._uncharged, 0
        if count and self._charge is not None:
            self._charge(count)
            self.charged += count


class Steps:
    """Walks the fields of the outer messages, each field taken from the budget's
    ``outer`` (time: a valid request has 1 to 3 outer fields per record)."""

    __slots__ = ("budget",)

    def __init__(self, budget: Budget) -> None:
        self.budget = budget

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
                budget = self.budget
                budget.outer -= 1
                if budget.outer < 0:
                    raise OtlpTooLarge(_TOO_MANY_FIELDS)
                tag = data[pos]
                pos += 1
                if tag >= 0x80:
                    tag, pos = varint(data, pos - 1)
                wire = tag & 7
                if wire == 2:
                    length = data[pos]
                    pos += 1
                    if length >= 0x80:
                        length, pos = varint(data, pos - 1)
                    if pos + length > end:
                        raise OtlpDecodeError("a protobuf field runs past its message")
                    if not only or tag >> 3 == only:
                        yield tag >> 3, pos, pos + length
                    pos += length
                elif wire == 0:
                    _, pos = varint(data, pos)
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
    "LogRecord": {5: ("AnyValue", 0), 6: ("KeyValue", VALUE_WEIGHT)},
    "KeyValue": {2: ("AnyValue", 0)},
    "AnyValue": {5: ("ArrayValue", 0), 6: ("KeyValueList", 0)},
    "ArrayValue": {1: ("AnyValue", VALUE_WEIGHT)},
    "KeyValueList": {1: ("KeyValue", VALUE_WEIGHT)},
}
# How deep messages of a valid record can nest: LogRecord > KeyValue > AnyValue, then
# two levels per nested value.
_MAX_MESSAGE_DEPTH: Final = 3 + 2 * MAX_DEPTH + 2


def count_messages(body: bytes, budget: Budget, message: str) -> None:
    """Walk the wire format of ``body`` (a ``message``) and check that the values inside
    (as the parse will count them) are within the budget, before anything is parsed.

    Raises :class:`OtlpTooLarge` past the budget's values, or past its ``fields`` (time:
    the request's, shared by every record walked), :class:`OtlpDecodeError` for wire
    data that is not a protobuf message. Costs no memory beyond a stack of
    ``_MAX_MESSAGE_DEPTH`` entries.
    """
    data = body
    stack: list[tuple[int, dict[int, tuple[str, int]]]] = []
    schema = _SCHEMA
    fields = schema[message]
    pos, end = 0, len(data)
    values = budget.values
    fields_left = budget.fields  # time: unknown scalar fields cost no memory
    try:
        while True:
            while pos >= end:
                if pos > end:
                    raise OtlpDecodeError("a protobuf field runs past its message")
                if not stack:
                    budget.fields = fields_left
                    return  # within the budget (the parse takes the values from it)
                end, fields = stack.pop()
            tag = data[pos]  # a tag and a length are nearly always one byte: inline
            pos += 1
            if tag >= 0x80:
                tag, pos = varint(data, pos - 1)
            fields_left -= 1
            if fields_left < 0:
                raise OtlpTooLarge(_TOO_MANY_FIELDS)
            wire = tag & 7
            if wire == 2:
                length = data[pos]
                pos += 1
                if length >= 0x80:
                    length, pos = varint(data, pos - 1)
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
                _, pos = varint(data, pos)
            elif wire == 1:
                pos += 8
            elif wire == 5:
                pos += 4
            else:
                raise OtlpDecodeError(f"protobuf wire type {wire} is not OTLP")
    except IndexError:
        raise OtlpDecodeError("the protobuf body is truncated") from None


def varint(data: bytes, pos: int) -> tuple[int, int]:
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
