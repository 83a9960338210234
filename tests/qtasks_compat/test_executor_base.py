"""QTasks' ``qtasks.executors.base.BaseTaskExecutor`` under qtasks_fast (issue 11): its example middleware
(``examples/async/libs/task_middleware.py``) imports it to annotate ``task_executor``, so with only the import
changed that middleware must import and run; a custom executor written to QTasks' contract is refused at
registration, in one line, instead of failing in a worker.
"""

from __future__ import annotations

from typing import Any

import pytest
from qtasks_fast.executors.base import BaseTaskExecutor

from qtasks_fast import QueueTasks
from qtasks_fast.middlewares import TaskMiddleware
from qtasks_fast.testing import WorkerThread


class MyTaskMiddleware(TaskMiddleware):  # QTasks' example, as written there
    def __init__(self, task_executor: "BaseTaskExecutor"):  # noqa: UP037 - as QTasks writes it
        super().__init__(task_executor)

    async def __call__(self):
        return self.task_executor


class Doubling(TaskMiddleware):
    async def __call__(self) -> Any:
        self.task_executor._result *= 2
        return self.task_executor


def test_qtasks_example_middleware_runs_with_only_the_import_changed(app_name: str) -> None:
    app = QueueTasks(app_name, broker_url="memory://")

    @app.task(middlewares_before=[MyTaskMiddleware], middlewares_after=[MyTaskMiddleware, Doubling])
    async def test_num(number: int) -> int:
        return number

    with WorkerThread(app):
        done = test_num.add_task(21, timeout=20)
    assert done is not None and done.status == "success" and done.returning == 42, done


def test_an_executor_written_to_qtasks_contract_is_refused_at_registration(app_name: str) -> None:
    app = QueueTasks(app_name, broker_url="memory://")

    class MyAsyncTaskExecutor(BaseTaskExecutor):  # QTasks' shape: built per call, execute/run_task
        def __init__(self, task_func: Any, task_broker: Any, log: Any = None) -> None:
            self.task_func = task_func

        async def run_task(self) -> Any:
            return None

        async def execute(self, decode: bool = True) -> Any:
            return None

    for given in (MyAsyncTaskExecutor, MyAsyncTaskExecutor(None, None)):
        with pytest.raises(TypeError, match=r"task 'job': executor MyAsyncTaskExecutor does not implement "
                                            r"run\(ctx, call\).*qtasks_fast.worker.executor.TaskExecutor") as err:
            app.task(name="job", executor=given)(lambda: None)
        assert "\n" not in str(err.value)

    class Ours(BaseTaskExecutor):
        async def run(self, ctx: Any, call: Any) -> Any:
            return call()

    assert app.task(name="ok", executor=Ours)(lambda: 1).executor == "custom"
