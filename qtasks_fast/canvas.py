"""Workflows of tasks: ``chain`` (each step gets the previous result) and ``group`` (all at once).

    res = chain(fetch.s(url), parse.s(), store.s(table="pages")).add_task()
    res.wait(30)        # the record of store(parse(fetch(url)), table="pages"), or of the step that failed

    res = group(resize.s(1), resize.s(2), resize.s(3)).add_task()
    [t.returning for t in res.wait(30)]

A chain needs no process to drive it: the remaining steps travel in the first envelope
(``meta[META_CHAIN]``) and the worker that finishes a step enqueues the next one in the same
settle that acks it (:mod:`qtasks_fast.worker.followups`), so a chain survives any process
dying. Step ``n+1`` is called as ``name(result_of_step_n, *args, **kwargs)`` and its uuid is
``uuid5(CHAIN_NAMESPACE, uuid of step n)``, which is how :class:`ChainResult` follows it without
asking anyone. With the async client (``qtasks_fast.asyncio.QueueTasks``) ``add_task`` and
``wait`` are coroutines.
"""

from __future__ import annotations

import asyncio
import time
import uuid as _uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from qtasks_fast.components.producer import call_options
from qtasks_fast.router import main_app
from qtasks_fast.schemas import META_CHAIN, META_GROUP, Envelope, Task
from qtasks_fast.steps import Either, Sleep, Steps, run, run_sync

if TYPE_CHECKING:
    import datetime as _dt

    from qtasks_fast.app import BaseQueueTasks

#: how often a waiter looks again for a step that is not recorded yet
_POLL = 0.05


def _step(step: Any) -> tuple[str, list[Any], dict[str, Any]]:
    """A signature ``task.s(...)``, or a task (no arguments), as ``[name, args, kwargs]``."""
    if isinstance(step, tuple) and len(step) == 3:
        return step[0], list(step[1]), dict(step[2])
    name = getattr(step, "name", None)
    if isinstance(name, str):
        return name, [], {}
    raise TypeError(f"a chain/group step is a signature task.s(...) or a task, not {step!r}")


def _app(app: BaseQueueTasks | None) -> BaseQueueTasks:
    app = app or main_app()
    if app is None:
        raise RuntimeError("no app to send through: pass app= or create a QueueTasks first")
    return app


class chain:  # noqa: N801 - a workflow constructor, named like Celery's and QTasks users expect
    """Steps run one after another; each gets the previous step's result as its first argument."""

    def __init__(self, *steps: Any, app: BaseQueueTasks | None = None) -> None:
        if not steps:
            raise ValueError("chain needs at least one step: chain(a.s(1), b.s(), ...)")
        self.steps = [_step(s) for s in steps]
        self.app = app

    def __repr__(self) -> str:
        return "chain(" + " | ".join(name for name, _, _ in self.steps) + ")"

    def _not_imported(self, app: BaseQueueTasks) -> list[str]:
        """The steps' task names that ``app`` has not imported, in order, each once."""
        return list(dict.fromkeys(name for name, _, _ in self.steps if name not in app.tasks))

    def add_task(self, *, priority: int | None = None, countdown: float | None = None,
                 eta: _dt.datetime | float | None = None, unique: str | tuple[str, float] | None = None,
                 app: BaseQueueTasks | None = None) -> Any:
        """Enqueue the first step, carrying the rest; returns a :class:`ChainResult`.

        ``priority``/``countdown``/``eta``/``unique`` apply to the first step (later steps take their
        task's registered priority when they are enqueued).
        """
        app = _app(app or self.app)
        when, meta = call_options(app.config, countdown, eta, unique)
        meta = meta or {}
        if len(self.steps) > 1:
            meta[META_CHAIN] = [list(s) for s in self.steps[1:]]
        name, args, kwargs = self.steps[0]
        if app.is_async:
            return self._send_async(app, priority, when, meta)
        # every step, not only the first: a later step's unknown name is refused here, before anything
        # is sent, instead of being dead-lettered by the worker after the earlier steps ran
        for step in self._not_imported(app):  # a task not imported here: sent with its published options
            app.resolve_sync(step)
        env, _ = app.build(name, args, kwargs, priority, eta=when, meta=meta)
        skipped = app.send_sync([env])  # type: ignore[attr-defined]
        return ChainResult(app, skipped[env.uuid] if skipped else env.uuid, len(self.steps))

    async def _send_async(self, app: BaseQueueTasks, priority: int | None, when: float,
                          meta: dict[str, Any]) -> AsyncChainResult:
        name, args, kwargs = self.steps[0]
        for step in self._not_imported(app):
            await app.resolve(step)
        env, _ = app.build(name, args, kwargs, priority, eta=when, meta=meta)
        skipped = await app.send([env])
        return AsyncChainResult(app, skipped[env.uuid] if skipped else env.uuid, len(self.steps))


class group:  # noqa: N801
    """Calls enqueued together (one round trip per queue); :class:`GroupResult` waits for all of them."""

    def __init__(self, *calls: Any, app: BaseQueueTasks | None = None) -> None:
        if not calls:
            raise ValueError("group needs at least one call: group(a.s(1), a.s(2), ...)")
        self.calls = [_step(c) for c in calls]
        self.app = app

    def __repr__(self) -> str:
        return f"group({len(self.calls)} calls)"

    def add_task(self, *, priority: int | None = None, countdown: float | None = None,
                 eta: _dt.datetime | float | None = None, app: BaseQueueTasks | None = None) -> Any:
        """Enqueue every call with ``meta[META_GROUP] = [group id, size]``; returns a :class:`GroupResult`."""
        app = _app(app or self.app)
        when, _ = call_options(app.config, countdown, eta, None)
        gid = _uuid.uuid4().hex
        if app.is_async:
            return self._send_async(app, priority, when, gid)
        for name in {c[0] for c in self.calls}.difference(app.tasks):  # not imported here: published options
            app.resolve_sync(name)
        envs = self._envelopes(app, priority, when, gid)
        skipped = app.send_sync(envs) or {}  # type: ignore[attr-defined]
        return GroupResult(app, gid, [skipped.get(e.uuid, e.uuid) for e in envs])

    def _envelopes(self, app: BaseQueueTasks, priority: int | None, when: float, gid: str) -> list[Envelope]:
        size, now = len(self.calls), time.time()
        return [app.build(name, args, kwargs, priority, now=now, eta=when, meta={META_GROUP: [gid, size]})[0]
                for name, args, kwargs in self.calls]

    async def _send_async(self, app: BaseQueueTasks, priority: int | None, when: float,
                          gid: str) -> AsyncGroupResult:
        for name in {c[0] for c in self.calls}.difference(app.tasks):
            await app.resolve(name)
        envs = self._envelopes(app, priority, when, gid)
        skipped = await app.send(envs) or {}
        return AsyncGroupResult(app, gid, [skipped.get(e.uuid, e.uuid) for e in envs])


# ------------------------------------------------------------------------------------ results
def _next_uuid(task: Task) -> str:
    from qtasks_fast.worker.followups import CHAIN_NAMESPACE

    return str(_uuid.uuid5(CHAIN_NAMESPACE, str(task.uuid)))


class ChainResult:
    """A sent chain: ``uuid`` of its first step; :meth:`wait` follows it to the end."""

    def __init__(self, app: BaseQueueTasks, uuid: str, steps: int) -> None:
        self.app, self.uuid, self.steps = app, uuid, steps

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.uuid} steps={self.steps}>"

    def wait(self, timeout: float) -> Task | None:
        """The last step's final record; the record of a step that ended ``error``/``cancel`` (the chain
        stops there); None when the chain is not done within ``timeout`` seconds."""
        return run_sync(self._following(time.monotonic() + timeout))

    def _following(self, deadline: float) -> Steps[Task | None]:
        uuid = self.uuid
        for i in range(self.steps):
            task = yield from _waiting(self.app.wait, uuid, deadline)  # type: ignore[attr-defined]
            if task is None or task.status != "success" or i == self.steps - 1:
                return task
            uuid = _next_uuid(task)
        return None  # not reached: steps >= 1


class AsyncChainResult(ChainResult):
    """:class:`ChainResult` of the async client: ``await res.wait(timeout)``."""

    async def wait(self, timeout: float) -> Task | None:  # type: ignore[override]
        return await run(self._following(time.monotonic() + timeout))


class GroupResult:
    """A sent group: ``id`` and the members' ``uuids`` in call order."""

    def __init__(self, app: BaseQueueTasks, group_id: str, uuids: list[str]) -> None:
        self.app, self.id, self.uuids = app, group_id, uuids

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} size={len(self.uuids)}>"

    def __len__(self) -> int:
        return len(self.uuids)

    def wait(self, timeout: float) -> list[Task | None]:
        """Wait up to ``timeout`` seconds in all for every member; their final records in call order
        (None for a member not final by then)."""
        deadline = time.monotonic() + timeout
        return [run_sync(_waiting(self.app.wait, u, deadline)) for u in self.uuids]  # type: ignore[attr-defined]


class AsyncGroupResult(GroupResult):
    """:class:`GroupResult` of the async client: ``await res.wait(timeout)``."""

    async def wait(self, timeout: float) -> list[Task | None]:  # type: ignore[override]
        deadline = time.monotonic() + timeout
        return list(await asyncio.gather(*(run(_waiting(self.app.wait, u, deadline))  # type: ignore[attr-defined]
                                           for u in self.uuids)))


def _waiting(wait: Callable[[str, float], Any], uuid: str, deadline: float) -> Steps[Task | None]:
    """``app.wait`` (sync or async: the client's own) until ``deadline``; a task not recorded yet (None at once) is
    looked for again. One loop for :class:`GroupResult` and :class:`AsyncGroupResult` (see qtasks_fast.steps)."""
    while True:
        task = yield Either(lambda: wait(uuid, max(0.0, deadline - time.monotonic())),
                            lambda: wait(uuid, max(0.0, deadline - time.monotonic())))
        if task is not None or time.monotonic() >= deadline:
            return task  # type: ignore[no-any-return]
        yield Sleep(_POLL)


__all__ = ["AsyncChainResult", "AsyncGroupResult", "ChainResult", "GroupResult", "chain", "group"]
