"""Values a task gets from the worker instead of the caller: ``Depends(...)`` and per-worker ``State``.

    async def db_session():                 # sync/async function, (async) generator or context manager
        session = await pool.acquire()
        try:
            yield session                   # the task gets this
        finally:
            await pool.release(session)     # runs after the task (task scope) or at worker stop

    @app.task
    async def save(item: dict, db: Annotated[Session, Depends(db_session)], state: Counters) -> None: ...
    # or: db: Session = Depends(db_session, scope="worker")

    save.add_task({"id": 1})                # callers pass only ``item``

As in QTasks (``qtasks.plugins.depends.Depends``, ``ScopeEnum``; ``qtasks.plugins.SyncState``/
``AsyncState``). A dependency is resolved in the worker just before the call, with ``scope="task"``
(default: a fresh value per call, cleaned up after it; a generator or context manager is given the
task's exception, so it can roll back) or ``scope="worker"`` (one value per worker process, shared by
every task that depends on the same function, cleaned up when the worker stops). Injected parameters
are not part of the task's wire signature: producers never send them and argument validation skips
them. Sync dependency functions run on the worker's event loop: keep them quick, or make them async.

``State`` (and ``AsyncState``, the same with awaitable methods) is a per-worker-process key/value store;
each subclass is its own namespace, injected into any parameter annotated with it.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import threading
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, get_args, get_origin

from qtasks_fast.log import get_logger

log = get_logger("worker")
Exit = Callable[[BaseException | None], Awaitable[None]]


class ScopeEnum(str, enum.Enum):
    """When a dependency is created and cleaned up (QTasks names)."""

    TASK = "task"
    WORKER = "worker"
    #: QTasks' scopes of the broker, storage and GlobalConfig connections: a worker process holds one of each
    #: for its whole life, so here they live (and are cleaned up) as ``WORKER`` does
    BROKER = "broker"
    STORAGE = "storage"
    GLOBAL_CONFIG = "global_config"


class Depends:
    """Marks a parameter to be filled by calling ``func`` in the worker (see the module doc)."""

    __slots__ = ("func", "scope", "kind")

    def __init__(self, func: Callable[[], Any], scope: str | ScopeEnum = ScopeEnum.TASK) -> None:
        if not callable(func):
            raise TypeError(f"Depends({func!r}): the dependency must be callable (a function that returns, yields "
                            "or is a context manager giving the value)")
        try:
            self.scope = ScopeEnum(scope).value
        except ValueError:
            raise ValueError(f"Depends({getattr(func, '__name__', func)!r}): scope must be one of "
                             f"{', '.join(repr(s.value) for s in ScopeEnum)}, not {scope!r}") from None
        self.func = func
        unwrapped = inspect.unwrap(func)
        if inspect.isasyncgenfunction(func):
            self.kind = "asyncgen"
        elif inspect.isgeneratorfunction(func):
            self.kind = "gen"
        elif unwrapped is not func and inspect.isasyncgenfunction(unwrapped):
            self.kind = "acm"  # @asynccontextmanager
        elif unwrapped is not func and inspect.isgeneratorfunction(unwrapped):
            self.kind = "cm"  # @contextmanager
        else:
            self.kind = "call"  # sync or async function, class, callable object

    def __repr__(self) -> str:
        return f"Depends({getattr(self.func, '__qualname__', self.func)!r}, scope={self.scope!r})"


# ------------------------------------------------------------------------------------------ state
class _Registry:
    """The values of every State class of one worker process."""

    def __init__(self) -> None:
        self.data: dict[type, dict[str, Any]] = {}
        self.lock = threading.Lock()  # sync tasks in pool threads share it

    def of(self, cls: type) -> dict[str, Any]:
        with self.lock:
            return self.data.setdefault(cls, {})


class State:
    """Per-worker key/value store (QTasks ``SyncState``); subclass it for a namespace of your own."""

    def __init__(self, registry: _Registry, state_cls: type | None = None) -> None:
        self._registry = registry
        self._data = registry.of(state_cls or type(self))

    def get(self, key: str | None = None, default: Any = None) -> Any:
        """The value of ``key`` (``default`` when unset); all values as a dict when ``key`` is None."""
        return State.get_all(self) if key is None else self._data.get(key, default)

    def get_all(self) -> dict[str, Any]:
        with self._registry.lock:
            return dict(self._data)

    def set(self, key: str, value: Any) -> None:
        with self._registry.lock:
            self._data[key] = value

    def update(self, **values: Any) -> dict[str, Any]:
        with self._registry.lock:
            self._data.update(values)
            return dict(self._data)

    def delete(self, key: str) -> None:
        with self._registry.lock:
            self._data.pop(key, None)

    def clear(self) -> None:
        with self._registry.lock:
            self._data.clear()


SyncState = State


class AsyncState(State):
    """:class:`State` with awaitable methods (QTasks ``AsyncState``)."""

    async def get(self, key: str | None = None, default: Any = None) -> Any:  # type: ignore[override]
        return State.get(self, key, default)

    async def get_all(self) -> dict[str, Any]:  # type: ignore[override]
        return State.get_all(self)

    async def set(self, key: str, value: Any) -> None:  # type: ignore[override]
        State.set(self, key, value)

    async def update(self, **values: Any) -> dict[str, Any]:  # type: ignore[override]
        return State.update(self, **values)

    async def delete(self, key: str) -> None:  # type: ignore[override]
        State.delete(self, key)

    async def clear(self) -> None:  # type: ignore[override]
        State.clear(self)


# -------------------------------------------------------------------------------------- discovery
def injection_of(annotation: Any, default: Any) -> Depends | type[State] | None:
    """What fills a parameter with this annotation (``include_extras`` hints) and default, if anything."""
    if isinstance(default, Depends):
        return default
    base = annotation
    if get_origin(annotation) is Annotated:
        base, *extras = get_args(annotation)
        for extra in extras:
            if isinstance(extra, Depends):
                return extra
    if isinstance(base, type) and issubclass(base, State):
        return base
    return None


# ------------------------------------------------------------------------------------- resolution
async def _enter(dep: Depends) -> tuple[Any, Exit | None]:
    kind, func = dep.kind, dep.func
    if kind == "call":
        value = func()
        return (await value if inspect.isawaitable(value) else value), None
    if kind == "gen":
        gen = func()
        value = next(gen)

        async def close_gen(exc: BaseException | None) -> None:
            try:
                gen.throw(exc) if exc is not None else next(gen)
            except StopIteration:
                return
            except BaseException as e:
                if e is exc:
                    return
                raise
            raise RuntimeError(f"dependency {dep!r} yielded more than once")

        return value, close_gen
    if kind == "asyncgen":
        agen = func()
        value = await agen.__anext__()

        async def close_agen(exc: BaseException | None) -> None:
            try:
                await (agen.athrow(exc) if exc is not None else agen.__anext__())
            except StopAsyncIteration:
                return
            except BaseException as e:
                if e is exc:
                    return
                raise
            raise RuntimeError(f"dependency {dep!r} yielded more than once")

        return value, close_agen
    cm = func()
    if kind == "acm":
        value = await cm.__aenter__()

        async def close_acm(exc: BaseException | None) -> None:
            await cm.__aexit__(type(exc) if exc else None, exc, exc.__traceback__ if exc else None)

        return value, close_acm
    value = cm.__enter__()

    async def close_cm(exc: BaseException | None) -> None:
        cm.__exit__(type(exc) if exc else None, exc, exc.__traceback__ if exc else None)

    return value, close_cm


async def run_exits(exits: list[Exit], exc: BaseException | None, label: str) -> None:
    """Clean up entered dependencies, last first; a failing cleanup is logged, the others still run."""
    for close in reversed(exits):
        try:
            await close(exc)
        except Exception:  # noqa: BLE001 - the task's outcome is already decided
            log.exception("cleanup of a dependency of %s failed", label)


class Resolver:
    """Resolves the injected parameters of tasks for one worker process; owns worker-scoped values."""

    def __init__(self) -> None:
        self.registry = _Registry()
        self._worker: dict[Any, asyncio.Future[Any]] = {}
        self._worker_exits: list[Exit] = []

    async def resolve(self, injected: dict[str, Any], label: str) -> tuple[dict[str, Any], list[Exit]]:
        """Values of ``injected`` (name -> Depends or State class) and the task-scope cleanups to run."""
        values: dict[str, Any] = {}
        exits: list[Exit] = []
        try:
            for name, inj in injected.items():
                if not isinstance(inj, Depends):
                    values[name] = inj(self.registry, inj)
                elif inj.scope != ScopeEnum.TASK.value:  # worker, or QTasks' broker/storage/global_config
                    values[name] = await self._worker_value(inj)
                else:
                    values[name], close = await _enter(inj)
                    if close is not None:
                        exits.append(close)
        except BaseException as exc:
            await run_exits(exits, exc, label)
            raise
        return values, exits

    async def _worker_value(self, dep: Depends) -> Any:
        fut = self._worker.get(dep.func)
        if fut is None:
            fut = self._worker[dep.func] = asyncio.get_running_loop().create_future()
            try:
                value, close = await _enter(dep)
            except BaseException as exc:
                del self._worker[dep.func]  # the next task tries again
                fut.set_exception(exc)
                fut.exception()  # retrieved: waiters get it, nobody else must be warned
                raise
            if close is not None:
                self._worker_exits.append(close)
            fut.set_result(value)
        return await asyncio.shield(fut)

    async def aclose(self) -> None:
        """Clean up worker-scoped dependencies (worker stop)."""
        exits, self._worker_exits = self._worker_exits, []
        self._worker.clear()
        await run_exits(exits, None, "the worker")
