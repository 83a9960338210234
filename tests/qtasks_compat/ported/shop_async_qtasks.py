"""The async twin of ``shop_qtasks.py``: a QTasks 1.7.3 app on ``qtasks.asyncio.QueueTasks`` as a QTasks user writes
it, NOT imported as it is; ``tests/qtasks_compat/test_ported_app.py`` changes the package name in its import lines
(to ours), and nothing else, then awaits its scenario. Broker: Redis at ``SHOP_REDIS_URL``.
"""

import asyncio
import json
import os

from qtasks.asyncio import QueueTasks
from qtasks.configs import AsyncRedisGlobalConfig
from qtasks.exc import TaskPluginTriggerError
from qtasks.middlewares import TaskMiddleware
from qtasks.plugins.base import BasePlugin
from qtasks.registries import AsyncTask
from qtasks.results import AsyncResult
from qtasks.routers import AsyncRouter
from qtasks.schemas.test import TestConfig
from qtasks.stats import AsyncStats
from qtasks.tests import AsyncTestCase

NAME = os.environ["SHOP_APP_NAME"]
URL = os.environ["SHOP_REDIS_URL"]

app = QueueTasks(name=NAME, broker_url=URL)
app.config.max_tasks_process = 2

seen = []


class Recover(BasePlugin):
    """Turns a task's ``plugin_error`` into its result, at QTasks' trigger for it."""

    def __init__(self):
        super().__init__(name="Recover")

    async def start(self, *args, **kwargs):
        pass

    async def stop(self, *args, **kwargs):
        pass

    async def trigger(self, name, *args, **kwargs):
        seen.append(name)
        return {"result": "recovered"}


class Tag(TaskMiddleware):
    """An async 'before' middleware that adds a keyword argument."""

    def __init__(self, task_executor):
        super().__init__(task_executor)

    async def __call__(self):
        self.task_executor._kwargs["tag"] = "mw"
        return self.task_executor


router = AsyncRouter()


@router.task()
async def square(n: int) -> int:
    return n * n


app.include_router(router)
app.add_plugin(Recover(), trigger_names=["task_executor_run_task_trigger_error"])


@app.task(name="tagged", middlewares_before=[Tag])
async def tagged(value: str, tag: str = "none") -> str:
    return f"{value}:{tag}"


@app.task(name="looker", echo=True)
async def looker(self: AsyncTask, other: str) -> dict:
    await self.ctx.sleep(0.01)
    found = await self.ctx.get_task(other)
    meta = await self.ctx.get_metadata()
    return {"other_status": found.status, "me": str(meta.uuid) == str(self.ctx.task_uuid)}


@app.task(name="needs_plugin", echo=True)
async def needs_plugin(self: AsyncTask) -> str:
    self.ctx.plugin_error(reason="ask the plugin")
    return "unreached"


@app.task(name="sync_in_async_app")
def sync_in_async_app(a: int) -> int:
    return a + 1


@app.events.on.task_error()
async def on_error(*args, **kwargs):
    seen.append("task_error")


async def run_scenario():
    out = {}
    case = AsyncTestCase(app=app)
    case.settings(TestConfig.full())
    case.start_in_background()
    try:
        out["square"] = (await square.add_task(7, timeout=30)).returning
        out["tagged"] = (await tagged.add_task("v", timeout=30)).returning
        first = await app.add_task("sync_in_async_app", 1, timeout=30)
        out["sync_in_async_app"] = first.returning
        out["looker"] = (await looker.add_task(str(first.uuid), timeout=30)).returning
        out["needs_plugin"] = (await needs_plugin.add_task(timeout=30)).returning
        queued = await app.add_task("square", 3)
        out["result"] = (await AsyncResult(uuid=queued.uuid, app=app).result(timeout=30)).returning
        stats = await AsyncStats(app=app).inspect()
        out["stats_tasks"] = sorted(t["name"] for t in json.loads(stats.tasks(json=True)))
        out["plugin_error_is"] = TaskPluginTriggerError.__name__
    finally:
        await case.stop()
    config = AsyncRedisGlobalConfig(name=NAME, url=URL)
    await config.set("main", "mode", "async")
    out["global_config"] = await config.get("main", "mode")
    await asyncio.sleep(0)
    out["seen"] = seen
    return out
