"""What an operator sees when a search by worker, error text or finished time runs out of its budget on Redis
(see test_redis_query_budget): the REST API, gRPC ListTasks and the Tasks page all say the answer is partial,
how far it searched, and offer the cursor that searches on."""

from __future__ import annotations

import html
from collections.abc import AsyncIterator

import grpc
import pytest_asyncio
from apps.web_app import build
from apps.webkit import client
from test_redis_query import Backend

from qtasks_fast import QueueTasks
from qtasks_fast.backends.redis.storage import RedisStorage
from qtasks_fast.grpc.server import build_server
from qtasks_fast.grpc.v1 import qtasks_fast_pb2 as pb
from qtasks_fast.grpc.v1 import qtasks_fast_pb2_grpc as pb_grpc

N, BUDGET = 30, 10  # BUDGET: per queue (the request's budget is shared among the app's queues)


@pytest_asyncio.fixture
async def app(redis_url: str, app_name: str) -> AsyncIterator[QueueTasks]:
    """An app over ``N`` finished tasks of worker ``w-0``, whose searches examine ``BUDGET`` records."""
    seed = Backend(redis_url, app_name)
    await seed.run(N)
    await seed.close()
    app = build(app_name, redis_url)
    assert isinstance(app.storage, RedisStorage)
    app.storage.scan_budget = BUDGET * len(app.queues)
    yield app
    await app.storage.close()


async def test_rest_says_partial_and_documents_it(app: QueueTasks) -> None:
    async with client(app) as c:
        page = (await c.get("/api/v1/tasks", params={"worker_id": "nosuch"})).json()
        assert (page["tasks"], page["partial"], page["searched"], page["total"]) == ([], True, BUDGET, N)
        more = (await c.get("/api/v1/tasks", params={"worker_id": "nosuch", "cursor": page["cursor"]})).json()
        assert more["searched"] == 2 * BUDGET
        counts = (await c.get("/api/v1/tasks/counts", params={"worker_id": "w-0"})).json()
        assert counts["searched"] == BUDGET and counts["success"] == BUDGET
        schema = (await c.get("/api/v1/openapi.json")).json()["components"]["schemas"]["TaskPage"]
        assert {"partial", "searched", "total"} <= set(schema["properties"])


async def test_the_tasks_page_offers_to_search_further(app: QueueTasks) -> None:
    async with client(app) as c:
        r = await c.get("/tasks", params={"worker_id": "nosuch"}, headers={"accept": "text/html"})
        assert r.status_code == 200, r.text
        text = html.unescape(r.text)
        assert f"Searched the newest {BUDGET} of {N} tasks; more may match" in text
        assert "No match among the tasks searched so far." in text
        assert "Search further" in text and "cursor=" in text


async def test_grpc_list_tasks_says_partial(app: QueueTasks) -> None:
    server = build_server(app, "in-process")
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            reply = await pb_grpc.QTasksFastStub(channel).ListTasks(
                pb.ListTasksRequest(worker_id="nosuch"), metadata=(("authorization", "Bearer in-process"),))
    finally:
        await server.stop(None)
    assert (list(reply.tasks), reply.partial, reply.searched, reply.total) == ([], True, BUDGET, N)
    assert reply.cursor
