"""Values of the gRPC gateway (issue 14): arguments arrive as JSON or msgpack, an absent or empty value is no
arguments, anything else is INVALID_ARGUMENT naming the field; results go out in the encoding asked for, and a
value neither format holds goes out as its ``str`` (as QTasks' plugin sends it)."""

from __future__ import annotations

import datetime as dt

import msgspec
import pytest

from qtasks_fast.grpc import convert
from qtasks_fast.grpc.v1 import qtasks_fast_pb2 as pb
from qtasks_fast.service import BadRequest


def test_arguments_in_either_encoding_and_absent_ones() -> None:
    assert convert.decoded(pb.AddTaskRequest(), "args", list) == []
    assert convert.decoded(pb.AddTaskRequest(args=pb.Value()), "args", list) == []
    assert convert.decoded(pb.AddTaskRequest(args=pb.Value(json='[1, "a"]')), "args", list) == [1, "a"]
    packed = pb.AddTaskRequest(kwargs=pb.Value(msgpack=msgspec.msgpack.encode({"a": 1})))
    assert convert.decoded(packed, "kwargs", dict) == {"a": 1}


@pytest.mark.parametrize("value, field, kind, says", [
    (pb.Value(json="[1,"), "args", list, "not valid json"),
    (pb.Value(json='{"a": 1}'), "args", list, "must be an array"),
    (pb.Value(msgpack=b"\xc1"), "kwargs", dict, "not valid msgpack"),
    (pb.Value(msgpack=msgspec.msgpack.encode([1])), "kwargs", dict, "must be an object"),
    (pb.Value(json='{"a": ' + "[" * 3000 + "]" * 3000 + "}"), "kwargs", dict, "nested too deeply"),
])
def test_bad_arguments_name_their_field(value: pb.Value, field: str, kind: type, says: str) -> None:
    with pytest.raises(BadRequest) as info:
        convert.decoded(pb.AddTaskRequest(**{field: value}), field, kind)
    assert info.value.field == field and str(info.value).startswith(f"{field}: ") and says in str(info.value)


def test_results_in_the_encoding_asked_for() -> None:
    class Odd:
        def __str__(self) -> str:
            return "odd"

    assert convert.value({"when": dt.date(2026, 1, 2), "x": Odd()}, pb.JSON).json == '{"when":"2026-01-02","x":"odd"}'
    assert msgspec.msgpack.decode(convert.value((1, 2), pb.MSGPACK).msgpack) == [1, 2]


def test_a_wide_int_result_is_answered_in_both_encodings() -> None:
    """A result wider than 64 bits (stored since issue 11) is answered, not an INTERNAL error: JSON holds it as a
    number, msgpack as the extension records use, which ``decode_result`` (or any client's ext hook) reads back."""
    from qtasks_fast.schemas.bigint import decode_result

    assert convert.value([2**70, 1], pb.JSON).json == f"[{2**70},1]"
    assert decode_result(convert.value([2**70, 1], pb.MSGPACK).msgpack) == [2**70, 1]
