"""A registered task: its options, its argument validator, and how to call it.

``@app.task`` returns a :class:`TaskFunc`. The worker looks it up by name and
calls :meth:`TaskFunc.bind` to validate the arguments against the function's
type hints (msgspec) before the call; a producer that has the task registered
runs the same check at enqueue, so a wrong argument fails where it was written.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, get_type_hints

import msgspec

from qtasks_fast.exceptions import TaskArgumentsError

if TYPE_CHECKING:
    from qtasks_fast.app import BaseQueueTasks
    from qtasks_fast.schemas import Task

#: how a sync task runs in the worker: a thread of the pool (default) or inline on the event loop
EXECUTORS = ("thread", "inline")


class TaskFunc:
    """What ``@app.task`` returns; call ``.add_task(...)`` to enqueue, or call it directly to run it here."""

    def __init__(self, app: BaseQueueTasks, func: Callable[..., Any], *, name: str, priority: int = 0,
                 echo: bool = False, max_time: float | None = None, retry: int | None = None,
                 retry_on_exc: Sequence[type[BaseException]] | None = None, decode: Callable[[Any], Any] | None = None,
                 tags: Sequence[str] | None = None, description: str | None = None,
                 generate_handler: Callable[[Any], Any] | None = None, executor: str | None = None,
                 middlewares_before: Sequence[Any] | None = None, middlewares_after: Sequence[Any] | None = None,
                 queue: str | None = None) -> None:
        if executor is not None and executor not in EXECUTORS:
            raise ValueError(f"task {name!r}: executor must be one of {EXECUTORS}, not {executor!r}")
        self.app = app
        self.func = func
        self.name = name
        self.priority = priority
        self.echo = echo
        self.max_time = max_time
        self.retry = retry
        self.retry_on_exc = tuple(retry_on_exc or ())
        self.decode = decode
        self.tags = list(tags or ())
        self.description = description if description is not None else inspect.getdoc(func)
        self.generate_handler = generate_handler
        self.executor = executor or "thread"
        self.middlewares_before = list(middlewares_before or ())
        self.middlewares_after = list(middlewares_after or ())
        self.queue = queue or app.config.default_queue
        self.is_async = inspect.iscoroutinefunction(func)
        self.is_gen = inspect.isgeneratorfunction(func)
        self.is_async_gen = inspect.isasyncgenfunction(func)
        self.inline = self.executor == "inline"
        self._sig = inspect.signature(func)
        self._validator = self._build_validator()
        self._fast = self._fast_shape()
        self.__doc__ = func.__doc__
        self.__name__ = getattr(func, "__name__", name)

    def __repr__(self) -> str:
        return f"<TaskFunc {self.name!r} queue={self.queue!r}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the function here, in this process (handy in tests)."""
        return self.func(*args, **kwargs)

    # ------------------------------------------------------------ validation
    def _build_validator(self) -> type[msgspec.Struct] | None:
        """A msgspec Struct mirroring the annotated parameters; None when nothing is annotated."""
        try:
            hints = get_type_hints(self.func)
        except Exception:  # unresolvable forward references: validate nothing rather than crash
            hints = {}
        params = list(self._sig.parameters.values())
        if self.echo and params:
            params = params[1:]
        fields: list[tuple[str, Any, Any] | tuple[str, Any]] = []
        annotated = False
        for p in params:
            ann = hints.get(p.name, Any)
            annotated |= ann is not Any
            if p.kind is p.VAR_POSITIONAL:
                ann = tuple[ann, ...]  # type: ignore[valid-type]
            elif p.kind is p.VAR_KEYWORD:
                ann = dict[str, ann]  # type: ignore[valid-type]
            fields.append((p.name, ann, msgspec.NODEFAULT) if p.default is p.empty else (p.name, ann, p.default))
        if not annotated:
            return None
        # defstruct needs required fields first; order does not matter for validation by name
        fields.sort(key=lambda f: len(f) == 3 and f[2] is not msgspec.NODEFAULT)  # type: ignore[misc]
        return msgspec.defstruct(f"{self.name}_args", fields, kw_only=True)  # type: ignore[arg-type]

    def _fast_shape(self) -> tuple[list[str], int] | None:
        """Positional parameter names and how many are required, when a call can skip ``Signature.bind``.

        ``bind`` costs microseconds per call; for the common shape (plain
        positional-or-keyword parameters, called positionally) a length check says the same.
        """
        params = list(self._sig.parameters.values())[1 if self.echo else 0:]
        if any(p.kind not in (p.POSITIONAL_OR_KEYWORD, p.POSITIONAL_ONLY) for p in params):
            return None
        return [p.name for p in params], sum(p.default is p.empty for p in params)

    def bind(self, args: Sequence[Any], kwargs: dict[str, Any]) -> tuple[Sequence[Any], dict[str, Any]]:
        """Check ``args``/``kwargs`` against the signature and type hints; return them converted.

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
        params = self._sig.parameters
        try:
            if self.echo:
                bound = self._sig.bind(None, *args, **kwargs)
            else:
                bound = self._sig.bind(*args, **kwargs)
        except TypeError as exc:
            raise TaskArgumentsError(f"task {self.name!r}: {exc} (signature {self._sig})") from None
        if self._validator is None:
            return args, kwargs
        values = dict(bound.arguments)
        if self.echo:
            values.pop(next(iter(params)))
        try:
            converted = msgspec.convert(values, self._validator, strict=False)
        except msgspec.ValidationError as exc:
            raise TaskArgumentsError(f"task {self.name!r}: invalid arguments: {exc}") from None
        new_args: list[Any] = []
        new_kwargs: dict[str, Any] = {}
        for p in list(params.values())[1 if self.echo else 0:]:
            if p.name not in values:
                continue
            v = getattr(converted, p.name)
            if p.kind is p.VAR_POSITIONAL:
                new_args.extend(v)
            elif p.kind is p.VAR_KEYWORD:
                new_kwargs.update(v)
            elif p.kind is p.KEYWORD_ONLY:
                new_kwargs[p.name] = v
            else:
                new_args.append(v)
        return tuple(new_args), new_kwargs

    # --------------------------------------------------------------- enqueue
    def add_task(self, *args: Any, priority: int | None = None, timeout: float | None = None,
                 **kwargs: Any) -> Any:
        """Enqueue a call (QTasks ``task.add_task``). Returns what ``app.add_task`` returns."""
        return self.app.add_task(self.name, *args, priority=priority, timeout=timeout, **kwargs)

    def s(self, *args: Any, **kwargs: Any) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
        """A signature ``(name, args, kwargs)`` for bulk enqueue (``app.add_tasks``)."""
        return (self.name, args, kwargs)


def decode_result(task: Task | None, funcs: dict[str, TaskFunc]) -> Task | None:
    """Apply the task's ``decode=`` option to a finished record's ``returning``."""
    if task is not None and task.status == "success":
        tf = funcs.get(task.task_name)
        if tf is not None and tf.decode is not None:
            task.returning = tf.decode(task.returning)
    return task
