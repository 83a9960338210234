"""The executor's hooked path: one call with its middleware hooks, events, injected values, or in a process.

Order of one call:

1. event ``task_running``; every ``before_execute`` (chain order; an exception fails the task)
2. arguments: validated, pydantic models built, ``Depends``/``State`` resolved, echo ``self`` added
3. the call itself (time limit: see :mod:`qtasks_fast.worker.executor`); when it raises, the ``recover``
   hooks (chain order) may turn the exception into its result; then every ``on_result``
   (chain order; an exception fails the task)
4. task-scope dependency cleanup (given the task's exception, if any)
5. outcome: success, or error (with a retry child when retries are left) or cancel; then
   ``on_error``/``on_retry``/``after_execute`` (reverse chain order) and the matching events
6. ``on_done``: the worker stores the result and enqueues the followups

Hooks and handlers run before the result is stored; a failing ``after_*`` hook or handler is
logged and changes nothing. A task cancelled (or drained) during step 5 is not interrupted:
by then it left ``Executor.running``.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

import msgspec

from qtasks_fast import _corelib as core
from qtasks_fast.contrib.pydantic import encode_with_models
from qtasks_fast.depends import run_exits
from qtasks_fast.exceptions import TaskCancel
from qtasks_fast.log import current_task, task_label
from qtasks_fast.middleware import call_hooks, recovered, through_results
from qtasks_fast.schemas import task_from_envelope
from qtasks_fast.worker.context import EchoTask, ExecContext

if TYPE_CHECKING:
    from qtasks_fast.abc.broker import Delivery
    from qtasks_fast.depends import Exit
    from qtasks_fast.schemas import Envelope
    from qtasks_fast.task import TaskFunc
    from qtasks_fast.worker.executor import Executor


#: cleanups waiting for a pool thread that outlived its task (time limit, cancel)
_deferred: set[asyncio.Task[None]] = set()


async def run_hooked(ex: Executor, d: Delivery) -> None:
    """One call on the hooked path; whatever breaks outside the task itself (a hook or handler raising
    something other than ``Exception``, the failure path) still ends the delivery, as ``error``."""
    try:
        await _run_hooked(ex, d)
    except Exception as err:  # noqa: BLE001 - nothing after the outcome raises, so none was reported yet
        ex.running.pop(d, None)
        ex.on_done(ex.broken(d, None, err), [])


async def _run_hooked(ex: Executor, d: Delivery) -> None:
    h, env = d.handler, d.envelope
    current_task.set(env)  # this Task's own context: the hooks, the call and its threads log as the task
    hooks = h.worker_hooks()
    events = hooks.events if hooks is not None else None
    label = task_label(env.task_name, env.uuid)
    ctx = ExecContext(h, d, ex.worker_id)
    kw: dict[str, Any] = {}
    if events is not None:
        kw = {"task": h, "task_name": env.task_name, "uuid": env.uuid, "envelope": env, "worker_id": ex.worker_id,
              "task_func": h, "task_broker": env, "worker": ex.worker}  # QTasks' names: task, envelope, the Worker
    exits: list[Exit] = []
    thread: list[Future[Any]] = []  # the pool future of a sync call, when there is one
    value: Any = None
    exc: BaseException | None = None
    try:
        if events is not None:
            await events.afire("task_running", **kw)
        if hooks is not None and hooks.before:
            await call_hooks(hooks.before, ctx, label=label, strict=True)
        try:
            value = await _call(ex, d, ctx, exits, thread)
        except Exception as err:
            if hooks is None or not hooks.recover:
                raise
            value = await recovered(hooks.recover, ctx, err)
        if hooks is not None and hooks.results:
            value = await through_results(hooks.results, ctx, value)
    except asyncio.CancelledError:
        reason = ex.cancelled.pop(d, None)
        if reason is None:  # drain: hand the delivery back, after cleaning up
            ex.running.pop(d, None)
            await _cleanup(exits, thread, asyncio.CancelledError(), label)
            raise
        exc = TaskCancel(reason)
    except asyncio.TimeoutError as err:  # wait_for's has no message; the process pool's says what it did
        exc = err if err.args else TimeoutError(f"task exceeded max_time={env.timeout}s")
    except BaseException as err:  # noqa: BLE001 - a task's failure is data
        exc = err
    ex.running.pop(d, None)
    if exits:
        await _cleanup(exits, thread, exc, label)
    encoded = b""
    followups: list[Envelope] = []
    if exc is None:
        try:
            try:
                encoded = core.encode(value)
            except (TypeError, msgspec.EncodeError, OverflowError):
                encoded = encode_with_models(value)
            followups = ex.followups(env, value, d.handler.app, d) if env.meta else []
        except (TypeError, msgspec.EncodeError, OverflowError) as enc:
            exc = TypeError(f"result of type {type(value).__name__} is not serializable to msgpack: {enc}")
        except Exception as err:  # noqa: BLE001 - the next chain step could not be built
            exc = err
    if exc is None:
        if hooks is not None:
            await call_hooks(hooks.after, ctx, "success", value, label=label)
        if events is not None:
            await events.afire("task_success", result=value, **kw)
            await _stopping(events, kw, "success", encoded, None)
        ex.on_done((d, "success", encoded, "", ""), followups)
        return
    try:
        outcome, followups, child = ex.failure(d, exc)
    except Exception as err:  # noqa: BLE001 - the failure path itself broke: the task still ends
        ex.on_done(ex.broken(d, exc, err), [])
        return
    if hooks is not None:
        if outcome[1] == "cancel":
            await call_hooks(hooks.after, ctx, "cancel", outcome[3], label=label)
        else:
            await call_hooks(hooks.on_error, ctx, exc, label=label)
            if child is not None:
                await call_hooks(hooks.on_retry, ctx, child, label=label)
            await call_hooks(hooks.after, ctx, "error", exc, label=label)
    if events is not None:
        if outcome[1] == "cancel":
            await events.afire("task_cancel", reason=outcome[3], **kw)
        else:
            if child is not None:  # an attempt that will be retried: not an error to alert on yet
                await events.afire("task_retry", exc=exc, child=child, **kw)
            else:
                await events.afire("task_error", exc=exc, traceback=outcome[3], **kw)
        await _stopping(events, kw, outcome[1], b"", outcome[3], child.uuid if child is not None else None)
    ex.on_done(outcome, followups)


async def _stopping(events: Any, kw: dict[str, Any], status: str, returning: bytes, traceback: str | None,
                    retry_child: str | None = None) -> None:
    """QTasks' ``task_stopping``: the task ended; ``model`` is its final record, built only for a handler."""
    if not events.active("task_stopping"):
        return
    env = kw["envelope"]
    model = task_from_envelope(env, status, returning=returning, traceback=traceback, retry_child=retry_child,
                               worker_id=kw["worker_id"], queue=env.queue)
    await events.afire("task_stopping", model=model, **kw)


async def _cleanup(exits: list[Exit], thread: list[Future[Any]], exc: BaseException | None, label: str) -> None:
    """Task-scope cleanup now, or when the thread still running the call (timeout, cancel) returns."""
    if thread and not thread[0].done():
        loop = asyncio.get_running_loop()

        def start() -> None:
            task = loop.create_task(run_exits(exits, exc, label))
            _deferred.add(task)  # a task nobody references may be collected before it ends
            task.add_done_callback(_deferred.discard)

        def later(_: Future[Any]) -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(start)

        thread[0].add_done_callback(later)
        return
    await run_exits(exits, exc, label)


async def _call(ex: Executor, d: Delivery, ctx: ExecContext, exits: list[Exit], thread: list[Future[Any]]) -> Any:
    h, env = d.handler, d.envelope
    timeout = env.timeout
    if h.executor == "process" and not (h.is_async or h.is_async_gen):
        call_env = env
        if ctx.args is not env.args or ctx.kwargs is not env.kwargs:  # a before_execute hook changed them
            call_env = msgspec.structs.replace(env, args=list(ctx.args), kwargs=dict(ctx.kwargs))
        return await _procs(ex, h).run(call_env, ex.worker_id, timeout)
    args, kwargs = await _arguments(ex, d, ctx, exits)
    if h.custom_executor is not None:
        ex.custom.add(h.custom_executor)
        loop = asyncio.get_running_loop()
        run = h.custom_executor.run(ctx, functools.partial(_invoke, ex, h, args, kwargs, loop))
        return await (asyncio.wait_for(run, timeout) if timeout else run)
    if h.is_async:
        coro = h.func(*args, **kwargs)
        return await (asyncio.wait_for(coro, timeout) if timeout else coro)
    if h.is_async_gen:
        agen = _drain_agen(h, args, kwargs)
        return await (asyncio.wait_for(agen, timeout) if timeout else agen)
    if h.inline:
        value, err = _call_sync(ex, h, args, kwargs, None)
    else:
        loop = asyncio.get_running_loop()
        fut = ex.pool.submit(_call_sync, ex, h, args, kwargs, loop)
        thread.append(fut)
        wrapped = asyncio.wrap_future(fut)
        value, err = await (asyncio.wait_for(wrapped, timeout) if timeout else wrapped)
    if err is not None:
        raise err
    return value


async def _arguments(ex: Executor, d: Delivery, ctx: ExecContext,
                     exits: list[Exit]) -> tuple[Any, dict[str, Any]]:
    h = d.handler
    echo = EchoTask(h, d.envelope, ex.worker_id) if h.echo else None
    if h.injected or h.models:
        values: dict[str, Any] = {}
        if h.injected:
            values, got = await ex.resolver.resolve(h.injected, task_label(h.name, d.envelope.uuid))
            exits.extend(got)
        return h.call_args(ctx.args, ctx.kwargs, values, echo, ex.validate)
    args, kwargs = ctx.args, ctx.kwargs
    if ex.validate and h._validator is not None:
        args, kwargs = h.bind(args, kwargs)
    return ((echo, *args) if h.echo else args), kwargs


def _procs(ex: Executor, h: TaskFunc) -> Any:
    if ex.procs is None:
        import os

        from qtasks_fast.worker.procexec import ProcessPool, import_spec

        ex.procs = ProcessPool(import_spec(h), max(1, os.cpu_count() or 1))
    return ex.procs


def _call_sync(ex: Executor, h: TaskFunc, args: Any, kwargs: dict[str, Any],
               loop: asyncio.AbstractEventLoop | None) -> tuple[Any, BaseException | None]:
    """The call of a sync task with prepared arguments (in a pool thread, or inline)."""
    try:
        if h.is_gen:
            return [ex._handle_yield_sync(h.generate_handler, v, loop) for v in h.func(*args, **kwargs)], None
        return h.func(*args, **kwargs), None
    except BaseException as exc:  # noqa: BLE001
        return None, exc


def _invoke(ex: Executor, h: TaskFunc, args: Any, kwargs: dict[str, Any], loop: asyncio.AbstractEventLoop) -> Any:
    """The ``call`` a custom executor gets: the value of a sync task (a generator drained through
    ``generate_handler``), an awaitable of it for an async one."""
    if h.is_async:
        return h.func(*args, **kwargs)
    if h.is_async_gen:
        return _drain_agen(h, args, kwargs)
    if h.is_gen:
        on_loop = asyncio._get_running_loop() is not None  # then an async generate_handler cannot be awaited here
        return [ex._handle_yield_sync(h.generate_handler, v, None if on_loop else loop)
                for v in h.func(*args, **kwargs)]
    return h.func(*args, **kwargs)


async def _drain_agen(h: TaskFunc, args: Any, kwargs: dict[str, Any]) -> list[Any]:
    out = []
    async for value in h.func(*args, **kwargs):
        res = h.generate_handler(value) if h.generate_handler else value
        out.append(await res if inspect.isawaitable(res) else res)
    return out
