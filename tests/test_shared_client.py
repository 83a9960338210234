"""The obvious async task body works under the default settings (issue 10, item 7).

A user shares one ``redis.asyncio`` client between tasks, as every redis-py example does. Its default
pool holds at most 100 connections and raises ``MaxConnectionsError`` beyond them, so a worker that runs
more than 100 tasks at once by default fails a burst of such tasks. With the defaults, a burst of tasks
that each hold a connection for a while must all succeed.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from qtasks_fast import GlobalConfig, QueueTasks
from qtasks_fast.testing import WorkerThread


def test_a_burst_of_tasks_sharing_one_default_redis_client_all_succeed(redis_url: str, app_name: str) -> None:
    client = aioredis.Redis.from_url(redis_url)  # redis-py's defaults: a pool of at most 100 connections
    empty = f"{app_name}:nothing"
    app = QueueTasks(app_name, broker_url=redis_url, config=GlobalConfig())

    @app.task
    async def poll(i: int) -> int:
        await client.blpop([empty], timeout=0.2)  # holds one connection of the pool for 0.2 s
        return i

    n = 400
    with WorkerThread(app):
        sent = app.add_tasks([poll.s(i) for i in range(n)])
        done = [app.wait(t.uuid, 60) for t in sent]
    failed = [t.traceback for t in done if t is None or t.status != "success"]
    assert not failed, f"{len(failed)} of {n} failed, e.g. {failed[0]}"
    assert sorted(t.returning for t in done if t is not None) == list(range(n))
