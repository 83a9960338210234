"""The gRPC gateway's error rule in process (issue 14): whatever a method raises reaches the client as a status
code it can act on, in one line, never UNKNOWN with a traceback; the server's log keeps the traceback."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import grpc
import pytest

from qtasks_fast import asyncio as qasyncio
from qtasks_fast import service
from qtasks_fast.grpc.server import build_server
from qtasks_fast.grpc.v1 import qtasks_fast_pb2 as pb
from qtasks_fast.grpc.v1 import qtasks_fast_pb2_grpc as pb_grpc

AUTH = (("authorization", "Bearer in-process"),)


@pytest.fixture
async def stub() -> AsyncIterator[pb_grpc.QTasksFastStub]:
    app = qasyncio.QueueTasks("grpc-errors", broker_url="memory://")

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    server = build_server(app, "in-process")
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield pb_grpc.QTasksFastStub(channel)
    finally:
        await server.stop(None)


async def test_a_bug_is_internal_in_one_line_and_logged(stub: pb_grpc.QTasksFastStub, monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug\nwith a second line")

    monkeypatch.setattr(service, "list_tasks", broken)
    with caplog.at_level(logging.ERROR, logger="qtasks_fast"), pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.ListTasks(pb.ListTasksRequest(), metadata=AUTH)
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert info.value.details() == "internal error (RuntimeError); the server's log has the details"
    assert any(r.exc_info and "a bug" in str(r.exc_info[1]) for r in caplog.records)


async def test_a_bug_in_a_stream_is_internal(stub: pb_grpc.QTasksFastStub, monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("oops")

    monkeypatch.setattr(service, "events", broken)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in stub.WatchTasks(pb.WatchTasksRequest(), metadata=AUTH):
            pass
    assert info.value.code() == grpc.StatusCode.INTERNAL


async def test_service_errors_keep_their_codes_in_a_stream(stub: pb_grpc.QTasksFastStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in stub.WatchTasks(pb.WatchTasksRequest(queue="nowhere"), metadata=AUTH):
            pass
    assert info.value.code() == grpc.StatusCode.NOT_FOUND and "nowhere" in (info.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in stub.WatchTasks(pb.WatchTasksRequest(), metadata=()):
            pass
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
