"""A QTasks 1.7.3 application as a QTasks user writes it: NOT imported as it is (it imports ``qtasks``).

``tests/qtasks_compat/test_ported_app.py`` changes the package name in its import lines (to ours), and nothing
else, then runs it: sync and async tasks, an echo task using its context, a router, a QTasks-style middleware, a
plugin at QTasks' trigger names, a Redis GlobalConfig, events, ``stats.inspect()``, results, and SyncTestCase.
The broker is Redis, QTasks' default, at ``SHOP_REDIS_URL``.
"""

import asyncio
import json
import os

from qtasks import QueueTasks
from qtasks.configs import SyncRedisGlobalConfig
from qtasks.enums.task_status import TaskStatusEnum
from qtasks.exc import TaskCancelError
from qtasks.middlewares import TaskMiddleware
from qtasks.plugins.base import BasePlugin
from qtasks.registries import SyncTask
from qtasks.results import SyncResult
from qtasks.routers import SyncRouter
from qtasks.schemas.test import TestConfig
from qtasks.stats import SyncStats
from qtasks.tests import SyncTestCase

NAME = os.environ["SHOP_APP_NAME"]
URL = os.environ["SHOP_REDIS_URL"]

app = QueueTasks(name=NAME, broker_url=URL)
app.config.max_tasks_process = 4
app.config.delete_finished_tasks = False
app.config.task_default_priority = 5

seen = []


class Audit(BasePlugin):
    """Records each task it sees, by QTasks' trigger name."""

    def __init__(self):
        super().__init__(name="Audit")

    def start(self, *args, **kwargs):
        seen.append("plugin started")

    def stop(self, *args, **kwargs):
        pass

    def trigger(self, name, *args, **kwargs):
        seen.append(name)


class Shout(TaskMiddleware):
    """Upper-cases a string result, as a QTasks 'after' middleware does."""

    def __init__(self, task_executor):
        super().__init__(task_executor)

    def __call__(self):
        if isinstance(self.task_executor._result, str):
            self.task_executor._result = self.task_executor._result.upper()
        return self.task_executor


router = SyncRouter()


@router.task()
def mul(a: int, b: int) -> int:
    return a * b


app.include_router(router)
app.add_plugin(Audit(), trigger_names=["task_executor_before_execute"])


@app.task(name="add")
def add(a: int, b: int) -> int:
    return a + b


@app.task(name="hello", middlewares_after=[Shout])
async def hello(name: str) -> str:
    await asyncio.sleep(0.01)
    return f"hello {name}"


@app.task(name="stepper", echo=True)
def stepper(self: SyncTask, n: int) -> dict:
    if n < 0:
        self.ctx.cancel("negative")
    self.ctx.get_logger().info("stepping %s", n)
    return {"uuid": str(self.ctx.task_uuid), "name": self.ctx.task_name,
            "max_tasks_process": self.ctx.get_config().max_tasks_process}


@app.events.on.task_success()
def on_success(*args, **kwargs):
    seen.append("task_success")


def run_scenario():
    """What the app's own tests do: start a worker with SyncTestCase, call every task, read results and stats."""
    out = {}
    case = SyncTestCase(app=app)
    case.settings(TestConfig.full())
    case.start_in_background()
    try:
        out["add"] = add.add_task(2, 3, timeout=30).returning
        out["mul"] = mul.add_task(4, 5, timeout=30).returning
        out["hello"] = hello.add_task("ada", timeout=30).returning
        step = stepper.add_task(3, timeout=30)
        out["stepper"] = step.returning
        out["stepper_uuid"] = str(step.uuid)
        cancelled = stepper.add_task(-1, timeout=30)
        out["cancelled"] = cancelled.status
        queued = app.add_task("add", 10, 20)
        out["result"] = SyncResult(uuid=queued.uuid, app=app).result(timeout=30).returning
        out["status_success"] = TaskStatusEnum.SUCCESS.value
        out["task_status"] = app.get(queued.uuid).status
        out["cancel_error_is_exception"] = issubclass(TaskCancelError, Exception)
        out["stats_tasks"] = sorted(t["name"] for t in json.loads(SyncStats(app=app).inspect().tasks(json=True)))
        out["stats_text"] = SyncStats(app=app).inspect().task("add")
    finally:
        case.stop()
    config = SyncRedisGlobalConfig(name=NAME, url=URL)
    config.set("main", "greeting", "hi")
    out["global_config"] = config.get("main", "greeting")
    out["seen"] = seen
    return out
