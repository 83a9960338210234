"""How a call becomes an envelope on the producer side: task manager, validation, middlewares, options.

Everything optional here is guarded by one check per call (``config.task_manager is None``,
``app._mw_active``), so an app without a task manager or middlewares builds envelopes as
fast as before those existed.
"""

from __future__ import annotations

import datetime as _dt
import gc
import logging
import time
import uuid as _uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from qtasks_fast import _corelib as core
from qtasks_fast.components.task_manager import PendingTask
from qtasks_fast.exceptions import PayloadTooLarge, TaskArgumentsError, TaskNotFound
from qtasks_fast.log import get_logger, task_label
from qtasks_fast.portal import portal
from qtasks_fast.schemas import META_UNIQUE, Envelope, Minted, Task, record_from_envelope, ts_to_dt
from qtasks_fast.steps import Either, Steps, run, run_sync
from qtasks_fast.tasktable import LOOKUP_FLOOR, MAX_AGE, did_you_mean

if TYPE_CHECKING:
    from qtasks_fast.abc import Broker, Storage
    from qtasks_fast.config import GlobalConfig
    from qtasks_fast.task import TaskFunc
    from qtasks_fast.tasktable import TaskSpec

log = get_logger("producer")
#: one call: ``(task name, args, kwargs)``, as ``TaskFunc.s`` makes it
Signature = tuple[str, Sequence[Any], dict[str, Any]]


def as_call(task: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> tuple[str, Sequence[Any], dict[str, Any]]:
    """``add_task``'s first argument: a task name, a task object, or a whole signature ``task.s(...)``.

    The signature form is how a task whose parameters are called ``priority`` or ``timeout`` gets them, and
    how such a task's ``countdown``/``eta``/``unique``/``connection`` *options* are given (without it those
    keywords are the task's, :func:`task_keywords`): ``app.add_task(t.s(countdown=3), countdown=10)``.
    """
    if type(task) is str:
        return task, args, kwargs
    if isinstance(task, tuple):
        if args or kwargs:
            raise TypeError(f"add_task got a signature {task[0]!r} and more arguments: put every argument of the "
                            "task in the signature (task.s(...))")
        name, sargs, skwargs = task
        return name, sargs, dict(skwargs)
    name = getattr(task, "name", None)
    if not isinstance(name, str):
        raise TypeError(f"add_task needs a task name, a task or a signature, not {type(task).__name__}")
    return name, args, kwargs


def task_keywords(tasks: Mapping[str, TaskFunc], name: str, kwargs: dict[str, Any], countdown: Any, eta: Any,
                  unique: Any, connection: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
    """``add_task(name, countdown=..., ...)`` of a task that declares a parameter ``countdown`` (or ``eta``,
    ``unique``, ``connection``): the keyword is the task's, as in QTasks (which reserves only ``priority`` and
    ``timeout``), and the option stays unset. Only called when one of these options is given; a task this
    process has not imported is not known, so its keywords stay options (use the signature form there)."""
    tf = tasks.get(name)
    shadowed = tf.shadowed_options if tf is not None else None
    if not shadowed:
        return countdown, eta, unique, connection, kwargs
    given = {"countdown": countdown, "eta": eta, "unique": unique, "connection": connection}
    kwargs = {**kwargs, **{k: v for k, v in given.items() if k in shadowed and v is not None}}
    kept = [None if k in shadowed else v for k, v in given.items()]
    return kept[0], kept[1], kept[2], kept[3], kwargs


def call_options(config: GlobalConfig, countdown: float | None, eta: _dt.datetime | float | None,
                 unique: str | tuple[str, float] | None) -> tuple[float, dict[str, Any] | None]:
    """``(Envelope.eta, meta or None)`` for ``add_task``'s ``countdown``/``eta``/``unique``."""
    when = 0.0
    if countdown is not None:
        if eta is not None:
            raise TypeError("add_task: pass countdown= (seconds from now) or eta= (a time), not both")
        if countdown > 0:
            when = time.time() + countdown
    elif eta is not None:
        when = eta.timestamp() if isinstance(eta, _dt.datetime) else float(eta)  # naive datetime = local time
        if when <= time.time():
            when = 0.0
    if unique is None:
        return when, None
    key, ttl = (unique, config.unique_ttl) if isinstance(unique, str) else unique
    if not isinstance(key, str) or not key or not ttl or ttl <= 0:
        raise ValueError(f"add_task: unique must be a non-empty key or (key, ttl seconds > 0), not {unique!r}")
    return when, {META_UNIQUE: [key, float(ttl)]}


#: ``(task name, priority)`` pairs already reported as mapped onto the end levels (one warning each per process)
_MAPPED: set[tuple[str, int]] = set()


def priority_level(prio: Any, levels: int, task_name: str) -> int:
    """The level of a priority outside ``0..levels-1``: QTasks takes any int, lower first (its example default is 21,
    negatives run before 0). Below 0 runs at level 0 (first), above the top at the top level (last), so the order
    QTasks gives is kept except that values past an end share that end; said once per task and value. Not an int:
    one line, as a wrong type could only fail later. Only called for such a value: in-range ones cost one compare."""
    if type(prio) is not int:
        raise TypeError(f"priority of task {task_name!r} must be an int (lower runs first), not {prio!r}")
    level = 0 if prio < 0 else levels - 1
    if (task_name, prio) not in _MAPPED and len(_MAPPED) < 10_000:
        _MAPPED.add((task_name, prio))
        hint = f"; config.priority_levels = {prio + 1} keeps it distinct" if prio > 0 else ""
        log.warning("priority %d of task %r runs at level %d: levels here are 0..%d (lower first) and a priority past "
                    "an end shares that end%s", prio, task_name, level, levels - 1, hint)
    return level


class NeedsLookup(Exception):
    """Internal: a name this producer has not imported is to be decided after reading the published table."""


class Producer:
    """Envelope building and sending, mixed into ``BaseQueueTasks``."""

    name: str
    tasks: dict[str, TaskFunc]
    config: GlobalConfig
    middlewares_before: list[Any]
    middlewares_after: list[Any]
    _mw_active: bool
    #: queues calls were routed to that no registered task names (by a task manager): ``app.queues`` has them
    _routed_queues: list[str]
    #: of those, the ones not yet recorded in the broker (``Broker.note_queues``): the next send records them
    _unnoted_queues: list[str]
    #: the published task table as last read (qtasks_fast.tasktable), for names not in ``tasks``
    _published: dict[str, TaskSpec]
    #: monotonic times: before the first, a miss does not read the table again (LOOKUP_FLOOR); until the
    #: second, entries read are trusted (MAX_AGE)
    _table_read_after: float
    _table_fresh_until: float

    def _resolve(self) -> tuple[Broker, Storage]:
        raise NotImplementedError

    def build(self, task_name: str, args: Sequence[Any], kwargs: dict[str, Any], priority: int | None = None,
              queue: str | None = None, now: float | None = None, *, eta: float = 0.0,
              meta: dict[str, Any] | None = None) -> tuple[Envelope, _uuid.UUID]:
        """Validate (when the task is known here) and wrap one call for the broker.

        Order: ``config.task_manager.mutate`` (may change anything), argument validation, the
        middlewares' ``before_enqueue`` (in chain order), the size check. ``eta`` is unix seconds
        (0 = now); ``meta`` becomes ``Envelope.meta``.
        """
        tf = self.tasks.get(task_name)
        opts = tf if tf is not None else self._published.get(task_name)  # a task published by the workers
        config = self.config
        timeout = opts.max_time if opts is not None else None
        retry = (opts.retry or 0) if opts is not None else 0
        if config.task_manager is not None:
            prio0 = priority if priority is not None else (opts.priority if opts is not None else 0)
            p = PendingTask(task_name, list(args), dict(kwargs), priority=prio0,
                            queue=queue or (opts.queue if opts is not None else config.default_queue), timeout=timeout,
                            retry=retry, eta=eta, meta=meta if meta is not None else {}, task_func=tf,
                            unique_ttl=config.unique_ttl)
            p = config.task_manager.mutate(p)
            if not isinstance(p, PendingTask):
                raise TypeError(f"{type(config.task_manager).__name__}.mutate returned {type(p).__name__}, not the "
                                "task: end it with `return task`")
            if p.name != task_name:
                task_name, tf = p.name, self.tasks.get(p.name)
                opts = tf if tf is not None else self._published.get(task_name)
            args, kwargs, priority, queue = p.args, p.kwargs, p.priority, p.queue
            if queue != (opts.queue if opts is not None else config.default_queue) and queue not in self._routed_queues:
                self._routed_queues.append(queue)  # so app.get/wait look there
                self._unnoted_queues.append(queue)  # and any process' flush_all (noted by the send)
            timeout, retry, eta, meta = p.timeout, p.retry, p.eta, p.meta
        if tf is not None and config.validate_args:
            args, kwargs = tf.bind(args, kwargs)
        prio = priority if priority is not None else (opts.priority if opts is not None else 0)
        if type(prio) is not int or not 0 <= prio < config.priority_levels:
            prio = priority_level(prio, config.priority_levels, task_name)
        uid, uid_str = core.new_uuid()
        env = Envelope(
            uuid=uid_str, task_name=task_name, args=list(args), kwargs=kwargs, priority=prio,
            queue=queue or (opts.queue if opts is not None else config.default_queue), created_at=now or time.time(),
            retry=retry, timeout=timeout, meta=meta if meta is not None else {},
        )
        if eta:  # set only when given: msgspec omits a default by identity, and 0 must stay off the wire
            env.eta = eta
        if self._mw_active:
            env = self._before_enqueue(env, tf)
            if env.uuid != uid_str:
                uid = _uuid.UUID(env.uuid)
        self._check_size(env, config.max_payload)
        return env, uid

    @staticmethod
    def _check_size(env: Envelope, max_payload: int) -> None:
        try:
            size = len(core.encode(env))
        except TypeError as exc:
            raise TypeError(f"task {env.task_name!r}: arguments are not serializable to msgpack: {exc}") from None
        except (OverflowError, RecursionError, ValueError) as exc:  # an int beyond 64 bits, nesting too deep
            raise TaskArgumentsError(f"task {env.task_name!r}: arguments cannot be encoded ({exc}); integers must "
                                     "fit in 64 bits and nesting must stay under a few hundred levels") from None
        if size > max_payload:
            raise PayloadTooLarge(f"task {env.task_name!r}: encoded call is {size} bytes, over the "
                                  f"{max_payload} byte limit (config.max_payload); pass a reference "
                                  "(a key or URL) instead of the data")

    def _plan(self, task_name: str) -> tuple[Any, int, str, int, float | None]:
        """What :meth:`build` looks up per call, once per task name of a bulk enqueue:
        ``(bind or None, priority, queue, retry, timeout)``. A name not imported here is checked against
        the published table (:meth:`published_spec`)."""
        tf = self.tasks.get(task_name)
        opts = tf if tf is not None else self.published_spec(task_name)
        config = self.config
        prio = opts.priority if opts is not None else 0
        if type(prio) is not int or not 0 <= prio < config.priority_levels:
            prio = priority_level(prio, config.priority_levels, task_name)
        return (tf.bind if tf is not None and config.validate_args else None, prio,
                opts.queue if opts is not None else config.default_queue, (opts.retry or 0) if opts is not None else 0,
                opts.max_time if opts is not None else None)

    def build_many(self, calls: Sequence[Signature]) -> tuple[list[Envelope], list[Task]]:
        """Envelopes for a bulk enqueue and the ``new`` records to hand back (one timestamp for the batch).

        Raises :class:`NeedsLookup` (the caller reads the published table and calls again) or
        ``TaskNotFound`` for a name not imported here, before any middleware hook has run.
        """
        records: list[Task] = []
        (envs,) = self.build_parts(calls, records, (len(calls),))
        return envs, records

    def part_sizes(self, count: int) -> Sequence[int]:
        """How a bulk enqueue of ``count`` calls is cut for the broker (:meth:`Broker.part_sizes`): whole when
        a middleware or task manager may change a call (each is built on its own, and the hooks expect one batch)."""
        if self._mw_active or self.config.task_manager is not None:
            return (count,)
        return self._resolve()[0].part_sizes(count)

    def build_parts(self, calls: Sequence[Signature], records: list[Task],
                    sizes: Sequence[int]) -> Iterator[list[Envelope]]:
        """:meth:`build_many` cut into consecutive parts of ``sizes`` (summing to ``len(calls)``), each built when
        asked for, its records appended to ``records``: the broker asks for the next while its server stores
        the previous (:meth:`Broker.enqueue_parts`). Every name is checked when the first part is asked for."""
        now = time.time()
        created = ts_to_dt(now)
        # without a task manager or middlewares, a call needs only what _plan looked up for its task name
        plain = self.config.task_manager is None and not self._mw_active
        names = {c[0] for c in calls}
        if plain:  # looked up before the first part: a miss raises before anything was sent
            plans = {name: self._plan(name) for name in names}
        else:  # per-call builds run hooks: every name is checked before the first
            for name in names.difference(self.tasks):
                self.published_spec(name)
        max_payload = self.config.max_payload
        new_uuid, check = core.new_uuid, self._check_size
        start = 0
        for size in sizes:
            # uuids minted here and never sent: a backend may skip looking for their old records (Minted); a
            # middleware may set a uuid of its own, so with middlewares a plain list
            envs: list[Envelope] = Minted() if plain else []
            # A part allocates ~5 tracked objects per call (envelope, record, uuid, lists), and none forms a
            # reference cycle; left on, the cyclic GC scans the growing batch again and again (measured: 4.4
            # -> 2.3 µs per call for 1,000-call batches). Paused here, it runs once after the part instead.
            enabled = gc.isenabled()
            gc.disable()
            try:
                for name, args, kwargs in calls[start:start + size]:
                    if not plain:
                        env, uid = self.build(name, args, kwargs, now=now)
                    else:
                        bind, prio, queue, retry, timeout = plans[name]
                        if bind is not None:
                            args, kwargs = bind(args, kwargs)
                        uid, uid_str = new_uuid()
                        env = Envelope(uuid=uid_str, task_name=name, args=list(args), kwargs=kwargs, priority=prio,
                                       queue=queue, created_at=now, retry=retry, timeout=timeout, meta={})
                        check(env, max_payload)
                    envs.append(env)
                    records.append(record_from_envelope(env, uuid=uid, created=created))
            finally:
                if enabled:
                    gc.enable()
            start += size
            yield envs

    # ------------------------------------------------------- published task table
    def published_spec(self, name: str) -> TaskSpec | None:
        """Options of a task not imported here: its entry in the published table (qtasks_fast.tasktable).

        Raises :class:`NeedsLookup` when the cached table may be out of date for ``name`` (never read,
        a miss, or older than ``MAX_AGE``) and the floor allows a read; ``TaskNotFound`` (with the
        closest name) when a table is known, this producer's registry or the published one, and
        lacks ``name``. None when none is known anywhere: the call goes out as is.
        """
        now = time.monotonic()
        spec = self._published.get(name)
        if (spec is None or now >= self._table_fresh_until) and now >= self._table_read_after:
            raise NeedsLookup(name)
        if spec is not None or not (self.tasks or self._published):
            return spec
        raise TaskNotFound(f"no task {name!r} in app {self.name!r}{did_you_mean(name, [*self.tasks, *self._published])}"
                           ": it is not registered here and no worker published it; check the name, or start a "
                           "worker whose app defines it")

    async def refresh_tasks(self) -> None:
        """Read the published task table (one broker round trip); a broker without tables gives ``{}``."""
        from qtasks_fast.abc.capabilities import NotSupported, TaskTable, require

        try:
            table = await require(self._resolve()[0], TaskTable).published_tasks()
        except NotSupported:
            table = {}
        now = time.monotonic()
        self._published, self._table_read_after, self._table_fresh_until = table, now + LOOKUP_FLOOR, now + MAX_AGE

    def table_due(self) -> bool:
        """True when lookups by uuid should read the published table first (its queues may be new)."""
        now = time.monotonic()
        return now >= self._table_fresh_until and now >= self._table_read_after

    async def resolve(self, name: str) -> None:
        """Make sure ``name`` (not imported here) may be sent: read the table when due, then decide."""
        await run(self._resolving(name))

    def resolve_sync(self, name: str) -> None:
        """:meth:`resolve` for the sync client: the read runs on the helper loop only when due."""
        run_sync(self._resolving(name))

    def _resolving(self, name: str) -> Steps[None]:
        try:
            self.published_spec(name)
        except NeedsLookup:
            yield Either(self.refresh_tasks, lambda: portal().run(self.refresh_tasks()))
            self.published_spec(name)

    # ------------------------------------------------------------------ send
    async def send(self, envelopes: Sequence[Envelope], wait: bool = False) -> Mapping[str, str] | None:
        """Enqueue built envelopes, then run the middlewares' ``after_enqueue``.

        Returns ``{skipped uuid: holder uuid}`` for unique-skipped envelopes, or None. Anything that
        sends envelopes of this app (restart, periodic ticks) goes through here or :meth:`send_sync`.
        """
        return await run(self._sending(envelopes, wait))

    def send_sync(self, envelopes: Sequence[Envelope], wait: bool = False) -> Mapping[str, str] | None:
        """:meth:`send` for the sync client: the broker's blocking enqueue (``enqueue_sync``)."""
        return run_sync(self._sending(envelopes, wait))

    def _sending(self, envelopes: Sequence[Envelope], wait: bool,
                 connection: Any = None) -> Steps[Mapping[str, str] | None]:
        """The send, once for both clients (see qtasks_fast.steps); with ``connection``, inside that open database
        transaction (the broker's ``TransactionalEnqueue``; the async client only: such connections are async)."""
        broker, storage = self._resolve()
        if self._unnoted_queues:  # rare (a task manager's new route); the sync client uses the helper loop, once
            yield Either(lambda: self._note_queues(broker), lambda: portal().run(self._note_queues(broker)))
        if connection is not None:
            from qtasks_fast.abc.capabilities import TransactionalEnqueue, require

            tx = require(broker, TransactionalEnqueue)
            skipped = yield Either(lambda: tx.enqueue_in(connection, envelopes, storage, wait), _sync_refused)
        else:
            skipped = yield Either(lambda: broker.enqueue(envelopes, storage, wait=wait),
                                   lambda: broker.enqueue_sync(envelopes, storage, wait=wait))
        return self._sent(envelopes, skipped)

    def _sending_parts(self, parts: Iterable[Sequence[Envelope]]) -> Steps[None]:
        """The send of one batch in parts (:meth:`Broker.enqueue_parts`; only :meth:`part_sizes` cuts one, when no
        hook or route can change a call, so none of :meth:`_sending`'s noting and hooks applies). The sync client
        runs it on the helper loop, which then builds the parts as it asks for them."""
        broker, storage = self._resolve()
        yield Either(lambda: broker.enqueue_parts(parts, storage),
                     lambda: portal().run(broker.enqueue_parts(parts, storage)))

    async def _note_queues(self, broker: Broker) -> None:
        """Record the routed queues in the broker *before* the first call goes there, so a ``flush_all`` from any
        process finds them; a failure (an outage) fails the send, which has sent nothing yet."""
        from qtasks_fast.abc.capabilities import FlushAll

        queues = list(self._unnoted_queues)
        if isinstance(broker, FlushAll):  # only flush_all reads the list: a broker without it keeps none
            await broker.note_queues(queues)
        self._unnoted_queues = [q for q in self._unnoted_queues if q not in queues]

    def _sent(self, envelopes: Sequence[Envelope], skipped: Mapping[str, str] | None) -> Mapping[str, str] | None:
        if skipped and log.isEnabledFor(logging.DEBUG):
            for env in envelopes:
                if env.uuid in skipped:
                    log.debug("task %s not sent: unique key %r is held by %s", task_label(env.task_name, env.uuid),
                              env.meta[META_UNIQUE][0], skipped[env.uuid])
        if self._mw_active:
            self._after_enqueue(envelopes, skipped)
        return skipped or None

    # ----------------------------------------------------------- middlewares
    # The chain is ``app before + task before + task after + app after`` (qtasks_fast.middleware):
    # ``before_enqueue`` hooks run in that order, ``after_enqueue`` hooks in reverse.
    def enqueue_chain(self, tf: TaskFunc | None) -> Sequence[Any]:
        """The middlewares whose producer hooks run for a call of ``tf`` (None: a task unknown here)."""
        if tf is None:
            return (*self.middlewares_before, *self.middlewares_after)
        if getattr(tf, "has_enqueue_hooks", True) is False:
            return ()
        cached = getattr(tf, "middlewares", None)
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        from qtasks_fast.middleware import middleware_chain

        return middleware_chain(self, tf)

    def _before_enqueue(self, env: Envelope, tf: TaskFunc | None) -> Envelope:
        for mw in self.enqueue_chain(tf):
            out = mw.before_enqueue(self, env)
            if not isinstance(out, Envelope):
                raise TypeError(f"{type(mw).__name__}.before_enqueue returned {type(out).__name__}, not the "
                                "envelope: end it with `return envelope`")
            env = out
        return env

    def _after_enqueue(self, envelopes: Sequence[Envelope], skipped: Mapping[str, str] | None) -> None:
        for env in envelopes:
            if skipped and env.uuid in skipped:
                continue  # never enqueued: the holder's after_enqueue already ran
            for mw in reversed(self.enqueue_chain(self.tasks.get(env.task_name))):
                mw.after_enqueue(self, env)


def _sync_refused() -> Mapping[str, str] | None:
    raise TypeError("add_task(connection=...) is for the async client (qtasks_fast.asyncio.QueueTasks) with an "
                    "async connection of the backend's database (asyncpg for postgresql://), inside its transaction")
