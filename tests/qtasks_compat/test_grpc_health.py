"""The gRPC plugins serve the standard health and reflection services, as QTasks' plugin does (issue 11).

What a user relies on: a QTasks deployment is probed with the standard ``grpc.health.v1.Health`` service (a
Kubernetes gRPC probe, ``grpc_health_probe``) and explored with server reflection (``grpcurl list``). The same
probe keeps working against qtasks_fast: health answers SERVING without the token (a probe sends no metadata)
and NOT_SERVING once the server stops; reflection lists QTasks' service (and ours) to a caller with the token
and refuses one without it.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest
from conftest import free_port
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from qtasks_fast import asyncio as qasyncio
from qtasks_fast.plugins.grpc import AsyncgRPCPlugin

TOKEN = "health-t0ken-for-tests"
AUTH = (("authorization", f"Bearer {TOKEN}"),)


async def listed(channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...] = ()) -> set[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    names: set[str] = set()
    async for answer in stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), metadata=metadata
    ):
        names |= {s.name for s in answer.list_services_response.service}
    return names


async def test_health_without_token_and_reflection_with_it() -> None:
    plugin = AsyncgRPCPlugin(qasyncio.QueueTasks("grpc-health", broker_url="memory://"), port=free_port(), token=TOKEN)
    await plugin.start()
    stopped = False
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{plugin.port}") as channel:
            checks = health_pb2_grpc.HealthStub(channel)
            answer = await checks.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
            assert {
                "qtasks.v1.QTasksService",
                "qtasks_fast.v1.QTasksFast",
                "grpc.health.v1.Health",
                "grpc.reflection.v1alpha.ServerReflection",
            } <= await listed(channel, AUTH)
            with pytest.raises(grpc.RpcError) as info:
                await listed(channel)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED

            watch = checks.Watch(health_pb2.HealthCheckRequest(service=""))
            assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
            stopping = asyncio.ensure_future(plugin.stop())
            stopped = True
            assert (await asyncio.wait_for(watch.read(), 10)).status == health_pb2.HealthCheckResponse.NOT_SERVING
            await stopping
    finally:
        if not stopped:
            await plugin.stop()
