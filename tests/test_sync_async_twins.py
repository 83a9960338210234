"""One implementation per operation (issue 12, "collapse the sync/async twins").

Where an operation has an async and a blocking entry point (``x`` and ``x_sync``), one of the two is a thin
adapter (at most three statements) over a shared implementation, usually a generator of steps driven by
``qtasks_fast.steps.run``/``run_sync``. The behavioural cases run through both entry points.
"""

from __future__ import annotations

import ast
import time
import uuid as uuid_mod
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT

from qtasks_fast.abc import Broker, Storage
from qtasks_fast.backends.memory.broker import InMemoryBroker
from qtasks_fast.backends.memory.state import InMemoryState
from qtasks_fast.backends.memory.storage import InMemoryStorage
from qtasks_fast.backends.sqlite.broker import SqliteBroker
from qtasks_fast.backends.sqlite.storage import SqliteStorage
from qtasks_fast.schemas import Envelope
from qtasks_fast.steps import Either, Now, Sleep, run, run_sync

#: (class, operation) pairs whose two forms stay separate, and why
KEPT_APART = {
    # the transport itself: the blocking and the asyncio socket are the one place sync and async I/O differ
    ("RedisConnection", "execute"),
    # releases different resources (the blocking client's pool vs the running loop's client), not one operation
    ("*", "close"),
    # the two drivers of every steps generator (qtasks_fast.steps), and of the plugins' (they also throw a
    # plugin's exception into its generator): the operations themselves are written once
    ("<module>", "run"),
    ("Plugins", "fire"),
    # not one operation: _call_sync calls a sync task function, from inside the async _call of any task
    ("<module>", "_call"),
}


def _statements(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Statements in ``fn``, nested ones included (a docstring is none)."""
    return len([s for s in ast.walk(fn) if isinstance(s, ast.stmt) and s is not fn
                and not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))])


def test_every_sync_async_pair_has_a_thin_side() -> None:
    fat = []
    for path in sorted((ROOT / "qtasks_fast").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for scope in [tree, *[n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]]:
            name = getattr(scope, "name", "<module>")
            fns = {f.name: f for f in scope.body if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))}
            for op, sync in fns.items():
                if not op.endswith("_sync") or op[:-5] not in fns:
                    continue
                if (name, op[:-5]) in KEPT_APART or ("*", op[:-5]) in KEPT_APART:
                    continue
                if min(_statements(sync), _statements(fns[op[:-5]])) > 3:
                    fat.append(f"{Path(path).relative_to(ROOT)}: {name}.{op[:-5]} / {op}")
    assert not fat, "write the operation once (qtasks_fast.steps) and adapt it:\n" + "\n".join(fat)


def test_steps_run_the_same_on_both_drivers() -> None:
    calls: list[str] = []

    async def aio() -> str:
        calls.append("aio")
        return "a"

    def steps() -> Any:
        x = yield Now(lambda: 1)
        y = yield Either(aio, lambda: calls.append("blocking") or "b")
        yield Sleep(0.01)
        return x, y

    assert run_sync(steps()) == (1, "b")
    import asyncio

    assert asyncio.run(run(steps())) == (1, "a")
    assert calls == ["blocking", "aio"]


@pytest.fixture(params=["memory", "sqlite"])
async def foreign(request: pytest.FixtureRequest, tmp_path: Path, app_name: str) -> AsyncIterator[tuple[Broker,
                                                                                                        Storage]]:
    """A local broker paired with a storage it cannot write itself (so enqueue takes the multi-step path)."""
    broker: Broker
    storage: Storage
    if request.param == "memory":
        broker = InMemoryBroker(state=InMemoryState(), app_name=app_name)
        storage = InMemoryStorage(state=InMemoryState(), app_name=app_name)
    else:
        broker = SqliteBroker(str(tmp_path / "broker.db"), app_name=app_name)
        storage = SqliteStorage(str(tmp_path / "records.db"), app_name=app_name)
    yield broker, storage
    await broker.close()
    await storage.close()


def _env(key: str) -> Envelope:
    return Envelope(uuid=str(uuid_mod.uuid4()), task_name="add", args=[1], queue="default", created_at=time.time(),
                    meta={"uq": [key]})


@pytest.mark.parametrize("mode", ["async", "sync"])
async def test_local_enqueue_with_a_foreign_storage(foreign: tuple[Broker, Storage], mode: str) -> None:
    broker, storage = foreign
    key = f"k-{uuid_mod.uuid4()}"
    holder, dup = _env(key), _env(key)
    if mode == "async":
        skipped = await broker.enqueue([holder, dup], storage)
    else:
        skipped = broker.enqueue_sync([holder, dup], storage)
    assert skipped == {dup.uuid: holder.uuid}
    assert (await storage.get(holder.uuid, ["default"])).status == "new"  # type: ignore[union-attr]
    assert await storage.get(dup.uuid, ["default"]) is None  # a skipped envelope gets no record
    assert (await broker.queue_stats("default")).waiting == 1


@pytest.mark.parametrize("mode", ["async", "sync"])
async def test_memory_wait_wakes_on_a_save_from_another_thread(mode: str, app_name: str) -> None:
    """Both entry points park on the record's next change (no polling): a save from another thread ends the
    wait at once; a wait that times out returns the current record; an unknown uuid returns None at once."""
    import asyncio
    import threading

    import msgspec

    from qtasks_fast import _corelib as core

    storage = InMemoryStorage(state=InMemoryState(), app_name=app_name)
    env = _env("k")
    await storage.create([env])

    def wait(timeout: float) -> Any:
        if mode == "async":
            return storage.wait(env.uuid, ["default"], timeout)
        return asyncio.to_thread(storage.wait_sync, env.uuid, ["default"], timeout)

    started = time.monotonic()
    assert (await wait(0.2)).status == "new"
    assert time.monotonic() - started >= 0.15
    assert await (storage.wait(str(uuid_mod.uuid4()), ["default"], 5) if mode == "async" else
                  asyncio.to_thread(storage.wait_sync, str(uuid_mod.uuid4()), ["default"], 5)) is None

    def finish() -> None:
        time.sleep(0.2)
        d = core.Delivery("default", 0, 1, msgspec.msgpack.encode(env), 1)
        d.envelope = env
        asyncio.run(storage.save([(d, "success", msgspec.msgpack.encode(5), "", "")], "w-1"))

    saver = threading.Thread(target=finish)
    started = time.monotonic()
    saver.start()
    task = await wait(30)
    saver.join()
    assert task.status == "success" and task.returning == 5
    assert time.monotonic() - started < 5, "woken by the save, not by the timeout"
    assert storage.state.watchers == {}, "a finished wait leaves no watcher behind"


CLIENT_CALLS = ("add_task", "add_tasks", "get", "wait", "get_logs")


def _client_methods(path: Path) -> dict[str, ast.FunctionDef | ast.AsyncFunctionDef]:
    tree = ast.parse(path.read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "QueueTasks")
    return {f.name: f for f in cls.body if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))}


@pytest.mark.parametrize("path, driver", [("qtasks_fast/app.py", "run_sync"),
                                          ("qtasks_fast/asyncio/__init__.py", "run")])
def test_both_clients_drive_one_implementation_of_each_call(path: str, driver: str) -> None:
    """The sync ``QueueTasks`` and ``qtasks_fast.asyncio.QueueTasks`` once wrote add_task, add_tasks, get, wait and
    get_logs twice (a resolve or a retry-chain rule could land in one only); each is now one statement driving
    the same generator of ``qtasks_fast.components.client_ops``."""
    methods = _client_methods(ROOT / path)
    for name in CLIENT_CALLS:
        body = [n for n in methods[name].body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
        assert len(body) == 1 and isinstance(body[0], ast.Return), (path, name, ast.unparse(methods[name]))
        call = body[0].value.value if isinstance(body[0].value, ast.Await) else body[0].value  # type: ignore[union-attr]
        assert isinstance(call, ast.Call) and ast.unparse(call.func) == driver, (path, name)
        inner = call.args[0]
        assert isinstance(inner, ast.Call) and ast.unparse(inner.func).startswith("client_ops."), (path, name)
