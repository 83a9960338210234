"""What a finished task enqueues after itself: the next step of a chain, and values fed by a generator.

A chain's remaining steps travel in the envelope (``meta[META_CHAIN]``), so no
process has to stay alive to drive it: the worker that finishes one step enqueues
the next in the same settle that acks the current one. If the worker dies between
the two, the step reruns and enqueues the next step again; the next step's uuid is
derived from the current one (uuid5) and its unique key is ``chain:<uuid>``, so
the rerun does not start the rest of the chain twice.
"""

from __future__ import annotations

import asyncio
import reprlib
import time
import uuid as _uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from qtasks_fast.log import get_logger, task_label
from qtasks_fast.schemas import META_CHAIN, META_UNIQUE, META_UNIQUE_OWNER, Envelope

if TYPE_CHECKING:
    from qtasks_fast.app import BaseQueueTasks

log = get_logger("worker")

#: namespace of chain step uuids: ``uuid5(CHAIN_NAMESPACE, previous step's uuid)``
CHAIN_NAMESPACE = _uuid.uuid5(_uuid.NAMESPACE_URL, "qtasks-fast:chain")
#: seconds the ``chain:<uuid>`` key blocks a second enqueue of the same next step; a rerun of a step
#: happens within a few leases, a day leaves a wide margin
CHAIN_UNIQUE_TTL = 86400.0

#: the app whose registry gives a next step its queue and priority when the caller passes none; the
#: worker sets it (one app per worker process)
_default_app: BaseQueueTasks | None = None


def use_app(app: BaseQueueTasks | None) -> None:
    """Make ``app`` the registry :func:`next_step` looks next steps up in (the worker calls this)."""
    global _default_app
    _default_app = app


def next_step(env: Envelope, result: Any, app: BaseQueueTasks | None = None, *, queue: str | None = None,
              prio: Any = None) -> Envelope | None:
    """The envelope of the chain step after ``env`` (which returned ``result``), or None when ``env`` ends it.

    The step is called as ``name(result, *step_args, **step_kwargs)``. Its queue, priority, retries and
    ``max_time`` come from the registry of ``app`` when it knows the task; otherwise it stays where ``env``
    ran: ``queue``/``prio``, the queue and level ``env`` was fetched from (a worker serving that queue is
    known to exist; the envelope's own queue field may name one nobody serves), ``env``'s fields without them.
    A malformed chain (from a foreign producer) raises ``ValueError`` saying what the field must hold.
    """
    chain = env.meta.get(META_CHAIN)
    if not chain:
        return None
    name, args, kwargs = chain_step(chain)
    meta: dict[str, Any] = {META_UNIQUE: ["chain:" + env.uuid, CHAIN_UNIQUE_TTL], META_UNIQUE_OWNER: None}
    if len(chain) > 1:
        meta[META_CHAIN] = list(chain[1:])
    registry = app if app is not None else _default_app
    tf = registry.tasks.get(name) if registry is not None else None
    here_prio = prio if isinstance(prio, int) else env.priority
    return Envelope(
        uuid=str(_uuid.uuid5(CHAIN_NAMESPACE, env.uuid)), task_name=name, args=[result, *args],
        kwargs=kwargs, priority=tf.priority if tf is not None else here_prio,
        queue=tf.queue if tf is not None else (queue or env.queue), created_at=time.time(),
        retry=(tf.retry or 0) if tf is not None else 0, timeout=tf.max_time if tf is not None else None, meta=meta,
    )


def chain_step(chain: Any) -> tuple[str, list[Any], dict[str, Any]]:
    """The first step of ``meta[META_CHAIN]`` as ``(task_name, args, kwargs)``, checked."""
    try:
        name, args, kwargs = chain[0]
        if isinstance(name, str) and isinstance(args, (list, tuple)) and isinstance(kwargs, (dict, type(None))) \
                and isinstance(chain, (list, tuple)):
            return name, list(args), dict(kwargs or {})
    except (TypeError, ValueError, KeyError, IndexError):
        pass
    raise ValueError(f"envelope meta {META_CHAIN!r} (chain steps) must be a list of [task_name, args, kwargs], "
                     f"got {reprlib.repr(chain)}; fix the producer that built this envelope")


class feed:  # noqa: N801 - used like a function: generate_handler=feed("task")
    """``generate_handler`` that enqueues ``task_name(value)`` for every value the generator task yields.

    ``@app.task(generate_handler=feed("resize"))`` turns a generator into a producer: each yielded
    value becomes its own task, run by any worker, and the generator's result is the list of their
    uuids. The app is the one the generator task runs in (the worker binds it), or ``app=``.
    Sync generators need ``executor="thread"`` (the default): the enqueue is a blocking call there.
    Enqueue is at-least-once: a generator that is rerun after a crash feeds its values again.
    """

    def __init__(self, task_name: str, app: BaseQueueTasks | None = None, *, priority: int | None = None) -> None:
        self.task_name = task_name
        self.app = app
        self.priority = priority

    def __repr__(self) -> str:
        return f"feed({self.task_name!r})"

    def bind(self, app: BaseQueueTasks) -> None:
        """Use ``app``'s broker unless one was given (the worker calls this for the tasks it runs)."""
        if self.app is None:
            self.app = app

    def __call__(self, value: Any) -> str | Awaitable[str]:
        app = self.app
        if app is None:
            raise RuntimeError(f"feed({self.task_name!r}) has no app: pass feed(..., app=app) when the generator "
                               "runs outside a worker")
        env, _ = app.build(self.task_name, [value], {}, self.priority)
        broker, storage = app._resolve()
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # a pool thread (sync generator): block this thread, not the worker's loop
            broker.enqueue_sync([env], storage)
            return self._log(env)
        return self._enqueue(env, broker.enqueue([env], storage))

    async def _enqueue(self, env: Envelope, call: Awaitable[Any]) -> str:
        await call
        return self._log(env)

    def _log(self, env: Envelope) -> str:
        if log.isEnabledFor(10):
            log.debug("fed task %s", task_label(env.task_name, env.uuid))
        return env.uuid


def bind_feeds(app: BaseQueueTasks) -> None:
    """Give every ``feed`` handler of ``app``'s tasks the app it enqueues through."""
    for tf in app.tasks.values():
        handler: Callable[[Any], Any] | None = getattr(tf, "generate_handler", None)
        if isinstance(handler, feed):
            handler.bind(app)
