"""Runs one delivery and turns what happened into an outcome tuple for the settler.

Two paths. The plain path is for a task that needs nothing but its call (no
middleware worker hook, no event handler, no ``Depends``/``State``/pydantic
parameter, not ``executor="process"``): after one flag check (``TaskFunc.plain``)
it runs exactly as if none of those features existed. Every other task takes the
hooked path (:meth:`Executor._run_hooked`).

How sync tasks run: in a thread of the pool (``executor="thread"``, the default),
inline on the loop (``executor="inline"``: no thread hop, for CPU-bound work with
one worker process per core), or in a child process (``executor="process"``, see
:mod:`qtasks_fast.worker.procexec`). Async tasks run on the loop, as asyncio tasks
of their own only once they suspend (:mod:`qtasks_fast.worker.eager`).

Time limits (``max_time``, carried by the envelope as ``timeout``) apply to the call:
- an async task is cancelled at the deadline; its record turns ``error`` (``TimeoutError``);
- a sync task in a thread cannot be stopped: at the deadline its record turns ``error`` and its
  slot is freed, while the thread runs on in the background until the function returns (its
  result is discarded; its task-scope dependencies are cleaned up only then). Pool threads are
  ``config.threads``: calls that keep overrunning eventually occupy them all;
- ``executor="process"`` is a hard limit: the child is killed and replaced;
- an ``inline`` task blocks the loop, so nothing can interrupt it: it has no time limit.

Cancel (:meth:`Executor.cancel`) follows the same lines: an async task is cancelled,
a process task's child is killed; a sync task in a thread gets its record set to
``cancel`` at once, and the thread's eventual result is discarded.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import msgspec

from qtasks_fast import _corelib as core
from qtasks_fast.contrib.pydantic import encode_with_models
from qtasks_fast.depends import Resolver
from qtasks_fast.exceptions import TaskArgumentsError, TaskCancel
from qtasks_fast.log import current_task, get_logger, task_label
from qtasks_fast.middlewares.hooked import run_hooked
from qtasks_fast.middlewares.retries import retry_child
from qtasks_fast.schemas import META_CHAIN
from qtasks_fast.worker.context import EchoTask
from qtasks_fast.worker.eager import EagerRunners, run_core

if TYPE_CHECKING:
    from qtasks_fast.abc.broker import Delivery, Outcome
    from qtasks_fast.schemas import Envelope
    from qtasks_fast.worker.procexec import ProcessPool

log = get_logger("worker")
NONE = core.encode(None)


def describe(exc: BaseException) -> str:
    """``"TypeName: message"`` of an exception, even one whose ``str()`` raises."""
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001
        text = "<str() of the exception failed>"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


#: the ``followups`` of a task that enqueues nothing after itself: shared, never to be mutated (the compiled
#: runner's own, ``_run.pyx``, which hands it out for the successes it finishes itself)
NO_FOLLOWUPS: list[Envelope] = run_core.NO_FOLLOWUPS


class ContextThreadPool(ThreadPoolExecutor):
    """A thread pool whose calls run in a copy of the submitter's ``contextvars`` context, as
    ``asyncio.to_thread`` does: a sync task in a thread sees what its middlewares set in contextvars
    (``LogCapture`` finds its task's buffer that way). ~35 ns a call."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        return super().submit(contextvars.copy_context().run, fn, *args, **kwargs)


class TaskExecutor:
    """Base of a custom executor: ``@app.task(executor=MyExecutor())`` (or the class, built without arguments).

    The worker prepares the call (arguments validated, models built, ``Depends``/``State`` filled,
    echo ``self`` first) and awaits ``run(ctx, call)``. ``call()`` makes the call: for a sync task it
    returns the value (a generator is drained through ``generate_handler``), for an async task or an
    async generator task an awaitable of it. Where and how ``call`` runs is the executor's choice: a
    thread or process pool of its own, under a lock, on another loop. What ``run`` returns is the task's result; what it
    raises, the task's error (``TaskCancel`` cancels). ``max_time`` and ``app.cancel`` cancel the
    ``run`` coroutine (``asyncio.wait_for``/``Task.cancel``): stop what you started there.
    ``ctx`` is the :class:`~qtasks_fast.worker.context.ExecContext` middlewares get.
    """

    async def run(self, ctx: Any, call: Callable[[], Any]) -> Any:
        raise NotImplementedError

    async def aclose(self) -> None:
        """The worker stops (only for executors that ran a task in it)."""


#: QTasks' ``qtasks.executors.base.BaseTaskExecutor`` (``qtasks_fast.executors.base``): the base of a custom
#: executor is ours here. QTasks' example middleware imports it only to annotate ``task_executor`` (what it gets
#: is a ``qtasks_fast.middlewares.task.TaskExecutorView``); an executor written to QTasks' contract
#: (``execute``/``run_task``) is refused at ``@app.task`` (qtasks_fast.task), saying to implement ``run``
BaseTaskExecutor = TaskExecutor


class Executor:
    """Calls task functions; reports ``(outcome, followups)`` through ``on_done``.

    ``followups`` are envelopes to enqueue in the same settle as the ack: a retry child,
    the next step of a chain.
    """

    def __init__(self, worker_id: str, threads: int, on_done: Callable[[Outcome, list[Envelope]], None],
                 validate: bool = True) -> None:
        self.worker_id = worker_id
        #: the Worker running this executor (set by it): the ``worker`` of task events, as in QTasks
        self.worker: Any = None
        self.pool = ContextThreadPool(threads, thread_name_prefix=f"qtasks-{worker_id}")
        self.on_done = on_done
        self.validate = validate
        self.running: dict[Delivery, asyncio.Task[None]] = {}
        #: reasons of :meth:`cancel` calls, read where the cancelled task sees its CancelledError
        self.cancelled: dict[Delivery, str] = {}
        #: Depends/State of this worker process
        self.resolver = Resolver()
        #: the retry decision ``(envelope, task, exc) -> child or None``; a RetryPlugin puts its own here
        self.retry_child: Callable[[Envelope, Any, BaseException], Envelope | None] = retry_child
        self.procs: ProcessPool | None = None
        #: custom executors (``TaskExecutor``) that ran a task here: closed with the worker
        self.custom: set[Any] = set()
        self.eager = EagerRunners(self)
        #: outcomes other than success so far (for the worker's summary line); successes are counted per
        #: settled batch by the worker, never here
        self.n_failed = self.n_retried = self.n_cancelled = 0

    #: start ``d``: a plain async task is queued for the eager runners, anything else goes to :meth:`start_other`
    #: (compiled: ``_run.submit``, called once per task)
    submit = run_core.submit

    def start_other(self, d: Delivery) -> None:
        """Start what is not a plain async task (or not yet known to be one: its first call decides)."""
        h = d.handler
        if not h.plain:  # the one check of the plain path; the first call of a task decides it
            if h.needs_hooks():
                self.running[d] = asyncio.get_running_loop().create_task(run_hooked(self, d))
                return
            h.plain = True
        if h.inline and not (h.is_async or h.is_async_gen):
            token = current_task.set(d.envelope)  # on the loop, in the caller's context: undone after
            try:
                self._finish(d, *self._call_sync(d))
            finally:
                current_task.reset(token)
            return
        if h.is_async and not d.envelope.timeout:  # no Task of its own unless it suspends (see eager.py)
            self.eager.submit(d)
            return
        # the task starts on the next loop turn, after this assignment; _run removes it when done
        self.running[d] = asyncio.get_running_loop().create_task(self._run(d))

    def cancel(self, d: Delivery, reason: str) -> bool:
        """Stop the running task of ``d`` so that its outcome is ``("cancel", reason)``.

        False when ``d`` is not running here (an ``inline`` task blocks the loop while it runs, so a
        request never finds it running). A sync task in a thread: see the module doc.
        """
        if self.eager.take(d):  # queued to start, not started yet
            self._finish(d, None, TaskCancel(reason or "cancelled"))
            return True
        task = self.running.get(d)
        if task is None or task.done():
            return False
        self.cancelled[d] = reason or "cancelled"
        task.add_done_callback(lambda _: self.cancelled.pop(d, None))
        task.cancel()
        return True

    # ------------------------------------------------------------------ calls
    def _args(self, d: Delivery) -> tuple[Sequence[Any], dict[str, Any]]:
        env, h = d.envelope, d.handler
        args: Sequence[Any] = env.args
        kwargs = env.kwargs
        if self.validate and h._validator is not None:
            args, kwargs = h.bind(args, kwargs)
        if h.echo:
            args = (EchoTask(h, env, self.worker_id), *args)
        return args, kwargs

    def _call_sync(self, d: Delivery,
                   loop: asyncio.AbstractEventLoop | None = None) -> tuple[Any, BaseException | None]:
        try:
            args, kwargs = self._args(d)
            h = d.handler
            if h.is_gen:
                out = []
                for value in h.func(*args, **kwargs):
                    out.append(self._handle_yield_sync(h.generate_handler, value, loop))
                return out, None
            return h.func(*args, **kwargs), None
        except BaseException as exc:  # noqa: BLE001 - a task's failure is data, not a worker crash
            return None, exc

    @staticmethod
    def _handle_yield_sync(handler: Callable[[Any], Any] | None, value: Any,
                           loop: asyncio.AbstractEventLoop | None) -> Any:
        if handler is None:
            return value
        res = handler(value)
        if inspect.isawaitable(res):
            if loop is None:
                raise RuntimeError("an async generate_handler needs executor='thread' for a sync generator task")
            return asyncio.run_coroutine_threadsafe(res, loop).result()  # type: ignore[arg-type]
        return res

    async def _call_async(self, d: Delivery) -> Any:
        """Run an async generator task to the end; each value goes through ``generate_handler``."""
        args, kwargs = self._args(d)
        h = d.handler
        out = []
        async for value in h.func(*args, **kwargs):
            res = h.generate_handler(value) if h.generate_handler else value
            out.append(await res if inspect.isawaitable(res) else res)
        return out

    async def _run(self, d: Delivery) -> None:
        h, timeout = d.handler, d.envelope.timeout
        current_task.set(d.envelope)  # this Task's own context; a pool thread gets a copy of it
        try:
            if h.is_async:  # the common case: one coroutine frame, the task's own
                args, kwargs = self._args(d)
                coro = h.func(*args, **kwargs)
                self._finish(d, await (asyncio.wait_for(coro, timeout) if timeout else coro), None)
            elif h.is_async_gen:
                gen = self._call_async(d)
                self._finish(d, await (asyncio.wait_for(gen, timeout) if timeout else gen), None)
            else:
                loop = asyncio.get_running_loop()
                fut = loop.run_in_executor(self.pool, self._call_sync, d, loop)
                value, exc = await (asyncio.wait_for(fut, timeout) if timeout else fut)
                self._finish(d, value, exc)
        except asyncio.TimeoutError:
            self._finish(d, None, TimeoutError(f"task exceeded max_time={timeout}s"))
        except asyncio.CancelledError:
            if not self.end_cancelled(d):
                raise  # drain: the worker hands the delivery back
        except BaseException as exc:  # noqa: BLE001
            self._finish(d, None, exc)
        finally:
            self.running.pop(d, None)

    def end_cancelled(self, d: Delivery) -> bool:
        """A CancelledError reached the task of ``d``: when :meth:`cancel` asked for it, record the
        outcome ``cancel`` and return True; otherwise (the worker's drain) return False."""
        reason = self.cancelled.pop(d, None)
        if reason is None:
            return False
        self._finish(d, None, TaskCancel(reason))
        return True

    # --------------------------------------------------------------- outcomes
    def _finish(self, d: Delivery, value: Any, exc: BaseException | None) -> None:
        if exc is None:
            env = d.envelope
            try:
                try:
                    encoded = core.encode(value)
                except (TypeError, msgspec.EncodeError, OverflowError):
                    encoded = encode_with_models(value)
                followups = self.followups(env, value, d.handler.app, d) if env.meta else NO_FOLLOWUPS
            except (TypeError, msgspec.EncodeError, OverflowError) as enc:
                exc = TypeError(f"result of type {type(value).__name__} is not serializable to msgpack: {enc}")
            except Exception as err:  # noqa: BLE001 - the next chain step could not be built
                exc = err
            else:
                self.on_done((d, "success", encoded, "", ""), followups)
                if log.isEnabledFor(10):
                    self.log_success(d)
                return
        try:
            outcome, followups, _ = self.failure(d, exc)
        except Exception as err:  # noqa: BLE001 - the failure path itself broke: the task still ends
            outcome, followups = self.broken(d, exc, err), NO_FOLLOWUPS
        self.on_done(outcome, followups)

    @staticmethod
    def log_success(d: Delivery) -> None:
        """The debug line of a success (written only when debug is on: callers check)."""
        env = d.envelope
        log.debug("task %s success in %.1f ms", task_label(env.task_name, env.uuid),
                  (time.monotonic() - d.started) * 1000)

    def broken(self, d: Delivery, exc: BaseException | None, err: BaseException) -> Outcome:
        """The last-resort outcome when turning a task's end into an outcome raised ``err``: ``error``
        with both texts, no retry, so the delivery is settled and its slot freed (never left in flight)."""
        env = d.envelope
        label = task_label(env.task_name, env.uuid) if env is not None else repr(d)
        self.n_failed += 1
        log.error("task %s: handling its outcome raised %s; it ends as error", label, describe(err))
        text = describe(err) if exc is None else f"{describe(exc)}\n(not retried: handling the failure raised " \
                                                   f"{describe(err)})"
        return d, "error", NONE, text, ""

    def crashed(self, d: Delivery, exc: BaseException) -> None:
        """Starting ``d`` raised ``exc`` (in :meth:`submit`, not in the task): end it as that error, once."""
        self.eager.take(d)
        task = self.running.pop(d, None)
        if task is not None:  # scheduled before the error: it must not report a second outcome
            task.cancel()
        self._finish(d, None, exc)

    @staticmethod
    def followups(env: Envelope, value: Any, app: Any = None, d: Delivery | None = None) -> list[Envelope]:
        """What a successful ``env`` (delivered as ``d``) enqueues after itself: the next step of its chain."""
        if META_CHAIN not in env.meta:
            return NO_FOLLOWUPS
        from qtasks_fast.worker.followups import next_step

        step = next_step(env, value, app, queue=d.queue if d is not None else None,
                         prio=d.prio if d is not None else None)
        return [step] if step is not None else NO_FOLLOWUPS

    def failure(self, d: Delivery, exc: BaseException) -> tuple[Outcome, list[Envelope], Envelope | None]:
        """The outcome of a call that raised ``exc`` (``TaskCancel``: a cancel), with its retry child if any."""
        env = d.envelope
        label = task_label(env.task_name, env.uuid)
        if isinstance(exc, TaskCancel):
            self.n_cancelled += 1
            log.info("task %s cancelled: %s", label, exc.reason)
            return (d, "cancel", NONE, exc.reason or "cancelled", ""), NO_FOLLOWUPS, None
        tb = getattr(exc, "traceback", None)  # a RemoteError carries its child's traceback
        if not isinstance(tb, str):
            tb = str(exc) if isinstance(exc, TaskArgumentsError) else \
                "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        if log.isEnabledFor(10):
            log.debug("task %s raised:\n%s", label, tb.rstrip())
        try:
            child = self.retry_child(env, d.handler, exc)
        except Exception as err:  # noqa: BLE001 - e.g. a malformed retry meta: the task ends, not retried
            self.n_failed += 1
            log.warning("task %s error, not retried: %s", label, describe(err))
            return (d, "error", NONE, f"{tb}\n(not retried: {describe(err)})", ""), NO_FOLLOWUPS, None
        if child is None:
            self.n_failed += 1
            log.warning("task %s error: %s", label, describe(exc))
            return (d, "error", NONE, tb, ""), NO_FOLLOWUPS, None
        # the retry runs where this delivery ran: the queue it was fetched from (served, unlike whatever
        # an envelope's own queue field may name) at the level it was fetched at (within the served ones)
        child.queue = d.queue
        if isinstance(d.prio, int):
            child.priority = d.prio
        wait = f" in {child.eta - time.time():.1f}s" if child.eta else ""
        self.n_retried += 1
        log.warning("task %s error, retrying as %s%s: %s", label, child.uuid, wait, describe(exc))
        return (d, "error", NONE, tb, child.uuid), [child], child

    # -------------------------------------------------------------- lifecycle
    async def aclose(self) -> None:
        """Worker stop: close custom executors, clean up worker-scoped dependencies, stop child processes
        and the thread pool."""
        for custom in list(self.custom):
            close = getattr(custom, "aclose", None)
            try:
                if close is not None:
                    await close()
            except Exception:  # noqa: BLE001 - the others must still close
                log.exception("closing executor %r failed", custom)
        await self.resolver.aclose()
        if self.procs is not None:
            await self.procs.aclose()
        self.shutdown()

    def shutdown(self) -> None:
        self.eager.close()
        if self.procs is not None:
            self.procs.close()
        self.pool.shutdown(wait=False, cancel_futures=True)
