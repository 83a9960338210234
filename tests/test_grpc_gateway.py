"""``qtasks-fast -A app grpc`` (issue 14) as a process, called by a real grpcio client from the test process:
every method of ``qtasks_fast.v1.QTasksFast``, QTasks' ``qtasks.v1.QTasksService`` on the same port, the error
matrix (NOT_FOUND, INVALID_ARGUMENT naming the field, UNAUTHENTICATED, PERMISSION_DENIED, UNAVAILABLE),
``WatchTasks`` following a task live and resuming after a reconnect, TLS and mutual TLS, and the refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import msgspec
import pytest
from apps.grpckit import AUTH, TOKEN, Served, code_of, json_value, make_certs, served
from apps.web_app import build
from conftest import APPS, cli_env, free_port

from qtasks_fast.grpc.v1 import qtasks_fast_pb2 as pb
from qtasks_fast.plugins.grpc.core import qtasks_pb2
from qtasks_fast.testing import WorkerThread

NOT_FOUND, INVALID = grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT
DENIED = grpc.StatusCode.PERMISSION_DENIED
MISSING = "00000000-0000-4000-8000-000000000000"


@pytest.fixture
def server(redis_url: str, app_name: str, tmp_path: Path) -> Iterator[Served]:
    with served(redis_url, app_name, tmp_path / "grpc.log") as s:
        yield s


@pytest.fixture
def worker(redis_url: str, app_name: str) -> Iterator[None]:
    with WorkerThread(build(app_name, redis_url)):
        yield


def test_every_method(server: Served, worker: None) -> None:
    s = server.ours()
    done = s.AddTask(pb.AddTaskRequest(name="add", args=json_value("[2, 3]"), wait=10), metadata=AUTH).task
    assert (done.status, json.loads(done.result.json), done.task_name) == ("success", 5, "add")
    # msgpack both ways, keyword arguments, a priority
    packed = s.AddTask(pb.AddTaskRequest(name="add", kwargs=pb.Value(msgpack=msgspec.msgpack.encode({"a": 1, "b": 2})),
                                         priority=3, wait=10, encoding=pb.MSGPACK), metadata=AUTH).task
    assert msgspec.msgpack.decode(packed.result.msgpack) == 3 and packed.priority == 3
    assert msgspec.msgpack.decode(packed.kwargs.msgpack) == {"a": 1, "b": 2}
    # a countdown: accepted, still new right after
    later = s.AddTask(pb.AddTaskRequest(name="add", args=json_value("[0, 0]"), countdown=3600), metadata=AUTH).task
    assert later.status == "new"
    # a batch, in order
    batch = s.AddTasks(pb.AddTasksRequest(calls=[pb.AddTaskRequest(name="add", args=json_value(f"[{i}, {i}]"))
                                                 for i in range(3)]), metadata=AUTH).tasks
    assert [json.loads(t.args.json) for t in batch] == [[0, 0], [1, 1], [2, 2]]
    # GetTask waits, and answers the record with its timings, retry chain and logs
    got = s.GetTask(pb.GetTaskRequest(uuid=batch[2].uuid, wait=10, include_logs=True), metadata=AUTH)
    assert got.task.status == "success" and json.loads(got.task.result.json) == 4
    assert got.started_at <= got.finished_at and list(got.retry_chain) == [batch[2].uuid]
    assert any("adding 2 and 2" in line for line in got.logs)
    assert any("adding 2 and 2" in line for line in s.GetLogs(pb.GetLogsRequest(uuid=batch[2].uuid),
                                                                 metadata=AUTH).lines)
    # ListTasks: a filter and the cursor, as REST
    first = s.ListTasks(pb.ListTasksRequest(task_name="add", status="success", limit=2), metadata=AUTH)
    assert len(first.tasks) == 2 and first.cursor and all(t.status == "success" for t in first.tasks)
    rest = s.ListTasks(pb.ListTasksRequest(task_name="add", status="success", limit=100, cursor=first.cursor),
                       metadata=AUTH)
    seen = [t.uuid for t in [*first.tasks, *rest.tasks]]
    assert len(seen) == len(set(seen)) and {done.uuid, batch[2].uuid} <= set(seen) and later.uuid not in seen
    # cancel the delayed one, restart a finished one
    cancelled = s.CancelTask(pb.CancelTaskRequest(uuid=later.uuid, reason="not needed"), metadata=AUTH)
    assert cancelled.result == "queued"
    assert s.GetTask(pb.GetTaskRequest(uuid=later.uuid), metadata=AUTH).task.status == "cancel"
    again = s.RestartTask(pb.RestartTaskRequest(uuid=done.uuid), metadata=AUTH).task
    assert again.uuid != done.uuid and again.restart_of == done.uuid
    assert json.loads(s.GetTask(pb.GetTaskRequest(uuid=again.uuid, wait=10), metadata=AUTH).task.result.json) == 5


def test_qtasks_service_on_the_same_port(server: Served, worker: None) -> None:
    """The test written from QTasks' qtasks.proto (issue 14): a QTasks gRPC client works unchanged."""
    q = server.qtasks()
    done = q.AddTask(qtasks_pb2.AddTaskRequest(name="add", args_json="[2, 3]", timeout=5), metadata=AUTH)
    assert done.ok and done.result_json == "5"
    assert q.GetTask(qtasks_pb2.GetTaskRequest(uuid=done.uuid), metadata=AUTH).status == "success"


def test_errors_are_the_codes_grpc_users_expect(server: Served) -> None:
    s = server.ours()

    def add(**kw: object) -> object:
        return s.AddTask(pb.AddTaskRequest(**kw), metadata=AUTH)  # type: ignore[arg-type]

    code, details = code_of(lambda: add(name="ad"))
    assert code == NOT_FOUND and "did you mean 'add'" in details
    code, _ = code_of(lambda: s.AddTasks(pb.AddTasksRequest(calls=[pb.AddTaskRequest(name="add"),
                                                                   pb.AddTaskRequest(name="nope")]), metadata=AUTH))
    assert code == NOT_FOUND
    assert s.ListTasks(pb.ListTasksRequest(), metadata=AUTH).tasks == []  # the batch was refused whole
    for call in (lambda: s.GetTask(pb.GetTaskRequest(uuid=MISSING), metadata=AUTH),
                 lambda: s.CancelTask(pb.CancelTaskRequest(uuid=MISSING), metadata=AUTH),
                 lambda: s.RestartTask(pb.RestartTaskRequest(uuid=MISSING), metadata=AUTH),
                 lambda: s.GetLogs(pb.GetLogsRequest(uuid=MISSING), metadata=AUTH),
                 lambda: list(s.WatchTasks(pb.WatchTasksRequest(uuids=[MISSING]), metadata=AUTH)),
                 lambda: list(s.WatchTasks(pb.WatchTasksRequest(task_names=["ad"]), metadata=AUTH))):
        assert code_of(call)[0] == NOT_FOUND
    invalid = {
        "args": lambda: add(name="add", args=json_value("[2, ")),  # malformed JSON
        "args ": lambda: add(name="add", args=json_value('{"a": 1}')),  # not an array
        "kwargs": lambda: add(name="add", kwargs=pb.Value(msgpack=b"\xc1")),  # malformed msgpack
        "args  ": lambda: add(name="add", args=json_value('["x", "y"]')),  # wrong argument types
        "args   ": lambda: add(name="add", args=json_value(f"[{10**26}, 1]")),  # beyond 64 bits
        "kwargs ": lambda: add(name="add", args=json_value("[1, 2]"), kwargs=json_value('{"x": ' + "[" * 3000
                                                                                         + "]" * 3000 + "}")),
        "wait": lambda: add(name="add", args=json_value("[1, 2]"), wait=100),
        "priority": lambda: add(name="add", args=json_value("[1, 2]"), priority=42),
        "uuid": lambda: s.GetTask(pb.GetTaskRequest(uuid="not-a-uuid"), metadata=AUTH),
        "status": lambda: s.ListTasks(pb.ListTasksRequest(status="done"), metadata=AUTH),
        "limit": lambda: s.ListTasks(pb.ListTasksRequest(limit=5000), metadata=AUTH),
        "cursor": lambda: s.ListTasks(pb.ListTasksRequest(cursor="garbage"), metadata=AUTH),
        "created_after": lambda: s.ListTasks(pb.ListTasksRequest(created_after=float("nan")), metadata=AUTH),
        "statuses": lambda: list(s.WatchTasks(pb.WatchTasksRequest(statuses=["done"]), metadata=AUTH)),
        "after": lambda: list(s.WatchTasks(pb.WatchTasksRequest(after="nonsense"), metadata=AUTH)),
        "calls[1].args": lambda: s.AddTasks(pb.AddTasksRequest(calls=[
            pb.AddTaskRequest(name="add", args=json_value("[1, 2]")), pb.AddTaskRequest(name="add",
                                                                                     args=json_value("[1"))]),
            metadata=AUTH),
    }
    for field, call in invalid.items():
        code, details = code_of(call)
        assert code == INVALID and details.startswith(field.strip()), (field, code, details)
    assert "Traceback" not in server.log.read_text()


def test_auth_matrix(server: Served) -> None:
    """Every method of both services refuses a call without the right bearer token."""
    s, q = server.ours(), server.qtasks()
    calls = [lambda md: s.AddTask(pb.AddTaskRequest(name="add"), metadata=md),
             lambda md: s.AddTasks(pb.AddTasksRequest(), metadata=md),
             lambda md: s.GetTask(pb.GetTaskRequest(uuid=MISSING), metadata=md),
             lambda md: s.ListTasks(pb.ListTasksRequest(), metadata=md),
             lambda md: s.CancelTask(pb.CancelTaskRequest(uuid=MISSING), metadata=md),
             lambda md: s.RestartTask(pb.RestartTaskRequest(uuid=MISSING), metadata=md),
             lambda md: s.GetLogs(pb.GetLogsRequest(uuid=MISSING), metadata=md),
             lambda md: list(s.WatchTasks(pb.WatchTasksRequest(until_idle=True), metadata=md)),
             lambda md: q.AddTask(qtasks_pb2.AddTaskRequest(name="add"), metadata=md),
             lambda md: q.GetTask(qtasks_pb2.GetTaskRequest(uuid=MISSING), metadata=md)]
    for metadata in [(), (("authorization", "Bearer wrong"),), (("authorization", TOKEN),)]:
        for call in calls:
            code, details = code_of(lambda: call(metadata))  # noqa: B023 - called at once
            assert code == grpc.StatusCode.UNAUTHENTICATED and "Bearer" in details
    assert list(s.WatchTasks(pb.WatchTasksRequest(until_idle=True), metadata=AUTH)) == []
    from qtasks_fast.service.throttle import BURST  # wrong tokens from one address: limited, right one or not

    for _ in range(BURST):
        code_of(lambda: s.ListTasks(pb.ListTasksRequest(), metadata=(("authorization", "Bearer guess"),)))
    for metadata in ((("authorization", "Bearer guess"),), AUTH):
        code, details = code_of(lambda: s.ListTasks(pb.ListTasksRequest(), metadata=metadata))  # noqa: B023
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "try again in" in details


def test_read_only_refuses_changes_and_serves_reads(redis_url: str, app_name: str, tmp_path: Path) -> None:
    with served(redis_url, app_name, tmp_path / "ro.log", "--read-only") as server:
        s, q = server.ours(), server.qtasks()
        for call in (lambda: s.AddTask(pb.AddTaskRequest(name="add", args=json_value("[1, 2]")), metadata=AUTH),
                     lambda: s.AddTasks(pb.AddTasksRequest(calls=[pb.AddTaskRequest(name="add")]), metadata=AUTH),
                     lambda: s.CancelTask(pb.CancelTaskRequest(uuid=MISSING), metadata=AUTH),
                     lambda: s.RestartTask(pb.RestartTaskRequest(uuid=MISSING), metadata=AUTH),
                     lambda: q.AddTask(qtasks_pb2.AddTaskRequest(name="add", args_json="[1, 2]"), metadata=AUTH)):
            code, details = code_of(call)
            assert code == DENIED and "read-only" in details
        assert s.ListTasks(pb.ListTasksRequest(), metadata=AUTH).tasks == []


def test_an_unreachable_broker_is_unavailable(app_name: str, tmp_path: Path) -> None:
    down = f"redis://127.0.0.1:{free_port()}/0"
    with served(down, app_name, tmp_path / "down.log") as server:
        s, q = server.ours(), server.qtasks()
        for call in (lambda: s.AddTask(pb.AddTaskRequest(name="add", args=json_value("[1, 2]")), metadata=AUTH),
                     lambda: s.AddTasks(pb.AddTasksRequest(calls=[pb.AddTaskRequest(name="add",
                                                                                    args=json_value("[1, 2]"))]),
                                        metadata=AUTH),
                     lambda: s.GetTask(pb.GetTaskRequest(uuid=MISSING), metadata=AUTH),
                     lambda: s.ListTasks(pb.ListTasksRequest(), metadata=AUTH),
                     lambda: s.CancelTask(pb.CancelTaskRequest(uuid=MISSING), metadata=AUTH),
                     lambda: s.RestartTask(pb.RestartTaskRequest(uuid=MISSING), metadata=AUTH),
                     lambda: s.GetLogs(pb.GetLogsRequest(uuid=MISSING), metadata=AUTH),
                     lambda: list(s.WatchTasks(pb.WatchTasksRequest(), metadata=AUTH)),
                     lambda: list(s.WatchTasks(pb.WatchTasksRequest(task_names=["add"]), metadata=AUTH)),
                     lambda: q.AddTask(qtasks_pb2.AddTaskRequest(name="add", args_json="[1, 2]"), metadata=AUTH),
                     lambda: q.GetTask(qtasks_pb2.GetTaskRequest(uuid=MISSING), metadata=AUTH)):
            code, details = code_of(call)
            assert code == grpc.StatusCode.UNAVAILABLE and "\n" not in details, (code, details)
    assert "Traceback" not in server.log.read_text()


def test_watch_follows_a_task_and_resumes_after_a_reconnect(server: Served, worker: None) -> None:
    s = server.ours()
    first = server.ours(server.channel())
    stream = first.WatchTasks(pb.WatchTasksRequest(from_oldest=True, task_names=["add"]), metadata=AUTH)
    t1 = s.AddTask(pb.AddTaskRequest(name="add", args=json_value("[1, 1]")), metadata=AUTH).task.uuid
    before: list[pb.TaskEvent] = []
    for event in stream:
        before.append(event)
        if event.uuid == t1 and event.status == "success":
            break
    stream.cancel()  # the client goes away
    assert [e.status for e in before if e.uuid == t1] == ["new", "process", "success"]
    later = s.AddTasks(pb.AddTasksRequest(calls=[pb.AddTaskRequest(name="add", args=json_value("[2, 2]"))] * 3),
                       metadata=AUTH).tasks
    for t in later:
        s.GetTask(pb.GetTaskRequest(uuid=t.uuid, wait=10), metadata=AUTH)
    resumed = list(s.WatchTasks(pb.WatchTasksRequest(after=before[-1].id, task_names=["add"], until_idle=True),
                                metadata=AUTH))
    every = list(s.WatchTasks(pb.WatchTasksRequest(from_oldest=True, until_idle=True), metadata=AUTH))
    assert [e.id for e in before + resumed] == [e.id for e in every]  # nothing lost, nothing twice
    for t in later:
        assert [e.status for e in resumed if e.uuid == t.uuid] == ["new", "process", "success"]
    only = list(s.WatchTasks(pb.WatchTasksRequest(from_oldest=True, until_idle=True, uuids=[t1],
                                                  statuses=["success"]), metadata=AUTH))
    assert [(e.uuid, e.status) for e in only] == [(t1, "success")]


def test_tls_and_mutual_tls(redis_url: str, app_name: str, tmp_path: Path) -> None:
    make_certs(tmp_path)
    ca = (tmp_path / "ca.crt").read_bytes()
    client = grpc.ssl_channel_credentials(ca, (tmp_path / "client.key").read_bytes(),
                                          (tmp_path / "client.crt").read_bytes())
    tls = ["--tls-cert", str(tmp_path / "server.crt"), "--tls-key", str(tmp_path / "server.key")]
    with served(redis_url, app_name, tmp_path / "tls.log", *tls) as server:
        ok = server.ours(server.channel(grpc.ssl_channel_credentials(ca)))
        assert ok.ListTasks(pb.ListTasksRequest(), metadata=AUTH).tasks == []
        plain = server.ours(server.channel())
        assert code_of(lambda: plain.ListTasks(pb.ListTasksRequest(), metadata=AUTH, timeout=5))[0] in (
            grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    with served(redis_url, app_name, tmp_path / "mtls.log", *tls, "--tls-client-ca", str(tmp_path / "ca.crt")) as m:
        assert m.ours(m.channel(client)).ListTasks(pb.ListTasksRequest(), metadata=AUTH).tasks == []
        anonymous = m.ours(m.channel(grpc.ssl_channel_credentials(ca)))
        assert code_of(lambda: anonymous.ListTasks(pb.ListTasksRequest(), metadata=AUTH, timeout=5))[0] in (
            grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    assert "mutual TLS" in (tmp_path / "mtls.log").read_text()


def test_a_network_address_needs_a_token_or_tls_and_a_generated_token_is_printed(redis_url: str, app_name: str,
                                                                                 tmp_path: Path) -> None:
    env = cli_env(redis_url, app_name)
    for name in ("QTASKS_WEB_TOKEN", "QTASKS_GRPC_TOKEN"):
        env.pop(name, None)
    refused = subprocess.run([sys.executable, "-m", "qtasks_fast", "-A", "web_app:app", "grpc", "--host", "0.0.0.0"],
                             env=env, cwd=APPS, capture_output=True, text=True, timeout=30)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert "refusing to listen on 0.0.0.0" in refused.stderr
    (tmp_path / "bad.pem").write_text("not a certificate\n")
    bad_pem = str(tmp_path / "bad.pem")
    for flags, says in ((["--tls-cert", "x.pem"], "--tls-key"), (["--token-file", str(tmp_path / "none")], "token"),
                        (["--tls-cert", bad_pem, "--tls-key", bad_pem], "PEM")):
        bad = subprocess.run([sys.executable, "-m", "qtasks_fast", "-A", "web_app:app", "grpc", *flags], env=env,
                             cwd=APPS, capture_output=True, text=True, timeout=30)
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and says in bad.stderr, bad.stderr
    with served(redis_url, app_name, tmp_path / "gen.log", token=None) as server:
        lines = server.log.read_text().splitlines()
        token = lines[lines.index(next(x for x in lines if "call with this one" in x)) + 1]
        s = server.ours()
        assert s.ListTasks(pb.ListTasksRequest(), metadata=(("authorization", f"Bearer {token}"),)).tasks == []


def test_tls_misconfiguration_and_ipv6_loopback_are_one_line(redis_url: str, app_name: str, tmp_path: Path) -> None:
    """Review finding 8: a bad PEM, a key of another certificate or a bad client CA is named in one line (not
    "the port is taken" after grpc's own error lines); ``--host ::1`` binds ``[::1]``."""
    make_certs(tmp_path)
    (tmp_path / "garbage.pem").write_text("garbage\n")
    env = cli_env(redis_url, app_name, QTASKS_GRPC_TOKEN=TOKEN)
    server, garbage = [str(tmp_path / "server.crt"), str(tmp_path / "server.key")], str(tmp_path / "garbage.pem")
    cases = {"--tls-cert": ["--tls-cert", garbage, "--tls-key", server[1]],
             "--tls-key": ["--tls-cert", server[0], "--tls-key", garbage],
             "is not the key of": ["--tls-cert", server[0], "--tls-key", str(tmp_path / "client.key")],
             "--tls-client-ca": ["--tls-cert", server[0], "--tls-key", server[1], "--tls-client-ca", garbage]}
    for says, flags in cases.items():
        bad = subprocess.run([sys.executable, "-m", "qtasks_fast", "-A", "web_app:app", "grpc", "--port",
                              str(free_port()), *flags], env=env, cwd=APPS, capture_output=True, text=True, timeout=30)
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and says in bad.stderr, (says, bad.stderr)
        assert "port is taken" not in bad.stderr
    with served(redis_url, app_name, tmp_path / "v6.log", "--host", "::1") as v6:
        channel = grpc.insecure_channel(f"[::1]:{v6.port}")
        assert v6.ours(channel).ListTasks(pb.ListTasksRequest(), metadata=AUTH).tasks == []


def test_token_file_first_line(redis_url: str, app_name: str, tmp_path: Path) -> None:
    """Review finding 12: ``--token-file`` takes the file's first line, as its help says."""
    (tmp_path / "token").write_text("tok-first-line-0123456789\nsecond line\n")
    with served(redis_url, app_name, tmp_path / "tf.log", "--token-file", str(tmp_path / "token"), token=None) as s:
        first = (("authorization", "Bearer tok-first-line-0123456789"),)
        assert s.ours().ListTasks(pb.ListTasksRequest(), metadata=first).tasks == []


async def test_the_plugin_serves_tls_and_mutual_tls(tmp_path: Path) -> None:
    """Review finding 7: the plugins take the CLI's TLS options (tls_cert/tls_key, tls_client_ca)."""
    from qtasks_fast import asyncio as qasyncio
    from qtasks_fast.plugins.grpc import AsyncgRPCPlugin, qtasks_pb2_grpc

    make_certs(tmp_path)
    ca = (tmp_path / "ca.crt").read_bytes()
    app = qasyncio.QueueTasks("grpc-plugin-tls", broker_url="memory://")
    plugin = AsyncgRPCPlugin(app, port=free_port(), token=TOKEN, tls_cert=str(tmp_path / "server.crt"),
                             tls_key=str(tmp_path / "server.key"), tls_client_ca=str(tmp_path / "ca.crt"))
    await plugin.start()
    try:
        client = grpc.ssl_channel_credentials(ca, (tmp_path / "client.key").read_bytes(),
                                              (tmp_path / "client.crt").read_bytes())
        async with grpc.aio.secure_channel(f"127.0.0.1:{plugin.port}", client) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await qtasks_pb2_grpc.QTasksServiceStub(channel).GetTask(
                    qtasks_pb2.GetTaskRequest(uuid=MISSING), metadata=AUTH, timeout=10)
            assert info.value.code() == NOT_FOUND
        async with grpc.aio.secure_channel(f"127.0.0.1:{plugin.port}", grpc.ssl_channel_credentials(ca)) as anon:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await qtasks_pb2_grpc.QTasksServiceStub(anon).GetTask(
                    qtasks_pb2.GetTaskRequest(uuid=MISSING), metadata=AUTH, timeout=5)
            assert info.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    finally:
        await plugin.stop()
