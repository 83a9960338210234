"""A registered task: its options, its argument validator, and how to call it.

``@app.task`` returns a :class:`TaskFunc`. The worker looks it up by name and
calls :meth:`TaskFunc.bind` to validate the arguments against the function's
type hints (msgspec) before the call; a producer that has the task registered
runs the same check at enqueue, so a wrong argument fails where it was written.

The wire signature is the function's minus what the worker fills in itself: the
``self`` of an ``echo=True`` task and ``Depends``/``State`` parameters
(:mod:`qtasks_fast.depends`). Pydantic model parameters travel as dicts
(:mod:`qtasks_fast.contrib.pydantic`).
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from qtasks_fast.contrib.pydantic import ModelParam, to_model, to_wire
from qtasks_fast.events import events_of
from qtasks_fast.exceptions import TaskArgumentsError
from qtasks_fast.log import get_logger
from qtasks_fast.middleware import ENQUEUE_HOOKS, Hooks, Middleware, as_instances, middleware_chain, unclaimed_options
from qtasks_fast.middlewares.arguments import assemble, build_validator, fold_spread, invalid, wire_signature

if TYPE_CHECKING:
    from qtasks_fast.app import BaseQueueTasks
    from qtasks_fast.schemas import Task

#: how a sync task runs in the worker: a thread of the pool (default), inline on the event loop, or in a
#: child process (a hard ``max_time``: see qtasks_fast.worker.procexec)
EXECUTORS = ("thread", "inline", "process")
#: the options ``@app.task`` takes itself; any other is kept in ``extra`` (QTasks' ``TaskExecSchema.extra``) for
#: the middlewares that declare it and for plugins, with a warning when no middleware of the chain declares it
TASK_OPTIONS = ("name", "priority", "echo", "max_time", "retry", "retry_on_exc", "retry_backoff", "retry_backoff_max",
                "retry_jitter", "decode", "tags", "description", "generate_handler", "executor",
                "middlewares_before", "middlewares_after", "concurrency_limit", "queue")
#: options ``@app.task`` keeps in ``extra`` for QTasks' plugins, known here, so kept without a warning:
#: ``test`` (QTasks' test plugin, qtasks_fast.plugins.testing, marks the records of such a task)
PLUGIN_OPTIONS = frozenset({"test"})
#: ``add_task``'s options beyond QTasks' two (priority, timeout): a task parameter of one of these names wins
CALL_OPTIONS = ("countdown", "eta", "unique", "connection")
_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
_UNSET: Any = object()
log = get_logger("task")


class TaskFunc:
    """What ``@app.task`` returns; call ``.add_task(...)`` to enqueue, or call it directly to run it here."""

    def __init__(self, app: BaseQueueTasks, func: Callable[..., Any], *, name: str, priority: int | None = None,
                 echo: bool = False, max_time: float | None = None, retry: int | None = None,
                 retry_on_exc: Sequence[type[BaseException]] | None = None, retry_backoff: float | bool = 0.0,
                 retry_backoff_max: float = 300.0, retry_jitter: bool = True,
                 decode: Callable[[Any], Any] | None = None, tags: Sequence[str] | None = None,
                 description: str | None = None, generate_handler: Callable[[Any], Any] | None = None,
                 executor: Any = None, middlewares_before: Sequence[Any] | None = None,
                 middlewares_after: Sequence[Any] | None = None, concurrency_limit: int | None = None,
                 queue: str | None = None, **options: Any) -> None:
        self.app = app
        self.func = func
        self.name = name
        #: ``priority=`` as given; None follows ``app.config.task_default_priority`` (see :attr:`priority`)
        self.own_priority = priority
        self.echo = echo
        self.max_time = max_time
        self.retry = retry
        self.retry_on_exc = tuple(retry_on_exc or ())
        self.retry_backoff = 1.0 if retry_backoff is True else float(retry_backoff or 0.0)
        self.retry_backoff_max = float(retry_backoff_max)
        self.retry_jitter = bool(retry_jitter)
        #: ``decode=`` as given; None follows ``app.config.task_default_decode`` (see :attr:`decode`)
        self.own_decode = decode
        self.tags = list(tags or ())
        self.description = description if description is not None else inspect.getdoc(func)
        self.generate_handler = generate_handler
        #: a user's executor object (``executor=MyExecutor()``): see qtasks_fast.worker.executor.TaskExecutor
        self.custom_executor: Any = None
        if executor is not None and not isinstance(executor, str):
            _refuse_qtasks_executor(name, executor)
            inst = executor() if isinstance(executor, type) else executor
            if not callable(getattr(inst, "run", None)):
                raise TypeError(f"task {name!r}: executor must be one of {EXECUTORS} or a TaskExecutor "
                                f"(qtasks_fast.worker.executor.TaskExecutor: an object with async run(ctx, call)), "
                                f"not {executor!r}")
            self.custom_executor, executor = inst, "custom"
        self.executor = executor or "thread"
        #: fleet-wide cap on running calls of this task (enforced by the worker through the broker)
        self.concurrency_limit = concurrency_limit
        #: the other ``@app.task(my_option=...)`` options (QTasks' ``extra``): read by the task's middlewares from
        #: ``ctx.task.options`` and by plugins from ``task_func.extra``
        self.options = dict(options)
        self.middlewares_before: list[Middleware] = as_instances(middlewares_before, f"task {name!r}")
        self.middlewares_after: list[Middleware] = as_instances(middlewares_after, f"task {name!r}", "after")
        self.queue = queue or app.config.default_queue
        self.is_async = inspect.iscoroutinefunction(func)
        self.is_gen = inspect.isgeneratorfunction(func)
        self.is_async_gen = inspect.isasyncgenfunction(func)
        self.inline = self.executor == "inline"
        #: the executor's one check: True once this task is known to need nothing but the plain call path
        self.plain = False
        self._middlewares: tuple[Middleware, ...] | None = None
        self._enqueue_hooks: bool | None = None
        self._hooks: Hooks | None = _UNSET
        self._sig = inspect.signature(func)
        #: parameters the worker fills (name -> Depends or State class), and pydantic model parameters
        self.injected: dict[str, Any] = {}
        self.models: dict[str, ModelParam] = {}
        self._wire_sig, hints = wire_signature(self)
        self._validator = build_validator(self.name, self._wire_sig, hints)
        self._fast = self._fast_shape()
        #: ``add_task`` options of ours (QTasks reserves only priority and timeout) this task declares as
        #: parameters: such a keyword goes to the task, as in QTasks (qtasks_fast.components.producer.task_keywords)
        self.shadowed_options = frozenset(o for o in CALL_OPTIONS if o in self._wire_sig.parameters
                                          and self._wire_sig.parameters[o].kind not in _VARIADIC)
        self._check()
        self._warn_unclaimed()
        if self.shadowed_options:
            names = sorted(self.shadowed_options)
            log.warning("task %r: add_task's %s go to its parameters of those names, as in QTasks; to pass our option "
                        "instead, put the task's arguments in a signature: add_task(task.s(...), %s=...)",
                        name, ", ".join(f"{n}=" for n in names), names[0])
        self.__doc__ = func.__doc__
        self.__name__ = getattr(func, "__name__", name)

    def __repr__(self) -> str:
        return f"<TaskFunc {self.name!r} queue={self.queue!r}>"

    def _warn_unclaimed(self) -> None:
        """QTasks keeps any extra ``@app.task`` option for plugins, so it is accepted; but a misspelt option of
        ours would then silently do nothing, so one no middleware declares is named at registration, once, with
        the closest option it may have meant."""
        given = [o for o in self.options if o not in PLUGIN_OPTIONS]
        for option in unclaimed_options(given, self.middlewares) if given else ():
            known = [*TASK_OPTIONS, *(o for m in self.middlewares for o in m.options)]
            close = difflib.get_close_matches(option, known, n=1, cutoff=0.65)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            log.warning("task %r: option %r is not @app.task's nor declared by a middleware of its chain: kept in "
                        "task.extra for plugins%s", self.name, option, hint)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the function here, in this process (handy in tests)."""
        return self.func(*args, **kwargs)

    def _check(self) -> None:
        """Refuse option values that could only fail later, in a worker."""
        where = f"task {self.name!r}"
        if self.own_priority is not None and type(self.own_priority) is not int:
            raise TypeError(f"{where}: priority must be an int (lower runs first), not {self.own_priority!r}")
        if self.executor not in EXECUTORS and self.custom_executor is None:
            raise ValueError(f"{where}: executor must be one of {EXECUTORS}, not {self.executor!r}")
        if self.executor == "process":
            if self.is_async or self.is_async_gen:
                raise ValueError(f"{where}: executor='process' runs sync functions; an async task runs on the "
                                 "worker's event loop (its max_time cancels it)")
            if self.injected:
                raise ValueError(f"{where}: executor='process' cannot fill Depends/State parameters "
                                 f"({', '.join(self.injected)}): they live in the worker process")
        cl = self.concurrency_limit
        if cl is not None and (isinstance(cl, bool) or not isinstance(cl, int) or cl < 1):
            raise ValueError(f"{where}: concurrency_limit must be an int >= 1 (or None for no limit), not {cl!r}")
        if self.max_time is not None and not self.max_time > 0:
            raise ValueError(f"{where}: max_time must be > 0 seconds (or None), not {self.max_time!r}")
        if self.retry_backoff < 0 or not self.retry_backoff_max > 0:
            raise ValueError(f"{where}: retry_backoff must be >= 0 seconds (True = 1) and retry_backoff_max > 0")
        for exc in self.retry_on_exc:
            if not (isinstance(exc, type) and issubclass(exc, BaseException)):
                raise TypeError(f"{where}: retry_on_exc takes exception classes, not {exc!r}")

    # ------------------------------------------------------------ middlewares
    @property
    def priority(self) -> int:
        """``priority=`` of the task, else the app's ``config.task_default_priority`` (QTasks) at the time
        it is read: a config set after ``@app.task`` still applies."""
        if self.own_priority is not None:
            return self.own_priority
        return int(getattr(self.app.config, "task_default_priority", 0))

    @priority.setter
    def priority(self, value: int | None) -> None:
        self.own_priority = value

    @property
    def decode(self) -> Callable[[Any], Any] | None:
        """``decode=`` of the task, else the app's ``config.task_default_decode`` (QTasks)."""
        if self.own_decode is not None:
            return self.own_decode
        return getattr(self.app.config, "task_default_decode", None)

    @decode.setter
    def decode(self, value: Callable[[Any], Any] | None) -> None:
        self.own_decode = value

    # --------------------------------------------- QTasks TaskExecSchema fields
    # app.tasks holds TaskFunc objects where QTasks holds TaskExecSchema (its name resolves to this class):
    # the few fields of QTasks' schema that are named differently here read through these.
    @property
    def awaiting(self) -> bool:
        """QTasks ``awaiting``: the function is a coroutine function (an async generator is ``generating``)."""
        return self.is_async

    @property
    def generating(self) -> str | bool:
        """QTasks ``generating``: ``"sync"`` or ``"async"`` for a generator task, False otherwise."""
        return "async" if self.is_async_gen else "sync" if self.is_gen else False

    @property
    def extra(self) -> dict[str, Any]:
        """QTasks ``extra``: the task's other ``@app.task`` options, which its middlewares read (:attr:`options`)."""
        return self.options

    def add_middlewares_before(self, middlewares: Sequence[Any]) -> None:
        """QTasks ``add_middlewares_before``: append middlewares (classes or instances) to the task's own."""
        self.middlewares_before.extend(as_instances(middlewares, f"task {self.name!r}"))
        self._middlewares_changed()

    def add_middlewares_after(self, middlewares: Sequence[Any]) -> None:
        """QTasks ``add_middlewares_after``: see :meth:`add_middlewares_before`."""
        self.middlewares_after.extend(as_instances(middlewares, f"task {self.name!r}", "after"))
        self._middlewares_changed()

    def _middlewares_changed(self) -> None:
        self.app._mw_active = True  # the producer skips the chain while no middleware was ever added
        self.reset_middlewares()

    @property
    def middlewares(self) -> tuple[Middleware, ...]:
        """The task's whole chain (app before + task before + task after + app after), cached."""
        if self._middlewares is None:
            self._middlewares = middleware_chain(self.app, self)
        return self._middlewares

    @property
    def has_enqueue_hooks(self) -> bool:
        """True when a middleware of the chain has a producer hook (``before_enqueue``/``after_enqueue``)."""
        if self._enqueue_hooks is None:
            self._enqueue_hooks = any(getattr(type(m), h) is not getattr(Middleware, h)
                                      for m in self.middlewares for h in ENQUEUE_HOOKS)
        return self._enqueue_hooks

    def reset_middlewares(self) -> None:
        """Forget the cached chain and worker plan (the app's middlewares or event handlers changed)."""
        self._middlewares = None
        self._enqueue_hooks = None
        self._hooks = _UNSET
        self.plain = False

    invalidate = reset_middlewares

    def worker_hooks(self) -> Hooks | None:
        """The middleware hooks and event handlers a call of this task runs in the worker; None when none."""
        if self._hooks is _UNSET:
            events = events_of(self.app)
            if events is not None:
                events.watch(self)
            hooks = Hooks(self.middlewares, events if events is not None and events.has_task_handlers() else None)
            self._hooks = None if hooks.empty else hooks
        return self._hooks

    def needs_hooks(self) -> bool:
        """True when a call must take the executor's hooked path: middleware hooks, event handlers, injected
        or model parameters, ``executor="process"`` or a custom executor."""
        return bool(self.worker_hooks() is not None or self.injected or self.models
                    or self.executor in ("process", "custom"))

    # ------------------------------------------------------------ validation
    def _fast_shape(self) -> tuple[list[str], int] | None:
        """Positional parameter names and how many are required, when a call can skip ``Signature.bind``.

        ``bind`` costs microseconds per call; for the common shape (plain
        positional-or-keyword parameters, called positionally) a length check says the same.
        """
        params = list(self._wire_sig.parameters.values())
        if self.models or any(p.kind not in (p.POSITIONAL_OR_KEYWORD, p.POSITIONAL_ONLY) for p in params):
            return None
        return [p.name for p in params], sum(p.default is p.empty for p in params)

    def _values(self, args: Sequence[Any], kwargs: dict[str, Any], validate: bool) -> dict[str, Any]:
        """The wire arguments by parameter name, checked against the signature (and the hints if ``validate``)."""
        try:
            values = dict(self._wire_sig.bind(*args, **kwargs).arguments)
        except TypeError as exc:
            raise TaskArgumentsError(f"task {self.name!r}: {exc} (signature {self._wire_sig})") from None
        if validate and self._validator is not None:
            try:
                converted = msgspec.convert(values, self._validator, strict=False)
            except msgspec.ValidationError as exc:
                raise TaskArgumentsError(invalid(self.name, exc, values, self._validator, self._wire_sig)) from None
            values = {n: getattr(converted, n) for n in values}
        return values

    def bind(self, args: Sequence[Any], kwargs: dict[str, Any]) -> tuple[Sequence[Any], dict[str, Any]]:
        """Check ``args``/``kwargs`` against the wire signature and type hints; return them converted.

        Raises :class:`TaskArgumentsError` with a message naming the task and the bad argument.
        """
        fast = self._fast
        if fast is not None and not kwargs and fast[1] <= len(args) <= len(fast[0]):
            if self._validator is None:
                return args, kwargs
            try:
                converted = msgspec.convert(dict(zip(fast[0], args)), self._validator, strict=False)
            except msgspec.ValidationError as exc:
                raise TaskArgumentsError(f"task {self.name!r}: invalid arguments: {exc}") from None
            return [getattr(converted, n) for n in fast[0][:len(args)]], kwargs
        if self._validator is None and not self.models:
            self._values(args, kwargs, False)  # the signature check alone
            return args, kwargs
        if self.models:
            args, kwargs = fold_spread(self, args, kwargs)
        values = self._values(args, kwargs, True)
        for name, mp in self.models.items():
            if name in values:
                values[name] = to_wire(self.name, name, mp, values[name])
        # what the caller passed by name stays by name on the wire, as in QTasks' record (``kwargs={"x": 5}``),
        # which middlewares and plugins read (``task_executor._kwargs``); the rest is positional again
        named = {n: values.pop(n) for n in kwargs if n in values and n in self._wire_sig.parameters}
        args, wire_kwargs = assemble(self, values, {}, None, wire=True)
        return args, {**wire_kwargs, **named}

    def call_args(self, args: Sequence[Any], kwargs: dict[str, Any], injected: dict[str, Any], echo: Any,
                  validate: bool = True) -> tuple[Sequence[Any], dict[str, Any]]:
        """Worker side: the arguments of the function call itself — wire arguments validated, models
        built, ``injected`` values and the echo ``self`` put in their places. A spread model (QTasks' form)
        is folded here too: a producer that does not know the task sent it as written."""
        if self.models:
            args, kwargs = fold_spread(self, args, kwargs)
        values = self._values(args, kwargs, validate)
        for name, mp in self.models.items():
            if name in values:
                values[name] = to_model(self.name, name, mp, values[name])
        return assemble(self, values, injected, echo, wire=False)

    # --------------------------------------------------------------- enqueue
    def add_task(self, *args: Any, priority: int | None = None, timeout: float | None = None,
                 task_name: str | None = None, **kwargs: Any) -> Any:
        """Enqueue a call (QTasks ``task.add_task``). Returns what ``app.add_task`` returns. ``task_name``: call
        that task of the app instead, as QTasks' ``self.add_task(5, task_name="other")`` in an echo task does."""
        return self.app.add_task(task_name or self.name, *args, priority=priority, timeout=timeout, **kwargs)

    def s(self, *args: Any, **kwargs: Any) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
        """A signature ``(name, args, kwargs)`` for bulk enqueue (``app.add_tasks``)."""
        return (self.name, args, kwargs)


def _refuse_qtasks_executor(task: str, executor: Any) -> None:
    """A subclass of ``BaseTaskExecutor`` (QTasks' name of our ``TaskExecutor``) that does not implement ``run``
    is one written to QTasks' contract (``execute``, ``run_task``, built per call with the task): refused here in
    one line, not left to fail in a worker with ``NotImplementedError`` or a constructor's missing arguments."""
    from qtasks_fast.worker.executor import TaskExecutor

    cls = executor if isinstance(executor, type) else type(executor)
    if issubclass(cls, TaskExecutor) and cls.run is TaskExecutor.run:
        raise TypeError(f"task {task!r}: executor {cls.__name__} does not implement run(ctx, call): QTasks' executor "
                        "contract (execute, run_task) is not ours; port it to qtasks_fast.worker.executor.TaskExecutor "
                        "(docs/extending.md \"Executor\")")


#: QTasks' name of a registered task (``qtasks.schemas.task_exec.TaskExecSchema``, what ``app.tasks`` holds there)
TaskExecSchema = TaskFunc


def decode_result(task: Task | None, funcs: dict[str, TaskFunc]) -> Task | None:
    """Apply the task's ``decode=`` option to a finished record's ``returning``."""
    if task is not None and task.status == "success":
        tf = funcs.get(task.task_name)
        if tf is not None and tf.decode is not None:
            task.returning = tf.decode(task.returning)
    return task
