"""Both gRPC services through the one service layer, in process (issue 14 review): QTasks' ``qtasks.v1`` AddTask
and GetTask audited and mapped as QTasksFast's, AddTask's ``timeout`` bounded and waited without a thread,
``AddTasks`` keeping each call's options and naming a wrong call by its index, and the field of a bad value."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from qtasks_fast import QueueTasks, service
from qtasks_fast.grpc.server import build_server
from qtasks_fast.grpc.v1 import qtasks_fast_pb2 as pb
from qtasks_fast.grpc.v1 import qtasks_fast_pb2_grpc as pb_grpc
from qtasks_fast.plugins.grpc.core import qtasks_pb2, qtasks_pb2_grpc
from qtasks_fast.testing import WorkerThread

AUTH = (("authorization", "Bearer in-process-token"),)
INVALID, NOT_FOUND = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
MISSING = "00000000-0000-4000-8000-000000000000"


class Stubs:
    def __init__(self, app: QueueTasks, channel: grpc.aio.Channel) -> None:
        self.app = app
        self.q = qtasks_pb2_grpc.QTasksServiceStub(channel)
        self.s = pb_grpc.QTasksFastStub(channel)


@pytest.fixture
async def stubs() -> AsyncIterator[Stubs]:
    """A sync app (whose blocking calls used to take a thread each) on memory://, no worker: tasks stay queued."""
    app = QueueTasks("grpc-service-layer", broker_url="memory://")

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    @app.task
    def echo(*args: Any, **kwargs: Any) -> Any:
        return [args, kwargs]

    server = build_server(app, "in-process-token")
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield Stubs(app, channel)
    finally:
        await server.stop(None)


async def code_of(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value.code(), info.value.details() or ""


async def test_abandoned_waits_hold_no_thread_and_timeout_is_bounded(stubs: Stubs) -> None:
    """Finding 1: many AddTask(timeout=...) calls whose clients left must not stall every other call."""
    calls = [stubs.q.AddTask(qtasks_pb2.AddTaskRequest(name="add", args_json="[1, 2]", timeout=30), metadata=AUTH,
                             timeout=0.5) for _ in range(40)]
    codes = [code for code, _ in await asyncio.gather(*(code_of(c) for c in calls))]
    assert set(codes) == {grpc.StatusCode.DEADLINE_EXCEEDED}
    code, details = await code_of(stubs.q.GetTask(qtasks_pb2.GetTaskRequest(uuid=MISSING), metadata=AUTH, timeout=10))
    assert code == NOT_FOUND, details
    for bad in (1e9, float("inf"), float("nan"), -1.0):
        code, details = await code_of(stubs.q.AddTask(qtasks_pb2.AddTaskRequest(name="add", args_json="[1, 2]",
                                                                                timeout=bad), metadata=AUTH))
        assert code == INVALID and details.startswith("timeout:"), (bad, details)
    # not finished within the timeout: ok, and the uuid to poll
    later = await stubs.q.AddTask(qtasks_pb2.AddTaskRequest(name="add", args_json="[1, 2]", timeout=0.2),
                                  metadata=AUTH)
    assert later.ok and later.uuid and not later.result_json


async def test_qtasks_add_task_is_audited_and_mapped_by_the_service(stubs: Stubs,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Finding 2: the same submit as QTasksFast's: an audit entry, and a bug is INTERNAL (never UNAVAILABLE,
    which clients retry) in one line."""
    sent = await stubs.q.AddTask(qtasks_pb2.AddTaskRequest(name="add", args_json="[1, 2]"), metadata=AUTH)
    entries = await service.audit_entries(stubs.app)
    assert any(e.action == "submit" and sent.uuid in e.outcome for e in entries)

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(service, "submit", broken)
    code, details = await code_of(stubs.q.AddTask(qtasks_pb2.AddTaskRequest(name="add", args_json="[1, 2]"),
                                                  metadata=AUTH))
    assert (code, details) == (grpc.StatusCode.INTERNAL, "internal error (RuntimeError); the server's log has the "
                                                         "details")


async def test_qtasks_kwargs_are_the_tasks_own(stubs: Stubs) -> None:
    """Findings 2 and 13: kwargs_json keys named like add_task's options reach the task, nothing else."""
    sent = await stubs.q.AddTask(qtasks_pb2.AddTaskRequest(
        name="echo", kwargs_json='{"priority": 1, "countdown": 3600, "unique": "k", "timeout": 5}'), metadata=AUTH)
    assert sent.ok and sent.uuid
    record = stubs.app.get(sent.uuid)
    assert record is not None
    assert record.kwargs == {"priority": 1, "countdown": 3600, "unique": "k", "timeout": 5}


async def test_bad_values_are_invalid_argument_naming_their_field(stubs: Stubs) -> None:
    """Findings 6 and 14: kwargs errors name kwargs; NaN JSON and msgpack extension types are refused."""
    s, q = stubs.s, stubs.q
    cases = {
        "kwargs:": s.AddTask(pb.AddTaskRequest(name="add", kwargs=pb.Value(json='{"a": "x", "b": 1}')), metadata=AUTH),
        "kwargs: ": s.AddTask(pb.AddTaskRequest(name="add", kwargs=pb.Value(json='{"a": 1, "c": 2}')), metadata=AUTH),
        "args:": s.AddTask(pb.AddTaskRequest(name="add", args=pb.Value(msgpack=b"\x91\xd4\x05\x01")), metadata=AUTH),
        "args_json:": q.AddTask(qtasks_pb2.AddTaskRequest(name="echo", args_json="[NaN, Infinity]"), metadata=AUTH),
        "kwargs_json:": q.AddTask(qtasks_pb2.AddTaskRequest(name="add", kwargs_json='{"a": "x", "b": 1}'),
                                  metadata=AUTH),
    }
    for prefix, call in cases.items():
        code, details = await code_of(call)
        assert code == INVALID and details.startswith(prefix.strip()), (prefix, details)


async def test_not_found_lists_the_registered_names(stubs: Stubs) -> None:
    """Finding 10, on both services."""
    for call in (stubs.s.AddTask(pb.AddTaskRequest(name="nope"), metadata=AUTH),
                 stubs.q.AddTask(qtasks_pb2.AddTaskRequest(name="nope"), metadata=AUTH)):
        code, details = await code_of(call)
        assert code == NOT_FOUND and "registered: " in details and "add" in details.split("registered: ")[1]


async def test_bearer_scheme_in_any_case_as_rest(stubs: Stubs) -> None:
    """Finding 11: REST takes ``bearer``/``BEARER`` and spaces around the token; so does gRPC."""
    for given in ("bearer in-process-token", "BEARER  in-process-token "):
        code, _ = await code_of(stubs.q.GetTask(qtasks_pb2.GetTaskRequest(uuid=MISSING),
                                                metadata=(("authorization", given),)))
        assert code == NOT_FOUND
    code, _ = await code_of(stubs.q.GetTask(qtasks_pb2.GetTaskRequest(uuid=MISSING),
                                            metadata=(("authorization", "Basic in-process-token"),)))
    assert code == grpc.StatusCode.UNAUTHENTICATED


async def test_a_batch_keeps_each_calls_options(stubs: Stubs) -> None:
    """Finding 5: priority, countdown/eta and unique of each call, as a single AddTask takes them."""
    calls = [pb.AddTaskRequest(name="add", args=pb.Value(json="[1, 2]"), priority=7, countdown=3600, unique="u10"),
             pb.AddTaskRequest(name="add", args=pb.Value(json="[1, 2]"), priority=7, countdown=3600, unique="u10"),
             pb.AddTaskRequest(name="add", args=pb.Value(json="[3, 4]"), eta=4_000_000_000),
             pb.AddTaskRequest(name="add", args=pb.Value(json="[5, 6]"))]
    tasks = (await stubs.s.AddTasks(pb.AddTasksRequest(calls=calls), metadata=AUTH)).tasks
    assert [t.priority for t in tasks] == [7, 7, 0, 0]
    assert tasks[0].uuid == tasks[1].uuid  # one task for one unique key
    with WorkerThread(stubs.app):
        now = await stubs.s.GetTask(pb.GetTaskRequest(uuid=tasks[3].uuid, wait=20), metadata=AUTH)
        assert now.task.status == "success"
        for delayed in (tasks[0], tasks[2]):  # the worker ran the call without a delay, not these
            assert (await stubs.s.GetTask(pb.GetTaskRequest(uuid=delayed.uuid), metadata=AUTH)).task.status == "new"


async def test_a_wrong_call_of_a_batch_is_named_by_its_index(stubs: Stubs) -> None:
    """Finding 6: ``calls[i].<field>``, on the bulk path and on the path with options."""
    ok = pb.AddTaskRequest(name="add", args=pb.Value(json="[1, 2]"))
    cases = {
        "calls[2].args:": [ok, ok, pb.AddTaskRequest(name="add", args=pb.Value(json='["x", 1]'))],
        "calls[1].kwargs:": [ok, pb.AddTaskRequest(name="add", kwargs=pb.Value(json='{"a": 1, "c": 2}'))],
        "calls[1].args: ": [ok, pb.AddTaskRequest(name="add", args=pb.Value(json=f"[{10 ** 30}, 1]"))],
        "calls[0].countdown:": [pb.AddTaskRequest(name="add", args=pb.Value(json="[1, 2]"), countdown=float("nan")),
                                ok],
        "calls[1].priority:": [ok, pb.AddTaskRequest(name="add", args=pb.Value(json="[1, 2]"), priority=42)],
        "calls[0].wait:": [pb.AddTaskRequest(name="add", args=pb.Value(json="[1, 2]"), wait=1)],
        "calls[1].args:  ": [pb.AddTaskRequest(name="add", args=pb.Value(json="[1, 2]"), priority=1),
                             pb.AddTaskRequest(name="add", args=pb.Value(json='["x", 1]'))],
    }
    for prefix, calls in cases.items():
        code, details = await code_of(stubs.s.AddTasks(pb.AddTasksRequest(calls=calls), metadata=AUTH))
        assert code == INVALID and details.startswith(prefix.strip()), (prefix, details)
    listed = await stubs.s.ListTasks(pb.ListTasksRequest(), metadata=AUTH)
    assert list(listed.tasks) == []  # every batch was refused whole


def test_results_are_strict_json() -> None:
    """Finding 14: a result holding NaN is still JSON that Node/Go clients parse (``null``)."""
    from qtasks_fast.plugins.grpc.service import _dumps

    assert json.loads(_dumps({"x": float("nan"), "y": [1, "z"]})) == {"x": None, "y": [1, "z"]}


def test_a_submit_error_on_kwargs_keeps_the_surfaces_field_name() -> None:
    """QTasks' fields are ``args_json``/``kwargs_json``: a service error on ``kwargs`` is named so there."""
    from qtasks_fast.service.batch import with_arguments_field

    with pytest.raises(service.BadRequest) as info, with_arguments_field([], {"a": 1}, "args_json", "kwargs_json"):
        raise service.BadRequest("kwargs", "kwargs: 'a' is out of range")
    assert (info.value.field, str(info.value)) == ("kwargs_json", "kwargs_json: 'a' is out of range")
