"""QTasks' ``Task`` record (``qtasks.schemas.task.Task``, issue 11): built positionally as its dataclass allows,
and its ``wait_result`` / ``wait_result_async`` wait for the final record as there."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import uuid as _uuid

from qtasks_fast import QueueTasks
from qtasks_fast.asyncio import QueueTasks as AsyncQueueTasks
from qtasks_fast.schemas.task import Task
from qtasks_fast.testing import WorkerThread


def test_task_is_built_positionally_in_qtasks_field_order() -> None:
    uid, now = _uuid.uuid4(), _dt.datetime.now(_dt.timezone.utc)
    task = Task("success", uid, 3, "add", (1, 2), {"k": 1}, now, now, 3, None, 2, None, None)
    assert (task.status, task.uuid, task.priority, task.task_name) == ("success", uid, 3, "add")
    assert (task.args, task.kwargs, task.created_at, task.updated_at) == ((1, 2), {"k": 1}, now, now)
    assert (task.returning, task.traceback, task.retry) == (3, None, 2)
    assert task == Task(status="success", uuid=uid, priority=3, task_name="add", args=(1, 2), kwargs={"k": 1},
                        created_at=now, updated_at=now, returning=3, retry=2)


def test_task_answers_dataclass_calls_as_qtasks_dataclass_does(app_name: str) -> None:
    """QTasks' record is a ``@dataclass``: views do ``json.dumps(asdict(task), default=str)``, code copies a record
    with ``replace`` or reads ``vars(task)``. The same calls work on a record the app returns."""
    app = QueueTasks(app_name, broker_url="memory://")

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    with WorkerThread(app):
        task = app.add_task("add", 2, 3, timeout=10)
    assert task is not None and dataclasses.is_dataclass(task)
    as_dict = dataclasses.asdict(task)
    assert list(as_dict)[:8] == ["status", "uuid", "priority", "task_name", "args", "kwargs", "created_at",
                                 "updated_at"]
    assert as_dict["returning"] == 5 and as_dict["args"] == (2, 3) and as_dict == vars(task) == task.__dict__
    assert json.loads(json.dumps(dataclasses.asdict(task), default=str))["uuid"] == str(task.uuid)
    failed = dataclasses.replace(task, status="error", returning=None)
    assert (failed.status, failed.returning, failed.uuid, task.status) == ("error", None, task.uuid, "success")
    assert dataclasses.astuple(task)[:4] == (task.status, task.uuid, task.priority, "add")
    assert [f.name for f in dataclasses.fields(Task)][-1] == "extra"


def test_record_times_are_aware_utc_and_convert_to_qtasks_naive_local_as_documented(app_name: str) -> None:
    """Differs on purpose (docs/from-qtasks.md, the Task row): aware UTC, never a naive time that a reader on another
    host would misplace; the documented conversion gives QTasks' naive local time."""
    app = QueueTasks(app_name, broker_url="memory://")
    task = app.add_task("anything", 1)
    assert task.created_at.utcoffset() == _dt.timedelta(0) and task.updated_at.tzinfo is not None
    assert abs(_dt.datetime.now(_dt.timezone.utc) - task.created_at) < _dt.timedelta(seconds=30)
    qtasks_value = task.created_at.astimezone().replace(tzinfo=None)
    assert abs(_dt.datetime.now() - qtasks_value) < _dt.timedelta(seconds=30)


def test_wait_result_returns_the_final_record_of_the_main_app(app_name: str) -> None:
    app = QueueTasks(app_name, broker_url="memory://")

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    sent = add.add_task(2, 3)
    assert sent is not None and sent.status == "new"
    assert sent.wait_result(timeout=0.3) is None  # no worker yet: not final in time
    with WorkerThread(app):
        done = sent.wait_result(timeout=20)
    assert done is not None and done.status == "success" and done.returning == 5 and done.uuid == sent.uuid


async def test_wait_result_async_with_the_async_client(app_name: str) -> None:
    app = AsyncQueueTasks(app_name, broker_url="memory://")
    other = QueueTasks(f"{app_name}-other", broker_url="memory://")  # created last: the main app is not ours

    @app.task
    async def double(x: int) -> int:
        return 2 * x

    other.close()
    with WorkerThread(app):
        sent = await app.add_task("double", 21)
        assert sent is not None
        done = await sent.wait_result_async(timeout=20, app=app)
    assert done is not None and done.status == "success" and done.returning == 42
