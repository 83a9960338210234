"""What a task and its middlewares see of the call: ``EchoTask`` (QTasks ``self`` of an ``echo=True`` task)
and ``ExecContext`` (the ``ctx`` of middleware hooks)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid as _uuid
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from qtasks_fast.exceptions import TaskCancelError, TaskPluginTriggerError
from qtasks_fast.log import get_logger, task_label
from qtasks_fast.schemas import META_ATTEMPT, Task, record_from_envelope

if TYPE_CHECKING:
    from qtasks_fast.abc.broker import Delivery
    from qtasks_fast.schemas import Envelope
    from qtasks_fast.task import TaskFunc


class TaskContext:
    """``self.ctx`` inside an echo task: its id, a logger that names it, its metadata, and cancel.

    The calls that wait (``get_task``, ``sleep``) follow the task: coroutines to await in an ``async def``
    task (QTasks ``AsyncContext``), blocking in a plain one (QTasks ``SyncContext``, run on a worker thread).
    QTasks picks by the app instead; here both kinds run in one worker, and a blocking sleep in an async
    task would stall every task of its event loop."""

    def __init__(self, env: Envelope, worker_id: str, app: Any = None, awaits: bool = False) -> None:
        self._env = env
        self._app = app
        self._awaits = awaits
        self._uuid: _uuid.UUID | None = None
        self.task_name = env.task_name
        self.worker_id = worker_id
        #: the task's ``generate_handler`` option (QTasks' context carries it too)
        self.generate_handler: Any = getattr(app.tasks.get(env.task_name), "generate_handler", None) if app else None

    @property
    def task_uuid(self) -> _uuid.UUID:
        """This task's id as a ``UUID``, as in QTasks (whose broker builds one): it compares equal to the
        record's ``Task.uuid``; ``str(ctx.task_uuid)`` for a text key. Built on first read, so a task that
        never asks pays nothing."""
        if self._uuid is None:
            self._uuid = _uuid.UUID(self._env.uuid)
        return self._uuid

    def get_config(self) -> Any:
        """The app's ``config`` (QTasks ``get_config``)."""
        return self._app.config

    def get_task(self, uuid: str | _uuid.UUID) -> Task | None | Awaitable[Task | None]:
        """The record of task ``uuid`` (``app.get``); a coroutine in an async task."""
        app_async = getattr(self._app, "is_async", False)
        if self._awaits:
            return self._app.get(uuid) if app_async else asyncio.to_thread(self._app.get, uuid)  # type: ignore
        if app_async:  # a plain task of the async client: on the helper loop, from this worker thread
            from qtasks_fast.portal import portal

            return portal().run(self._app.get(uuid))  # type: ignore[no-any-return]
        return self._app.get(uuid)  # type: ignore[no-any-return]

    def sleep(self, seconds: float) -> None | Awaitable[None]:
        """Wait ``seconds``: a coroutine of ``asyncio.sleep`` in an async task, ``time.sleep`` in a plain one."""
        if self._awaits:
            return asyncio.sleep(seconds)
        time.sleep(seconds)
        return None

    def get_component(self, name: str) -> Any:
        """An attribute of the app by name (``"broker"``, ``"storage"``, ``"config"``...), None when it has
        none (QTasks ``get_component``)."""
        return getattr(self._app, name, None)

    def plugin_error(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Raise ``TaskPluginTriggerError(**kwargs)`` (QTasks ``plugin_error``): a plugin at trigger
        ``task_plugin_error`` (QTasks' ``task_executor_run_task_trigger_error``) may turn it into the task's
        result by returning ``{"result": value}``; with none, the task ends with status ``error``. A message may
        come first, as QTasks' docs write it: ``ctx.plugin_error("why")``."""
        raise TaskPluginTriggerError(*args, **kwargs)

    def get_logger(self, name: str | None = None) -> logging.LoggerAdapter[logging.Logger]:
        label = task_label(self._env.task_name, self._env.uuid)
        return logging.LoggerAdapter(get_logger(name or "task"), {"task": label})

    def get_metadata(self, cache: bool = True) -> Task | None | Awaitable[Task | None]:
        """This task's record (QTasks ``get_metadata``): with ``cache``, the running record built here (no
        round trip); ``cache=False`` reads the storage's (``get_task``). A coroutine in an async task, as the
        other waiting calls are (QTasks' ``AsyncContext`` awaits it)."""
        if not cache:
            return self.get_task(self.task_uuid)
        task = record_from_envelope(self._env, "process")
        task.worker_id = self.worker_id
        return _ready(task) if self._awaits else task

    def cancel(self, reason: str = "") -> NoReturn:
        """End this task now with status ``cancel`` and ``reason`` as its traceback text (raises QTasks'
        ``TaskCancelError``, a ``TaskCancel``)."""
        raise TaskCancelError(reason)


async def _ready(value: Task) -> Task:
    """``value`` as a coroutine: what an ``async def`` task awaits from a call that needed no I/O."""
    return value


class EchoTask:
    """The registered task plus this call's context."""

    def __init__(self, task: TaskFunc, env: Envelope, worker_id: str) -> None:
        self.task = task
        self.task_name = task.name
        self.ctx = TaskContext(env, worker_id, task.app, task.is_async or task.is_async_gen)

    def __getattr__(self, item: str) -> Any:
        return getattr(self.task, item)


class ExecContext:
    """What a middleware's worker hooks get: the call, its task, and a scratch dict for the hooks.

    ``args``/``kwargs`` are the wire arguments (before validation and dependency injection); a
    ``before_execute`` hook may replace them. ``data`` carries values from a ``before_*`` hook to
    its ``after_*`` twin. ``attempt`` is 0 for the first run, n for the n-th retry.
    """

    __slots__ = ("task", "envelope", "delivery", "worker_id", "args", "kwargs", "data", "started", "_logger")

    def __init__(self, task: TaskFunc, delivery: Delivery, worker_id: str) -> None:
        env = delivery.envelope
        self.task = task
        self.envelope = env
        self.delivery = delivery
        self.worker_id = worker_id
        self.args: Sequence[Any] = env.args
        self.kwargs: dict[str, Any] = env.kwargs
        self.data: dict[str, Any] = {}
        self.started = delivery.started
        self._logger: logging.LoggerAdapter[logging.Logger] | None = None

    @property
    def app(self) -> Any:
        return self.task.app

    @property
    def task_name(self) -> str:
        return self.envelope.task_name

    @property
    def uuid(self) -> str:
        return self.envelope.uuid

    @property
    def attempt(self) -> int:
        return int(self.envelope.meta.get(META_ATTEMPT, 0))

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger whose lines name this task (``name[uuid]``)."""
        if self._logger is None:
            label = task_label(self.envelope.task_name, self.envelope.uuid)
            self._logger = logging.LoggerAdapter(get_logger("task"), {"task": label})
        return self._logger

    def __repr__(self) -> str:
        return f"<ExecContext {task_label(self.envelope.task_name, self.envelope.uuid)}>"
