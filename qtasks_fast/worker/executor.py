"""Runs one delivery and turns what happened into an outcome tuple for the settler.

Async tasks run as asyncio tasks on the worker's loop; sync tasks run in a
thread pool (``executor="thread"``, the default) or inline on the loop
(``executor="inline"``: no thread hop, for CPU-bound work with one worker
process per core). ``max_time`` cancels an async task; a sync task in a thread
cannot be killed, so its record turns ``error`` at the deadline and its slot is
freed, while the thread runs on in the background until the function returns.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import traceback
import uuid as _uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import msgspec

from qtasks_fast import _corelib as core
from qtasks_fast.exceptions import TaskArgumentsError, TaskCancel
from qtasks_fast.log import get_logger, task_label
from qtasks_fast.worker.context import EchoTask

if TYPE_CHECKING:
    from qtasks_fast.abc.broker import Delivery, Outcome
    from qtasks_fast.schemas import Envelope

log = get_logger("worker")
NONE = core.encode(None)


class Executor:
    """Calls task functions; reports ``(outcome, retry_envelope_or_None)`` through ``on_done``."""

    def __init__(self, worker_id: str, threads: int, on_done: Callable[[Outcome, Envelope | None], None],
                 validate: bool = True) -> None:
        self.worker_id = worker_id
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix=f"qtasks-{worker_id}")
        self.on_done = on_done
        self.validate = validate
        self.running: dict[Delivery, asyncio.Task[None]] = {}

    def submit(self, d: Delivery) -> None:
        h = d.handler
        d.started = time.monotonic()
        if h.inline and not (h.is_async or h.is_async_gen):
            self._finish(d, *self._call_sync(d))
            return
        # the task starts on the next loop turn, after this assignment; _run removes it when done
        self.running[d] = asyncio.get_running_loop().create_task(self._run(d))

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
            raise  # drain: the worker hands the delivery back
        except BaseException as exc:  # noqa: BLE001
            self._finish(d, None, exc)
        finally:
            self.running.pop(d, None)

    # --------------------------------------------------------------- outcomes
    def _finish(self, d: Delivery, value: Any, exc: BaseException | None) -> None:
        env = d.envelope
        if exc is None:
            try:
                self.on_done((d, "success", core.encode(value), "", ""), None)
                if log.isEnabledFor(10):
                    log.debug("task %s success in %.1f ms", task_label(env.task_name, env.uuid),
                              (time.monotonic() - d.started) * 1000)
                return
            except (TypeError, msgspec.EncodeError) as enc:
                exc = TypeError(f"result of type {type(value).__name__} is not serializable to msgpack: {enc}")
        label = task_label(env.task_name, env.uuid)
        if isinstance(exc, TaskCancel):
            log.info("task %s cancelled: %s", label, exc.reason)
            self.on_done((d, "cancel", NONE, exc.reason or "cancelled", ""), None)
            return
        if isinstance(exc, TaskArgumentsError):
            tb = str(exc)
        else:
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        child = self._retry(d, exc)
        log.warning("task %s error%s: %s: %s", label, f", retrying as {child.uuid}" if child else "",
                    type(exc).__name__, exc)
        self.on_done((d, "error", NONE, tb, child.uuid if child else ""), child)

    @staticmethod
    def _retry(d: Delivery, exc: BaseException) -> Envelope | None:
        env, h = d.envelope, d.handler
        if env.retry <= 0 or isinstance(exc, TaskArgumentsError):
            return None
        if h.retry_on_exc and not isinstance(exc, h.retry_on_exc):
            return None
        return msgspec.structs.replace(env, uuid=str(_uuid.uuid4()), retry=env.retry - 1,
                                       retry_parent_uuid=env.uuid, created_at=time.time())

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
