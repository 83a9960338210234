"""QTasks' gRPC plugins (qtasks_fast.plugins.grpc): a worker serves qtasks.v1.QTasksService AddTask/GetTask,
through the app's own calls, behind a bearer token; called here with a Python gRPC client on a free port."""

from __future__ import annotations

import json
from collections.abc import Iterator

import grpc
import pytest

from qtasks_fast import QueueTasks
from qtasks_fast import asyncio as qasyncio
from qtasks_fast.exceptions import ConfigError
from qtasks_fast.plugins.grpc import AsyncgRPCPlugin, SyncgRPCPlugin, qtasks_pb2, qtasks_pb2_grpc
from qtasks_fast.testing import WorkerThread
from tests.conftest import free_port

TOKEN = "t0ken-for-tests"
AUTH = (("authorization", f"Bearer {TOKEN}"),)
ENV_AUTH = (("authorization", "Bearer from-env"),)


def shop(app: QueueTasks | qasyncio.QueueTasks) -> None:
    """The tasks every test app has: typed arguments, so validation can refuse a call."""

    @app.task(name="add")
    def add(a: int, b: int) -> int:
        return a + b

    @app.task(name="fail")
    def fail(why: str) -> None:
        raise RuntimeError(why)


@pytest.fixture
def served() -> Iterator[tuple[str, type]]:
    """A sync app whose worker (a thread, memory:// broker) runs SyncgRPCPlugin on a free port."""
    app = QueueTasks("grpc-plugin", broker_url="memory://")
    shop(app)
    port = free_port()
    app.add_plugin(SyncgRPCPlugin(app, port=port, token=TOKEN))
    with WorkerThread(app, broker_url="memory://"):
        yield f"127.0.0.1:{port}", app


def stub(target: str) -> qtasks_pb2_grpc.QTasksServiceStub:
    channel = grpc.insecure_channel(target)
    grpc.channel_ready_future(channel).result(timeout=20)
    return qtasks_pb2_grpc.QTasksServiceStub(channel)


def code_of(call: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()  # type: ignore[operator]
    return info.value.code(), info.value.details()


def test_worker_serves_add_task_and_get_task(served: tuple[str, type]) -> None:
    s = stub(served[0])
    done = s.AddTask(qtasks_pb2.AddTaskRequest(name="add", args_json="[2, 3]", timeout=10), metadata=AUTH)
    assert done.ok and json.loads(done.result_json) == 5
    got = s.GetTask(qtasks_pb2.GetTaskRequest(uuid=done.uuid, include_result=True), metadata=AUTH)
    assert (got.ok, got.status, json.loads(got.result_json)) == (True, "success", 5)
    # no timeout: enqueued, answered at once with the uuid; kwargs go through too
    sent = s.AddTask(qtasks_pb2.AddTaskRequest(name="add", kwargs_json='{"a": 40, "b": 2}'), metadata=AUTH)
    assert sent.ok and sent.uuid and not sent.result_json
    got = s.GetTask(qtasks_pb2.GetTaskRequest(uuid=sent.uuid), metadata=AUTH)
    assert got.ok and got.status and not got.result_json  # no result unless include_result


def test_failed_task_traceback(served: tuple[str, type]) -> None:
    s = stub(served[0])
    done = s.AddTask(qtasks_pb2.AddTaskRequest(name="fail", args_json='["broken on purpose"]', timeout=10),
                     metadata=AUTH)
    got = s.GetTask(qtasks_pb2.GetTaskRequest(uuid=done.uuid, include_result=True), metadata=AUTH)
    assert got.status == "error" and "broken on purpose" in got.traceback


@pytest.mark.parametrize("name", ["nope", "add_typo"])
def test_unknown_task_is_not_found(served: tuple[str, type], name: str) -> None:
    s = stub(served[0])
    code, details = code_of(lambda: s.AddTask(qtasks_pb2.AddTaskRequest(name=name), metadata=AUTH))
    assert code == grpc.StatusCode.NOT_FOUND and f"no task {name!r}" in details


@pytest.mark.parametrize("args_json, kwargs_json", [
    ("[1]", ""),  # one argument missing
    ('["x", "y"]', ""),  # not ints
    ("[1, 2, 3]", ""),  # one too many
    ("", '{"a": 1, "c": 2}'),  # unknown keyword
    ("[1, ", ""),  # not JSON
    ('{"a": 1}', ""),  # args_json not a list
])
def test_bad_arguments_are_invalid_argument(served: tuple[str, type], args_json: str, kwargs_json: str) -> None:
    s = stub(served[0])
    req = qtasks_pb2.AddTaskRequest(name="add", args_json=args_json, kwargs_json=kwargs_json)
    code, details = code_of(lambda: s.AddTask(req, metadata=AUTH))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details


def test_unknown_uuid_is_not_found_and_malformed_is_invalid(served: tuple[str, type]) -> None:
    s = stub(served[0])
    code, _ = code_of(lambda: s.GetTask(qtasks_pb2.GetTaskRequest(uuid="0" * 8 + "-0000-4000-8000-" + "0" * 12),
                                        metadata=AUTH))
    assert code == grpc.StatusCode.NOT_FOUND
    code, _ = code_of(lambda: s.GetTask(qtasks_pb2.GetTaskRequest(uuid="not-a-uuid"), metadata=AUTH))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("metadata", [(), (("authorization", "Bearer wrong"),), (("authorization", TOKEN),)])
def test_calls_without_the_token_are_refused(served: tuple[str, type], metadata: tuple[tuple[str, str], ...]) -> None:
    s = stub(served[0])
    code, details = code_of(lambda: s.AddTask(qtasks_pb2.AddTaskRequest(name="add", args_json="[1, 2]"),
                                              metadata=metadata))
    assert code == grpc.StatusCode.UNAUTHENTICATED and "Bearer" in details
    code, _ = code_of(lambda: s.GetTask(qtasks_pb2.GetTaskRequest(uuid="x"), metadata=metadata))
    assert code == grpc.StatusCode.UNAUTHENTICATED


def test_safe_defaults() -> None:
    plugin = SyncgRPCPlugin(QueueTasks("grpc-defaults", broker_url="memory://"))
    assert (plugin.host, plugin.port) == ("127.0.0.1", 50051)  # QTasks' port, but not every interface


async def test_no_token_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QTASKS_GRPC_TOKEN", raising=False)
    monkeypatch.delenv("QTASKS_WEB_TOKEN", raising=False)
    plugin = AsyncgRPCPlugin(qasyncio.QueueTasks("grpc-no-token", broker_url="memory://"), port=free_port())
    with pytest.raises(ConfigError, match="QTASKS_GRPC_TOKEN") as info:
        await plugin.start()
    assert "\n" not in str(info.value)


async def test_insecure_on_a_network_address_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 14: no token is allowed on loopback only (insecure=True), never where other hosts reach the port."""
    monkeypatch.delenv("QTASKS_GRPC_TOKEN", raising=False)
    monkeypatch.delenv("QTASKS_WEB_TOKEN", raising=False)
    plugin = AsyncgRPCPlugin(qasyncio.QueueTasks("grpc-open", broker_url="memory://"), host="0.0.0.0",
                             port=free_port(), insecure=True)
    with pytest.raises(ConfigError, match="refusing to serve 0.0.0.0 without a token") as info:
        await plugin.start()
    assert "\n" not in str(info.value)


async def test_async_app_with_env_token_and_insecure(monkeypatch: pytest.MonkeyPatch) -> None:
    """The async client's coroutines are awaited on the loop; the token may come from the environment."""
    app = qasyncio.QueueTasks("grpc-async", broker_url="memory://")
    shop(app)
    monkeypatch.setenv("QTASKS_GRPC_TOKEN", "from-env")
    plugin = AsyncgRPCPlugin(app, port=free_port())
    await plugin.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{plugin.port}") as channel:
            s = qtasks_pb2_grpc.QTasksServiceStub(channel)
            sent = await s.AddTask(qtasks_pb2.AddTaskRequest(name="add", args_json="[1, 2]"),
                                   metadata=ENV_AUTH)
            assert sent.ok and sent.uuid
            got = await s.GetTask(qtasks_pb2.GetTaskRequest(uuid=sent.uuid), metadata=ENV_AUTH)
            assert got.ok and got.status
            with pytest.raises(grpc.RpcError) as info:
                await s.AddTask(qtasks_pb2.AddTaskRequest(name="nope"), metadata=ENV_AUTH)
            assert info.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        await plugin.stop()
    monkeypatch.delenv("QTASKS_GRPC_TOKEN")
    monkeypatch.delenv("QTASKS_WEB_TOKEN", raising=False)
    open_plugin = AsyncgRPCPlugin(app, port=free_port(), insecure=True)
    await open_plugin.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{open_plugin.port}") as channel:
            sent = await qtasks_pb2_grpc.QTasksServiceStub(channel).AddTask(
                qtasks_pb2.AddTaskRequest(name="add", args_json="[1, 2]"))
            assert sent.ok
    finally:
        await open_plugin.stop()


async def test_taken_port_is_a_one_line_error() -> None:
    app = qasyncio.QueueTasks("grpc-port", broker_url="memory://")
    first = AsyncgRPCPlugin(app, port=free_port(), insecure=True)
    await first.start()
    try:
        second = AsyncgRPCPlugin(app, port=first.port, insecure=True)
        with pytest.raises(ConfigError, match="port") as info:
            await second.start()
        assert "\n" not in str(info.value)
    finally:
        await first.stop()


def test_protocol_is_qtasks_v1() -> None:
    """A client generated from QTasks' qtasks.proto must talk to us: same service, methods and field numbers."""
    service = qtasks_pb2.DESCRIPTOR.services_by_name["QTasksService"]
    assert service.full_name == "qtasks.v1.QTasksService"
    assert {m.name: (m.input_type.name, m.output_type.name) for m in service.methods} == {
        "AddTask": ("AddTaskRequest", "AddTaskResponse"), "GetTask": ("GetTaskRequest", "GetTaskResponse")}
    fields = {name: {f.name: (f.number, f.type) for f in msg.fields}
              for name, msg in qtasks_pb2.DESCRIPTOR.message_types_by_name.items()}
    d = qtasks_pb2.DESCRIPTOR.message_types_by_name["AddTaskRequest"].fields_by_name["name"]
    STR, BOOL, DOUBLE, INT32 = d.TYPE_STRING, d.TYPE_BOOL, d.TYPE_DOUBLE, d.TYPE_INT32
    assert fields == {
        "AddTaskRequest": {"name": (1, STR), "args_json": (2, STR), "kwargs_json": (3, STR), "timeout": (4, DOUBLE),
                           "priority": (5, INT32)},
        "AddTaskResponse": {"ok": (1, BOOL), "uuid": (2, STR), "result_json": (3, STR), "error": (4, STR)},
        "GetTaskRequest": {"uuid": (1, STR), "include_result": (2, BOOL)},
        "GetTaskResponse": {"ok": (1, BOOL), "status": (2, STR), "result_json": (3, STR), "traceback": (4, STR),
                            "error": (5, STR)},
    }


def test_added_the_way_qtasks_examples_add_it_it_serves_without_per_task_hooks() -> None:
    """QTasks' examples/grpc/based_async_app_grpc.py: ``app.add_plugin(AsyncgRPCPlugin(app=app),
    trigger_names=["-"])``. Accepted (the names choose nothing for a server plugin), the worker serves, and the
    plugin sits at ``worker_start`` only: no per-task trigger, so tasks keep the worker's plain path."""
    app = qasyncio.QueueTasks("grpc-qtasks-way", broker_url="memory://")
    shop(app)
    port = free_port()
    plugin = AsyncgRPCPlugin(app=app, port=port, token=TOKEN)
    app.add_plugin(plugin, trigger_names=["-"])
    assert [n for n, ps in app.plugins.by_trigger.items() if plugin in ps] == ["worker_start"]
    with WorkerThread(app, broker_url="memory://"):
        done = stub(f"127.0.0.1:{port}").AddTask(qtasks_pb2.AddTaskRequest(name="add", args_json="[2, 3]", timeout=10),
                                                metadata=AUTH)
    assert done.ok and json.loads(done.result_json) == 5


def test_the_plugin_serves_qtasks_fast_v1_on_the_same_port(served: tuple[str, type]) -> None:
    """Issue 14: the worker's plugin serves our richer service next to QTasks', behind the same token."""
    from qtasks_fast.grpc.v1 import qtasks_fast_pb2 as pb
    from qtasks_fast.grpc.v1 import qtasks_fast_pb2_grpc as pb_grpc

    channel = grpc.insecure_channel(served[0])
    grpc.channel_ready_future(channel).result(timeout=20)
    ours = pb_grpc.QTasksFastStub(channel)
    done = ours.AddTask(pb.AddTaskRequest(name="add", args=pb.Value(json="[2, 3]"), wait=10), metadata=AUTH).task
    assert (done.status, json.loads(done.result.json)) == ("success", 5)
    listed = ours.ListTasks(pb.ListTasksRequest(task_name="add"), metadata=AUTH).tasks
    assert [t.uuid for t in listed] == [done.uuid]
    code, _ = code_of(lambda: ours.ListTasks(pb.ListTasksRequest(), metadata=()))
    assert code == grpc.StatusCode.UNAUTHENTICATED
