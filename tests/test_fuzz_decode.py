"""No input crashes the worker: arbitrary bytes and msgpack values through the decoder and the preparation step.

Property (hypothesis): for any fetch reply, ``decode_batch`` raises nothing and puts every message either in
``ready`` or in ``bad`` (with a reason); every ready delivery, handed to the executor as the worker hands it
(``Executor.submit``: arguments bound and validated, the call, the outcome with its failure path and
retry child), ends in exactly one outcome, ``success`` or ``error``, and nothing raises out. Inputs include
garbage bytes, nesting thousands of levels deep, and envelopes with wrong field types and malformed meta
(retry attempt number, chain steps). Both the compiled core and the same source as pure Python are run.
"""

from __future__ import annotations

import uuid as _uuid
import warnings
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qtasks_fast import QueueTasks

with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)
    from qtasks_fast import _corelib

from qtasks_fast.worker.executor import Executor

CORES = {"compiled": _corelib.core,
         "pure": _corelib._load_source(Path(_corelib.__file__).with_name("_core.pyx"), "core_fuzz_py")}
#: the executor's submit of each variant: the compiled one takes the compiled core's typed Delivery only, the pure
#: core's Deliveries go to the pure twin of the worker's run loop (a worker never mixes them)
RUN_PYX = Path(_corelib.__file__).with_name("worker") / "_run.pyx"
SUBMITS = {"compiled": Executor.submit, "pure": _corelib._load_source(RUN_PYX, "run_fuzz_py").submit}
FIELDS = ["u", "n", "a", "k", "p", "q", "t", "r", "rp", "x", "m", "e"]
UUID = "123e4567-e89b-42d3-a456-426614174000"

app = QueueTasks("fuzz", broker_url="memory://")


@app.task(executor="inline")
def add(a: int, b: int) -> int:
    return a + b


@app.task(executor="inline")
def echo(*args: Any, **kwargs: Any) -> Any:
    return [args, kwargs]


@app.task(executor="inline", retry=3, retry_backoff=1.0)
def fail(*args: Any, **kwargs: Any) -> None:
    raise RuntimeError("fails on purpose")


scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64 - 1),
                    st.floats(allow_nan=True), st.text(max_size=40), st.binary(max_size=40))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=5),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=5)),
                      max_leaves=30)


def deep(depth: int, kind: int) -> bytes:
    """msgpack of a value nested ``depth`` levels (arrays or maps), without recursing here."""
    if kind == 0:
        return b"\x91" * depth + b"\xc0"
    return b"\x81\xa1k" * depth + b"\xc0"


@st.composite
def envelopes(draw: st.DrawFn) -> bytes:
    """A map shaped like an envelope: known keys with right or wrong values, sometimes deep arguments."""
    fields: dict[str, Any] = {}
    fields["u"] = draw(st.one_of(st.just(UUID), st.just(str(_uuid.uuid4()).upper()), values))
    fields["n"] = draw(st.one_of(st.sampled_from(["add", "echo", "fail", "nosuch"]), values))
    for key in draw(st.lists(st.sampled_from(FIELDS[2:]), max_size=6, unique=True)):
        if key == "m":
            fields["m"] = draw(st.one_of(
                values,
                st.fixed_dictionaries({"at": values}),
                st.fixed_dictionaries({"ch": values}),
                st.fixed_dictionaries({"ch": st.lists(st.tuples(st.sampled_from(["add", "echo", "zz"]),
                                                               values, values), max_size=2)})))
        elif key == "a":
            fields["a"] = draw(st.one_of(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=3), values))
        else:
            fields[key] = draw(values)
    body = msgspec.msgpack.encode(fields)
    depth = draw(st.one_of(st.just(0), st.integers(min_value=1, max_value=6000)))
    if depth and isinstance(fields.get("u"), str):  # arguments nested ``depth`` levels deep
        head = msgspec.msgpack.encode({k: v for k, v in fields.items() if k != "a"})
        n = len(fields) - ("a" in fields)
        if n < 15:
            body = bytes([0x80 | (n + 1)]) + head[1:] + b"\xa1a\x91" + deep(depth, draw(st.integers(0, 1)))
    return body


bodies = st.one_of(st.binary(max_size=200), values.map(msgspec.msgpack.encode), envelopes(),
                   st.builds(deep, st.integers(min_value=1, max_value=6000), st.integers(0, 1)))


@pytest.mark.parametrize("variant", list(CORES))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(batch=st.lists(bodies, min_size=1, max_size=8))
def test_no_input_escapes_the_decoder_or_the_preparation_step(variant: str, batch: list[bytes]) -> None:
    core = CORES[variant]
    flat: list[Any] = []
    for i, body in enumerate(batch):
        flat += [0, f"{i}-0".encode(), body, 1]
    ready: list[Any] = []
    bad: list[tuple[Any, str]] = []
    core.decode_batch("default", flat, app.tasks, 1 << 20, ready, bad)
    assert sorted([d.msg_id for d in ready] + [d.msg_id for d, _ in bad]) == sorted(flat[1::4])
    assert all(isinstance(reason, str) and reason for _, reason in bad)
    outcomes: list[tuple[Any, ...]] = []
    ex = Executor("fuzz-0", 1, lambda outcome, followups: outcomes.append(outcome))
    try:
        for d in ready:
            SUBMITS[variant](ex, d)  # inline tasks: bound, called and settled synchronously, as in the worker
    finally:
        ex.shutdown()
    assert [o[0] for o in outcomes] == ready  # one outcome each, none lost, none twice
    assert {o[1] for o in outcomes} <= {"success", "error"}


@pytest.mark.parametrize("variant", list(CORES))
def test_a_deeply_nested_message_is_dead_lettered_and_its_batch_mates_run(variant: str) -> None:
    core = CORES[variant]
    good = msgspec.msgpack.encode({"u": UUID, "n": "add", "a": [1, 2]})
    poison = good[:-3] + b"\x91" + deep(5000, 0)  # same envelope, its arguments 5000 levels deep
    ready: list[Any] = []
    bad: list[tuple[Any, str]] = []
    core.decode_batch("default", [0, b"1-0", good, 1, 0, b"2-0", poison, 1, 0, b"3-0", good, 1], app.tasks,
                      1 << 20, ready, bad)
    assert [d.msg_id for d in ready] == [b"1-0", b"3-0"]
    [(d, reason)] = bad
    assert d.msg_id == b"2-0" and "RecursionError" in reason and "nested too deeply" in reason, reason
