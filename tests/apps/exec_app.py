"""Test app of tests/test_exec_*.py: middlewares, events, retries, time limits, process tasks, injection.

Every task and hook leaves traces in Redis under ``<app name>:`` keys, which is how
the tests see from outside what ran in the worker processes, in what order, and where.
"""

import asyncio
import contextlib
import os
import time
from typing import Annotated, Any

from pydantic import BaseModel
from testkit import RedisTraces

from qtasks_fast import QueueTasks
from qtasks_fast.config import GlobalConfig
from qtasks_fast.depends import AsyncState, Depends, State
from qtasks_fast.middleware import Middleware
from qtasks_fast.worker.executor import TaskExecutor

NAME = os.environ.get("TEST_APP_NAME", "exec")
URL = os.environ.get("QTASKS_BROKER_URL", "redis://127.0.0.1:6379/0")
app = QueueTasks(NAME, broker_url=URL, config=GlobalConfig())
traces = RedisTraces(NAME, URL)
key, rc, sc = traces.key, traces.rc, traces.sc


# ------------------------------------------------------------------------------ middlewares
class Trace(Middleware):
    """Appends ``<label>.<hook>`` to the task's trace list; async hooks (and a sync one) on purpose."""

    options = frozenset({"trace_note"})

    def __init__(self, label: str = "T") -> None:
        self.label = label

    def before_execute(self, ctx: Any) -> None:  # sync hook, on the loop
        note = ctx.task.options.get("trace_note", "")
        sc().rpush(key(f"trace:{ctx.uuid}"), f"{self.label}.before{note}")

    async def after_execute(self, ctx: Any, status: str, result: Any) -> None:
        await rc().rpush(key(f"trace:{ctx.uuid}"), f"{self.label}.after:{status}")

    async def on_error(self, ctx: Any, exc: BaseException) -> None:
        await rc().rpush(key(f"trace:{ctx.uuid}"), f"{self.label}.on_error:{type(exc).__name__}")

    async def on_retry(self, ctx: Any, child: Any) -> None:
        await rc().rpush(key(f"trace:{ctx.uuid}"), f"{self.label}.on_retry:{child.uuid}")


class Outer(Trace):
    def __init__(self) -> None:
        super().__init__("A")


class Inner(Trace):
    def __init__(self) -> None:
        super().__init__("Z")


class Shout(Middleware):
    """Changes the call: a ``before_execute`` hook may replace the arguments."""

    def before_execute(self, ctx: Any) -> None:
        ctx.args = [str(a).upper() for a in ctx.args]


app.add_middleware(Outer, position="before")
app.add_middleware(Inner, position="after")


@app.task(echo=True, middlewares_before=[Trace("B")], middlewares_after=[Trace("C")], trace_note="!")
async def traced(self: Any, x: int) -> int:
    await rc().rpush(key(f"trace:{self.ctx.task_uuid}"), "call")
    return x * 10


@app.task(middlewares_before=[Trace("B")], retry=1, retry_backoff=0.2, retry_jitter=False)
def traced_fail(x: int) -> int:
    raise LookupError(f"no {x}")


@app.task(echo=True, middlewares_before=[Trace("B")])
def traced_cancel(self: Any, reason: str) -> None:
    self.ctx.cancel(reason)


@app.task(middlewares_before=[Shout], executor="inline")
def shout(word: str) -> str:
    return word


# --------------------------------------------------------------------------------- events
@app.events.on.task_success
def on_success(task_name: str, uuid: str, result: Any) -> None:
    sc().rpush(key(f"events:{uuid}"), f"success:{task_name}:{result}")


@app.events.on.task_error()
async def on_error(uuid: str, exc: BaseException, traceback: str) -> None:
    await rc().rpush(key(f"events:{uuid}"), f"error:{type(exc).__name__}:{'Traceback' in traceback}")


@app.events.on.task_retry
async def on_retry(uuid: str, child: Any) -> None:
    await rc().rpush(key(f"events:{uuid}"), f"retry:{child.uuid}:{child.eta > 0}")


@app.events.on.task_cancel
def on_cancel(uuid: str, reason: str) -> None:
    sc().rpush(key(f"events:{uuid}"), f"cancel:{reason}")


@app.events.on.task_running
async def on_running(**kw: Any) -> None:
    await rc().rpush(key(f"events:{kw['uuid']}"), f"running:{kw['worker_id'] != ''}")


@app.events.on.starting
def on_starting(worker: Any) -> None:
    sc().rpush(key("lifecycle"), f"starting:{os.getpid()}")


@app.events.on.stopping
async def on_stopping(worker: Any) -> None:
    await rc().rpush(key("lifecycle"), f"stopping:{os.getpid()}")


# -------------------------------------------------------------------------------- retries
class Flaky(ConnectionError):
    pass


@app.task(retry=3, retry_on_exc=[ConnectionError], retry_backoff=0.4, retry_jitter=False)
def flaky(tag: str, fails: int) -> str:
    """Fails (with a ConnectionError subclass) ``fails`` times, then succeeds; logs when each attempt ran."""
    n = sc().incr(key(f"flaky:{tag}"))
    sc().rpush(key(f"flaky:{tag}:at"), time.time())
    if n <= fails:
        raise Flaky(f"attempt {n}")
    return f"{tag} after {n}"


@app.task(retry=3, retry_on_exc=[ConnectionError])
def wrong_error(tag: str) -> None:
    sc().incr(key(f"wrong:{tag}"))
    raise ValueError("not retried: ValueError is not a ConnectionError")


# ----------------------------------------------------------------------------- time limits
@app.task(max_time=0.5)
async def async_slow(tag: str, seconds: float) -> str:
    await asyncio.sleep(seconds)
    await rc().set(key(f"{tag}:after"), 1)
    return tag


@app.task(max_time=0.5)
def thread_slow(tag: str, seconds: float) -> str:
    time.sleep(seconds)
    sc().set(key(f"{tag}:after"), time.time())
    return tag


@app.task(executor="process", max_time=0.8)
def proc_slow(tag: str, seconds: float) -> str:
    sc().set(key(f"{tag}:pid"), os.getpid())
    time.sleep(seconds)
    sc().set(key(f"{tag}:after"), 1)
    return tag


@app.task
def thread_hang(tag: str, seconds: float) -> str:
    sc().set(key(f"{tag}:started"), 1)
    time.sleep(seconds)
    sc().set(key(f"{tag}:after"), time.time())
    return tag


@app.task(executor="process")
def proc_hang(tag: str, seconds: float) -> str:
    sc().set(key(f"{tag}:pid"), os.getpid())
    time.sleep(seconds)
    sc().set(key(f"{tag}:after"), 1)
    return tag


@app.task(executor="process", retry=1, retry_on_exc=[ConnectionError])
def proc_work(a: int, b: int, fail: bool = False) -> dict[str, int]:
    print("stdout noise that must not reach the frames")  # noqa: T201
    if fail:
        raise Flaky("in the child")
    return {"sum": a + b, "pid": os.getpid(), "worker_pid": os.getppid()}


@app.task(executor="process", echo=True)
def proc_echo(self: Any, n: int):
    """A generator with an echo ``self`` in a child process."""
    for i in range(n):
        yield f"{self.task_name}:{i}"


# -------------------------------------------------------------------------------- injection
def task_dep():
    sc().rpush(key("dep"), "open")
    try:
        yield {"conn": os.getpid()}
    except Exception as exc:
        sc().rpush(key("dep"), f"rollback:{type(exc).__name__}")
        raise
    else:
        sc().rpush(key("dep"), "commit")


@contextlib.asynccontextmanager
async def async_cm_dep():
    await rc().rpush(key("dep"), "acm-open")
    try:
        yield "acm"
    finally:
        await rc().rpush(key("dep"), "acm-close")


async def plain_async_dep() -> int:
    return 7


async def worker_dep():
    """One per worker process: counts how often it was created, and marks its cleanup at worker stop."""
    n = await rc().incr(key(f"worker_dep:{os.getpid()}"))
    yield {"pid": os.getpid(), "n": n}
    await rc().rpush(key("worker_dep_closed"), os.getpid())


class Counters(State):
    pass


class Flags(AsyncState):
    pass


@app.task
async def injected(x: int, conn: Annotated[dict, Depends(task_dep)], cm: Annotated[str, Depends(async_cm_dep)],
                   seven: int = Depends(plain_async_dep), shared: dict = Depends(worker_dep, scope="worker"),
                   counters: Counters = None, flags: Flags = None, fail: bool = False) -> dict[str, Any]:  # type: ignore[assignment]
    counters.set("calls", counters.get("calls", 0) + 1)
    await flags.set("seen", True)
    if fail:
        raise KeyError("boom")
    return {"x": x, "conn": conn["conn"], "cm": cm, "seven": seven, "shared": shared, "calls": counters.get("calls"),
            "seen": await flags.get("seen")}


@app.task
def injected_sync(shared: Annotated[dict, Depends(worker_dep, scope="worker")], y: int) -> dict[str, Any]:
    return {"y": y, "shared": shared}


@app.task(max_time=0.5)
def dep_thread_slow(seconds: float, conn: Annotated[dict, Depends(task_dep)]) -> None:
    time.sleep(seconds)
    sc().rpush(key("dep"), "thread-end")


class Order(BaseModel):
    id: int
    items: list[str]


@app.task
def ship(order: Order, note: Order | None = None) -> str:
    return f"{type(order).__name__}:{order.id}:{','.join(order.items)}:{note.id if note else '-'}"


# ----------------------------------------------------------------------------------- chains
@app.task
def add(a: int, b: int) -> int:
    return a + b


@app.task(middlewares_before=[Trace("B")])
async def double(x: int) -> int:
    return 2 * x


# ------------------------------------------------------------------------------ custom executor
class Tagging(TaskExecutor):
    """Runs sync calls in a pool of its own, awaits async ones, and tags every result."""

    def __init__(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.pool = ThreadPoolExecutor(2, thread_name_prefix="tagging")

    async def run(self, ctx: Any, call: Any) -> Any:
        if ctx.task.is_async:
            value = await call()
        else:
            value = await asyncio.get_running_loop().run_in_executor(self.pool, call)
        return f"{ctx.task_name}:{value}"


@app.task(executor=Tagging)
def custom_sync(x: int, fail: bool = False) -> str:
    import threading

    if fail:
        raise OverflowError(x)
    return f"{x + 1}@{threading.current_thread().name.split('_')[0]}"


@app.task(executor=Tagging(), max_time=0.5)
async def custom_async(x: int, seconds: float = 0.0) -> int:
    await asyncio.sleep(seconds)
    return x * 3
