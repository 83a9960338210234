"""``QueueTasks``: the app object — task registry, configuration and the producer API.

:class:`BaseQueueTasks` holds what the sync client and the async client
(``qtasks_fast.asyncio.QueueTasks``) share; each adds its own ``add_task``/``get``.
The worker and the supervisor only need the registry and the backend from here.
"""

from __future__ import annotations

import time
import uuid as _uuid
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, overload

from qtasks_fast import _corelib as core
from qtasks_fast.abc import Broker, Storage
from qtasks_fast.brokers import make_backend
from qtasks_fast.config import GlobalConfig
from qtasks_fast.exceptions import PayloadTooLarge, TaskNotFound
from qtasks_fast.schemas import Envelope, Task, record_from_envelope, ts_to_dt
from qtasks_fast.task import TaskFunc, decode_result

Signature = tuple[str, Sequence[Any], dict[str, Any]]


class BaseQueueTasks:
    """Registry and backend shared by the sync and async clients."""

    def __init__(self, name: str = "QueueTasks", broker_url: str | None = None, broker: Broker | None = None,
                 worker: Any = None, log: Any = None, config: GlobalConfig | None = None, events: Any = None,
                 storage: Storage | None = None) -> None:
        self.name = name
        self.config = config or GlobalConfig()
        self.broker_url = broker_url
        self.tasks: dict[str, TaskFunc] = {}
        self.worker = worker
        self.log = log
        self.events = events
        self._broker = broker
        self._storage = storage

    def _resolve(self) -> tuple[Broker, Storage]:
        if self._broker is None or self._storage is None:
            broker, storage = make_backend(self.broker_url, self.name, self.config)
            self._broker = self._broker or broker
            self._storage = self._storage or storage
        return self._broker, self._storage

    @property
    def broker(self) -> Broker:
        return self._resolve()[0]

    @property
    def storage(self) -> Storage:
        return self._resolve()[1]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} broker={self._broker!r} tasks={len(self.tasks)}>"

    # ----------------------------------------------------------- registration
    @overload
    def task(self, name: Callable[..., Any]) -> TaskFunc: ...

    @overload
    def task(self, name: str | None = None, **options: Any) -> Callable[[Callable[..., Any]], TaskFunc]: ...

    def task(self, name: Any = None, **options: Any) -> Any:
        """Register a task: ``@app.task``, ``@app.task()``, ``@app.task("name")`` or ``@app.task(name=..., ...)``.

        Options as QTasks: ``priority, echo, max_time, retry, retry_on_exc, decode, tags, description,
        generate_handler, executor, middlewares_before, middlewares_after``, plus ``queue``.
        """
        if callable(name):
            return self._register(name, None, options)

        def decorator(func: Callable[..., Any]) -> TaskFunc:
            return self._register(func, name, options)

        return decorator

    def _register(self, func: Callable[..., Any], name: str | None, options: dict[str, Any]) -> TaskFunc:
        task_name = options.pop("name", None) or name or func.__name__
        if task_name in self.tasks:
            raise ValueError(f"task name {task_name!r} is already registered in app {self.name!r} "
                             f"(by {self.tasks[task_name].func!r}); pick another name=")
        tf = TaskFunc(self, func, name=task_name, **options)
        self.tasks[task_name] = tf
        return tf

    @property
    def queues(self) -> list[str]:
        """Every queue this app's tasks use, the default first."""
        qs = [self.config.default_queue]
        for tf in self.tasks.values():
            if tf.queue not in qs:
                qs.append(tf.queue)
        return qs

    # --------------------------------------------------------------- envelopes
    def build(self, task_name: str, args: Sequence[Any], kwargs: dict[str, Any], priority: int | None = None,
              queue: str | None = None, now: float | None = None) -> tuple[Envelope, _uuid.UUID]:
        """Validate (when the task is known here) and wrap one call for the broker."""
        tf = self.tasks.get(task_name)
        if tf is not None and self.config.validate_args:
            args, kwargs = tf.bind(args, kwargs)
        prio = priority if priority is not None else (tf.priority if tf else 0)
        if not 0 <= prio < self.config.priority_levels:
            raise ValueError(f"priority {prio} of task {task_name!r} is outside 0..{self.config.priority_levels - 1} "
                             "(lower runs first; raise config.priority_levels for more levels)")
        uid, uid_str = core.new_uuid()
        env = Envelope(
            uuid=uid_str, task_name=task_name, args=list(args), kwargs=kwargs, priority=prio,
            queue=queue or (tf.queue if tf else self.config.default_queue), created_at=now or time.time(),
            retry=(tf.retry or 0) if tf else 0, timeout=tf.max_time if tf else None,
        )
        try:
            size = len(core.encode(env))
        except TypeError as exc:
            raise TypeError(f"task {task_name!r}: arguments are not serializable to msgpack: {exc}") from None
        if size > self.config.max_payload:
            raise PayloadTooLarge(f"task {task_name!r}: encoded call is {size} bytes, over the "
                                  f"{self.config.max_payload} byte limit (config.max_payload); pass a reference "
                                  "(a key or URL) instead of the data")
        return env, uid

    def build_many(self, calls: Iterable[Signature]) -> tuple[list[Envelope], list[Task]]:
        """Envelopes for a bulk enqueue and the ``new`` records to hand back (one timestamp for the batch)."""
        now = time.time()
        created = ts_to_dt(now)
        envs, records = [], []
        for name, args, kwargs in calls:
            env, uid = self.build(name, args, kwargs, now=now)
            envs.append(env)
            records.append(record_from_envelope(env, uuid=uid, created=created))
        return envs, records

    def _finish(self, task: Task | None) -> Task | None:
        return decode_result(task, self.tasks)

    if TYPE_CHECKING:  # each client defines it: sync returns Task | None, async a coroutine of it
        def add_task(self, task_name: str, *args: Any, priority: int | None = None, timeout: float | None = None,
                     **kwargs: Any) -> Any: ...

    def get_task(self, name: str) -> TaskFunc:
        try:
            return self.tasks[name]
        except KeyError:
            raise TaskNotFound(f"no task {name!r} in app {self.name!r}; registered: {sorted(self.tasks)}") from None


class QueueTasks(BaseQueueTasks):
    """Sync client (QTasks ``QueueTasks``): ``add_task`` and ``get`` block the calling thread."""

    def add_task(self, task_name: str, *args: Any, priority: int | None = None, timeout: float | None = None,
                 **kwargs: Any) -> Task | None:
        """Enqueue; with ``timeout`` wait up to that many seconds and return the finished Task or None."""
        broker, storage = self._resolve()
        env, uid = self.build(task_name, args, kwargs, priority)
        broker.enqueue_sync([env], storage, wait=timeout is not None)
        if timeout is None:
            return record_from_envelope(env, uuid=uid)
        task = storage.wait_sync(env.uuid, [env.queue], timeout, fresh=True)
        return self._finish(task) if task is not None and task.finished else None

    def add_tasks(self, calls: Iterable[Signature]) -> list[Task]:
        """Bulk enqueue ``(name, args, kwargs)`` calls (see ``TaskFunc.s``) in one round trip per queue."""
        broker, storage = self._resolve()
        envs, records = self.build_many(calls)
        broker.enqueue_sync(envs, storage)
        return records

    def get(self, uuid: str | _uuid.UUID) -> Task | None:
        """The record of a task, or None when unknown or expired."""
        return self._finish(self.storage.get_sync(str(uuid), self.queues))

    def wait(self, uuid: str | _uuid.UUID, timeout: float) -> Task | None:
        """Block until the task (following its retry chain) is final; None if unknown or still running."""
        task = self.storage.wait_sync(str(uuid), self.queues, timeout)
        return self._finish(task) if task is not None and task.finished else None

    def run_worker(self, **options: Any) -> None:
        """Run a worker in this process (blocking), like ``qtasks-fast -A app run --processes 1``."""
        from qtasks_fast.worker.runner import run_worker

        run_worker(self, **options)


