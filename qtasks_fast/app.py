"""``QueueTasks``: the app object — task registry, configuration and the producer API.

:class:`BaseQueueTasks` holds what the sync client and the async client
(``qtasks_fast.asyncio.QueueTasks``) share; each adds its own ``add_task``/``get``
and the task-control wrappers. The worker and the supervisor only need the registry
and the backend from here. How a call becomes an envelope (task manager, middlewares,
countdown, unique) is in :mod:`qtasks_fast.components.producer`.
"""

from __future__ import annotations

import os
import sys
import uuid as _uuid
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, overload

from qtasks_fast import router as _router
from qtasks_fast.abc import Broker, Storage
from qtasks_fast.backends import ENV_URL, make_backend, sqlite_location, sqlite_url_path
from qtasks_fast.components import client_ops
from qtasks_fast.components.producer import Producer, Signature
from qtasks_fast.config import GlobalConfig
from qtasks_fast.control import checked_uuid
from qtasks_fast.exceptions import TaskNotFound
from qtasks_fast.logs import Logger, apply_to_config
from qtasks_fast.plugins import BasePlugin, Plugins, add_plugin
from qtasks_fast.schemas import Task
from qtasks_fast.steps import run_sync
from qtasks_fast.task import TaskFunc, decode_result

if TYPE_CHECKING:
    import datetime as _dt

    from qtasks_fast.abc.broker import DeadLetter
    from qtasks_fast.tasktable import TaskSpec

__all__ = ["BaseQueueTasks", "QueueTasks", "Signature"]


def _default_events() -> Any:
    try:
        from qtasks_fast.events import Events
    except ImportError:  # events are optional: an app without them fires nothing
        return None
    return Events()


def _caller_file() -> str | None:
    """The absolute path of the file whose code created the app (the first frame outside qtasks_fast), or
    None when there is no such file (an interactive session, ``python -c``): the embedded database lives
    next to it, so every process that imports the app finds the same one, wherever it was started from."""
    frame = sys._getframe(1)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module != "qtasks_fast" and not module.startswith("qtasks_fast."):
            path = frame.f_code.co_filename
            return os.path.abspath(path) if os.path.isfile(path) else None
        frame = frame.f_back  # type: ignore[assignment]
    return None


def _refuse_component(name: str, value: Any, instead: str) -> None:
    """QTasks' ``QueueTasks(worker=...)`` takes a component object this app has no place for: refused at
    construction, loudly, so an app that relies on its own worker learns it is not used."""
    if value is not None:
        raise TypeError(f"QueueTasks({name}={value!r}) is not supported by qtasks_fast: {instead}")


def _worker_component(worker: Any, name: str, broker: Any, app: Any) -> Any:
    """``QueueTasks(worker=...)``: QTasks' ``SyncThreadWorker``/``AsyncWorker`` of :mod:`qtasks_fast.workers` when it
    agrees with the app; anything else is refused (``TypeError``), never kept unused. Without one, the app gets the
    default of its client, as a QTasks app does (``app.worker.config`` is read by QTasks' examples)."""
    from qtasks_fast.workers import AsyncWorker, BaseWorker, SyncThreadWorker

    if worker is None:
        worker = (AsyncWorker if app.is_async else SyncThreadWorker)(name=name, broker=broker)
        worker.bind(app)
        return worker

    if not isinstance(worker, BaseWorker):
        _refuse_component("worker", worker, "workers are separate processes here: start them with "
                          "`qtasks-fast -A module:app run` (or app.run_forever()) and size them with "
                          "config.concurrency; QTasks' SyncThreadWorker/AsyncWorker come from qtasks_fast.workers")
    problem = worker.conflict(name, broker)
    if problem:
        raise TypeError(f"QueueTasks(worker=...): {problem}")
    worker.bind(app)
    return worker


def qtasks_faces(broker: Any, storage: Any, config: Any) -> None:
    """Give a backend built here the attributes QTasks code reads on its components (``app.broker.config``,
    ``app.broker.storage``, ``app.broker.storage.config``, ``if app.broker.storage.global_config:``, as in QTasks'
    examples/env app): the app's config, the storage beside the broker, no GlobalConfig. What a component already
    has (QTasks' ``SyncRedisBroker``/``SyncRedisStorage`` carry their own) is left alone."""
    for obj, attr, value in ((broker, "config", config), (broker, "storage", storage), (storage, "config", config),
                             (storage, "global_config", None)):
        if obj is not None and not hasattr(obj, attr):
            try:
                setattr(obj, attr, value)
            except AttributeError:  # a custom backend with __slots__: QTasks' attribute stays missing
                pass


def url_origin(source: str) -> str:
    """Where a broker URL came from, for an error about it: ``env QTASKS_BROKER_URL``, ``--broker``, ..."""
    return "the app's broker_url" if source == "code" else source.removeprefix("flag ")


class BaseQueueTasks(Producer):
    """Registry and backend shared by the sync and async clients."""

    #: True for the async client: its producer methods are coroutines (``chain``/``group`` follow it)
    is_async = False
    #: set while a worker of the app serves in this process (``run_forever``, a CLI worker): asks it to drain
    _stop_serving: Callable[[], object] | None = None

    def __init__(self, name: str = "QueueTasks", broker_url: str | None = None, broker: Broker | None = None,
                 worker: Any = None, log: Any = None, config: GlobalConfig | None = None, events: Any = None,
                 storage: Storage | None = None, version: str | None = None, storage_url: str | None = None) -> None:
        self.name = name
        #: where the records live when not with the broker (``redis://`` broker, ``postgresql://`` storage): the
        #: storage half of that URL's backend; ``storage=`` (an object) wins over it
        self.storage_url = storage_url
        #: the app's own version (QTasks ``app.version``, "project version"): published with the task table,
        #: where the newest version's options win during a rolling deploy (qtasks_fast.tasktable)
        self.version = version
        self.config = config or GlobalConfig()
        #: the URL given in code; the one in force is :meth:`broker_source`'s (a flag, then the environment)
        self.broker_url = broker_url
        #: ``(url, source)`` set by the CLI's ``--broker``/``--broker-file``: beats the environment and code
        self._flag_url: tuple[str, str] | None = None
        #: the file of the module that created the app: the embedded database lives next to it
        self._defined_in = _caller_file()
        self.tasks: dict[str, TaskFunc] = {}
        #: QTasks ``app.worker``: the ``worker=`` component (qtasks_fast.workers), which names the worker serving the
        #: app (``run_forever``, ``qtasks-fast run``) and carries nothing of its own
        self.worker = _worker_component(worker, name, broker, self)
        #: QTasks ``app.log``: the ``log=`` Logger for component "QueueTasks", or one of the app's, made on first use
        self._log: Logger | None = None
        if log is not None:
            if not isinstance(log, Logger):
                raise TypeError(f"QueueTasks(log={log!r}) takes a qtasks_fast.logs.Logger (QTasks' Logger); for "
                                "anything else configure logging.getLogger('qtasks_fast') (handlers, level)")
            self._log = log.with_subname("QueueTasks")
            apply_to_config(log, self.config)  # its level and format become the app's, as in QTasks
        self.events = events if events is not None else _default_events()
        #: routers included with :meth:`include_router`, in order (QTasks ``app.routers``)
        self.routers: list[_router.Router] = []
        #: producer- and worker-side middlewares of every task: see :meth:`add_middleware`
        self.middlewares_before: list[Any] = []
        self.middlewares_after: list[Any] = []
        #: plugins by trigger name: see :meth:`add_plugin`
        self.plugins = Plugins()
        self._broker = broker
        #: a broker object that carries its storage (QTasks' ``broker.storage``) brings it along
        self._storage = storage if storage is not None else getattr(broker, "storage", None)
        self._code_broker = broker is not None  # a broker object of the code: the environment leaves it alone
        if broker is not None and self._storage is not None:
            qtasks_faces(broker, self._storage, self.config)
        self._shared_names: set[str] = set()
        self._mw_active = False
        self._routed_queues: list[str] = []
        self._unnoted_queues: list[str] = []
        self._published: dict[str, TaskSpec] = {}
        self._table_read_after = self._table_fresh_until = 0.0  # never read: the first miss reads it
        _router.app_created(self)  # shared tasks join this app; it becomes the main app (QTasks _state.app_main)

    @property
    def log(self) -> Logger:
        """QTasks ``app.log``: the Logger given as ``log=`` (component ``QueueTasks``); without one, a Logger named
        after the app at ``config.logs_default_level_server`` in ``config.logs_format``, made on first use."""
        if self._log is None:
            self._log = Logger(self.name, "QueueTasks", default_level=self.config.logs_default_level_server,
                               format=self.config.logs_format)
        return self._log

    def broker_source(self) -> tuple[str | None, str]:
        """The broker URL in force and where it came from, by the one precedence of every setting: a CLI
        flag, then ``$QTASKS_BROKER_URL``, then ``broker_url=`` in code, then the default (None: embedded
        SQLite). The environment names a URL, not a backend: it leaves a ``broker=`` object of the code alone
        (only a flag replaces that)."""
        if self._flag_url is not None:
            return self._flag_url
        env = os.environ.get(ENV_URL)
        if env and not self._code_broker:
            return env, f"env {ENV_URL}"
        if self.broker_url:
            return self.broker_url, "code"
        if self._code_broker:
            return None, "code (broker object)"
        return None, "default"

    def sqlite_source(self) -> tuple[str, str] | None:
        """``(path, source)`` of the embedded SQLite file in force, None when the broker is not SQLite."""
        url, _ = self.broker_source()
        if self._code_broker and not self._flag_url:
            path = getattr(self._broker, "path", None)
            return (path, "code (broker object)") if isinstance(path, str) else None
        if url is None:
            return sqlite_location(self.name, self._defined_in)
        if url.startswith("sqlite://"):
            return sqlite_url_path(url), "broker URL"
        return None

    def _use_flag_url(self, url: str, source: str) -> None:
        """The CLI's ``--broker`` / ``--broker-file``: replaces the backend the app had (even an object)."""
        self._flag_url = (url, source)
        self._broker = self._storage = None
        self._code_broker = False

    def _resolve(self) -> tuple[Broker, Storage]:
        if self._storage is None and self.storage_url:
            try:
                self._storage = make_backend(self.storage_url, self.name, self.config, self._defined_in)[1]
            except ValueError as exc:
                raise ValueError(f"{exc} (from storage_url)") from None
        if self._broker is None or self._storage is None:
            url, source = self.broker_source()
            try:
                broker, storage = make_backend(url, self.name, self.config, self._defined_in)
            except ValueError as exc:  # a URL that cannot work: say where it came from (the env is easy to miss)
                raise ValueError(f"{exc} (from {url_origin(source)})") from None
            self._broker = self._broker or broker
            self._storage = self._storage or storage
            qtasks_faces(self._broker, self._storage, self.config)
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

    def _register(self, func: Callable[..., Any], name: str | None, options: dict[str, Any],
                  shared: bool = False) -> TaskFunc:
        """Register ``func``. A ``shared_task`` never displaces a task of the app's own (the app's wins)."""
        task_name = options.pop("name", None) or name or func.__name__
        old = self.tasks.get(task_name)
        if old is not None:
            if shared and task_name not in self._shared_names:
                return old
            if not shared and task_name not in self._shared_names:
                raise ValueError(f"task name {task_name!r} is already registered in app {self.name!r} "
                                 f"(by {old.func!r}); pick another name=")
        tf = TaskFunc(self, func, name=task_name, **options)
        self.tasks[task_name] = tf
        if shared:
            self._shared_names.add(task_name)
        else:
            self._shared_names.discard(task_name)
        if getattr(tf, "middlewares_before", None) or getattr(tf, "middlewares_after", None):
            self._mw_active = True
        return tf

    def include_router(self, router: _router.Router) -> None:
        """Register every task of ``router`` (and any it gets later) in this app (QTasks ``include_router``)."""
        router.attach(self)

    def add_middleware(self, middleware: Any, position: str = "before", **init_kwargs: Any) -> Any:
        """Run ``middleware`` around every task of this app; returns the instance.

        ``middleware`` is a ``qtasks_fast.middleware.Middleware`` subclass (built with ``init_kwargs``)
        or an instance. ``position="before"`` puts it ahead of the tasks' own middlewares, ``"after"``
        behind them: the chain is ``app before + task before + task after + app after``, and the
        producer hooks (``before_enqueue``/``after_enqueue``) run in that order at every enqueue.
        A middleware with an ``attach(app)`` method is given the app it joins (``Metrics`` registers
        its HTTP server there).
        """
        if position not in ("before", "after"):
            raise ValueError(f"add_middleware: position must be 'before' or 'after', not {position!r}")
        if isinstance(middleware, type) and hasattr(middleware, "adapt_qtasks") and not init_kwargs:
            instance = middleware.adapt_qtasks(position)  # a QTasks TaskMiddleware: built per call, as there
        elif isinstance(middleware, type):
            instance = middleware(**init_kwargs)
        elif init_kwargs:
            raise TypeError(f"add_middleware got an instance of {type(middleware).__name__} and keyword arguments "
                            f"{sorted(init_kwargs)}: pass the class to have it built with them")
        else:
            instance = middleware
        (self.middlewares_before if position == "before" else self.middlewares_after).append(instance)
        self._mw_active = True
        attach = getattr(instance, "attach", None)
        if callable(attach):
            attach(self)
        for tf in self.tasks.values():  # a chain cached by a task before this call is stale now
            reset = getattr(tf, "reset_middlewares", None)
            if reset is not None:
                reset()
        return instance

    def add_plugin(self, plugin: BasePlugin, trigger_names: Sequence[str] | None = None,
                   component: str | None = "worker") -> BasePlugin:
        """Call ``plugin.trigger(name, **kw)`` at ``trigger_names`` (None: all) of ``component`` (``"worker"``,
        ``"producer"``, ``"broker"``, ``"storage"``); names and arguments: :mod:`qtasks_fast.plugins`. QTasks'
        trigger names are read as ours where they mean the same (:mod:`qtasks_fast.plugin_names`)."""
        return add_plugin(self, plugin, trigger_names, component)

    def periodic(self, func_or_name: Any = None, **options: Any) -> Any:
        """Schedule a task (``@app.periodic(cron="*/5 * * * *")``, ``@app.periodic(every=10)``, or a task
        name); see :func:`qtasks_fast.periodic.register`. ``qtasks-fast run`` fires the ticks."""
        from qtasks_fast.periodic import register

        return register(self, func_or_name, **options)

    @property
    def task_queues(self) -> list[str]:
        """The queues of the tasks registered here, the default first, then any its task manager routed calls
        to: what a worker of this app serves unless told otherwise."""
        qs = [self.config.default_queue]
        for tf in self.tasks.values():
            if tf.queue not in qs:
                qs.append(tf.queue)
        qs.extend(q for q in self._routed_queues if q not in qs)
        return qs

    @property
    def queues(self) -> list[str]:
        """Every queue of the app: :attr:`task_queues`, then those of the published task table as last read
        (tasks this process has not imported), where ``get``/``wait``/``cancel`` look a uuid up."""
        qs = self.task_queues
        qs.extend({spec.queue: None for spec in self._published.values() if spec.queue not in qs})
        return qs

    async def all_queues(self) -> list[str]:
        """:attr:`queues`, after reading the published table when due (a client that never imported the tasks)."""
        if self.table_due():
            await self.refresh_tasks()
        return self.queues

    def _finish(self, task: Task | None) -> Task | None:
        return decode_result(task, self.tasks)

    if TYPE_CHECKING:  # each client defines it: sync returns Task | None, async a coroutine of it
        def add_task(self, task_name: str | Signature, *args: Any, priority: int | None = None,
                     timeout: float | None = None, countdown: float | None = None,
                     eta: _dt.datetime | float | None = None, unique: str | tuple[str, float] | None = None,
                     connection: Any = None, **kwargs: Any) -> Any: ...

    async def _close_backend(self) -> None:
        """Close the broker's and storage's connections of the running loop, and their blocking ones."""
        broker, storage = self._broker, self._storage
        if broker is not None:
            await broker.close()
        if storage is not None:
            await storage.close()
        self._close_sync_parts()

    def _close_sync_parts(self) -> None:
        for part in (self._broker, self._storage):
            if part is not None:
                part.close_sync()

    def get_task(self, name: str) -> TaskFunc:
        try:
            return self.tasks[name]
        except KeyError:
            raise TaskNotFound(f"no task {name!r} in app {self.name!r}; registered: {sorted(self.tasks)}") from None


class QueueTasks(BaseQueueTasks):
    """Sync client (QTasks ``QueueTasks``): ``add_task``, ``get`` and the control calls block the calling thread."""

    def add_task(self, task_name: str | Signature, *args: Any, priority: int | None = None,
                 timeout: float | None = None, countdown: float | None = None,
                 eta: _dt.datetime | float | None = None, unique: str | tuple[str, float] | None = None,
                 connection: Any = None, **kwargs: Any) -> Task | None:
        """Enqueue; with ``timeout`` wait up to that many seconds and return the finished Task or None.

        None (as in QTasks) means the task is not finished within ``timeout``: it is still queued or
        running and keeps going, so check before reading ``.returning``. To keep its uuid for later, send
        without ``timeout`` and ``app.wait(task.uuid, timeout)``.

        ``countdown`` (seconds) or ``eta`` (a datetime or unix time) delay the run; ``unique="key"`` or
        ``("key", ttl)`` makes a second call with the same key within ttl (default ``config.unique_ttl``)
        a no-op that returns the record of the task holding the key; the key is given back when that
        task is cancelled or fails for good (after its last retry, or dead-lettered), so a re-send then
        runs again (a success keeps it for the ttl). ``connection=`` (the async client, a PostgreSQL backend)
        enqueues inside your open transaction: see ``docs/postgres.md``. A task that declares a parameter named
        ``countdown``/``eta``/``unique``/``connection`` gets that keyword instead, as in QTasks (which reserves only
        ``priority`` and ``timeout``); the option is then given with the signature form:
        ``app.add_task(my_task.s(countdown=3), countdown=10)``.
        """
        return run_sync(client_ops.adding(self, task_name, args, kwargs, priority, timeout, countdown, eta, unique,
                                          connection))

    def add_tasks(self, calls: Iterable[Signature]) -> list[Task]:
        """Bulk enqueue ``(name, args, kwargs)`` calls (see ``TaskFunc.s``) in one round trip per queue."""
        return run_sync(client_ops.adding_many(self, calls))

    def get(self, uuid: str | _uuid.UUID) -> Task | None:
        """The record of a task, or None when unknown or expired."""
        return run_sync(client_ops.getting(self, uuid))

    def wait(self, uuid: str | _uuid.UUID, timeout: float) -> Task | None:
        """Block until the task (following its retry chain) is final; None if unknown or still running."""
        return run_sync(client_ops.waiting(self, uuid, timeout))

    def get_logs(self, uuid: str | _uuid.UUID) -> list[str]:
        """Log lines captured while task ``uuid`` ran (``LogCapture``); a retry is another task with its own."""
        return run_sync(client_ops.logs(self, uuid))

    def close(self) -> None:
        """Release the connections this client opened (blocking ones, and those of the control calls'
        helper loop). Why: a short-lived script or a test should not leave sockets for the GC; the app
        reconnects if it is used again. Also ``with QueueTasks(...) as app:``."""
        from qtasks_fast.portal import started_portal

        helper = started_portal()
        if helper is not None:
            helper.run(self._close_backend())
        else:
            self._close_sync_parts()

    def __enter__(self) -> QueueTasks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------ task control (qtasks_fast.control)
    def _control(self, op: str, *args: Any) -> Any:
        from qtasks_fast import control
        from qtasks_fast.portal import portal

        return portal().run(getattr(control, op)(self, *args))

    def cancel(self, uuid: str | _uuid.UUID, reason: str = "") -> str:
        """Cancel a task: ``"queued"`` (it will never run), ``"running"`` (asked to stop), ``"finished"`` or
        ``"unknown"``."""
        return str(self._control("cancel", checked_uuid(uuid), reason))

    def restart(self, uuid: str | _uuid.UUID) -> Task:
        """Send the same call again as a new task (its record names the original); returns the new record."""
        return self._control("restart", checked_uuid(uuid))  # type: ignore[no-any-return]

    def dlq_list(self, queue: str | None = None, count: int = 100) -> list[DeadLetter]:
        """Dead letters of ``queue`` (None = every queue of the app), newest first."""
        return self._control("dlq_list", queue, count)  # type: ignore[no-any-return]

    def dlq_requeue(self, queue: str | None = None, ids: Sequence[str] | None = None) -> int:
        """Put dead letters (``ids`` or all) back on their queue; returns how many."""
        return int(self._control("dlq_requeue", queue, ids))

    def dlq_purge(self, queue: str | None = None, ids: Sequence[str] | None = None) -> int:
        """Delete dead letters (``ids`` or all); returns how many."""
        return int(self._control("dlq_purge", queue, ids))

    def purge(self, queue: str) -> int:
        """Drop every queued and delayed (not running) task of ``queue``; returns how many."""
        return int(self._control("purge", queue))

    def flush_all(self) -> None:
        """QTasks ``flush_all``: delete every message, record and dead letter of this app (no other app's);
        refused while its workers run. See :func:`qtasks_fast.control.flush_all`."""
        self._control("flush_all")

    def run_forever(self, starter: Any = None, num_workers: int | None = None, reset_config: bool = True) -> None:
        """QTasks ``app.run_forever()``: run a worker of the app in this process, blocking until SIGTERM/SIGINT;
        see :func:`qtasks_fast.worker.runner.run_forever` (``num_workers``: tasks at once)."""
        from qtasks_fast.worker.runner import run_forever

        run_forever(self, num_workers, starter, reset_config)

    def stop(self) -> None:
        """QTasks ``app.stop()``: the worker serving the app in this process (``run_forever``, from a task,
        a thread or a signal handler) drains and ``run_forever`` returns; nothing when none serves here."""
        if self._stop_serving is not None:
            self._stop_serving()

    def ping(self, server: bool = True) -> bool:
        """QTasks ``ping``: True when a worker of this app is live (``server=False``: when the broker answers);
        see :func:`qtasks_fast.control.ping`."""
        return bool(self._control("ping", server))

    def run_worker(self, **options: Any) -> None:
        """Run a worker in this process (blocking), like ``qtasks-fast -A app run --processes 1``."""
        from qtasks_fast.worker.runner import run_worker

        run_worker(self, **options)
