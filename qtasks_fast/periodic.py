"""Periodic tasks: ``@app.periodic(cron="*/5 * * * *")`` / ``@app.periodic(every=10)``, and QTasks' ``Timer``.

A schedule only *describes* when a task is due; the scheduler
(:mod:`qtasks_fast.scheduler`, run by ``qtasks-fast run`` in the supervisor
process, never in workers) enqueues it. Every supervisor of the fleet runs a
scheduler, and each tick is claimed in the broker first
(``broker.claim("periodic:<name>:<tick ms>", ttl)``), so a tick is enqueued
exactly once however many supervisors run, on however many hosts, and whichever
of them restarts.

Ticks are wall-clock instants every host computes alike: ``every=N`` ticks at
multiples of N seconds since the Unix epoch, ``cron`` ticks in UTC unless
``tz=`` names a zone (hosts in different local zones must agree on the tick to
share its claim). Ticks that fell due while no scheduler ran are **skipped**,
not caught up: a scheduler starts with the first tick after it starts, and one
that wakes late fires only the latest due tick (it logs how many it skipped).

A periodic call is an ordinary task call (task manager, middlewares and retries
apply); its ``Envelope.meta[META_PERIODIC]`` is ``[schedule name, tick in unix ms]``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from qtasks_fast.task import TaskFunc

if TYPE_CHECKING:
    from qtasks_fast.app import BaseQueueTasks

#: ``Envelope.meta`` key of a periodic call: ``[schedule name, tick in unix milliseconds]`` (for middlewares, logs)
META_PERIODIC = "periodic"
#: options of a schedule for a task registered elsewhere (the call's overrides, not task options)
CALL_OPTIONS = frozenset({"priority", "queue"})
UTC = _dt.timezone.utc


def _cron_iter(expr: str, start: _dt.datetime) -> Any:
    from cronsim import CronSim, CronSimError

    try:
        return CronSim(expr, start)
    except CronSimError as exc:
        raise ValueError(f"invalid cron expression {expr!r}: {exc} (5 fields: minute hour day month weekday, "
                         "or 6 with seconds first)") from None


@dataclasses.dataclass
class Schedule:
    """When and how to enqueue one periodic call. ``name`` keys its tick claims: keep it stable across deploys."""

    name: str
    task_name: str
    cron: str | None = None
    every: float | None = None
    #: an APScheduler-style trigger (``get_next_fire_time(previous, now)``), e.g. QTasks' ``CronTrigger``
    trigger: Any = None
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    priority: int | None = None
    queue: str | None = None
    tz: str | None = None

    def __post_init__(self) -> None:
        given = sum(x is not None for x in (self.cron, self.every, self.trigger))
        if given != 1:
            raise ValueError(f"periodic task {self.task_name!r}: give exactly one of cron=, every= or trigger=")
        if self.every is not None:
            if isinstance(self.every, _dt.timedelta):
                self.every = self.every.total_seconds()
            if not self.every > 0:
                raise ValueError(f"periodic task {self.task_name!r}: every= must be a positive number of seconds")
        if self.trigger is not None and not callable(getattr(self.trigger, "get_next_fire_time", None)):
            raise TypeError(f"periodic task {self.task_name!r}: trigger= needs a get_next_fire_time(previous, now) "
                            "method (an APScheduler trigger); or pass cron='...' / every=seconds")
        self._zone: _dt.tzinfo = UTC
        if self.tz is not None:
            import zoneinfo

            try:
                self._zone = zoneinfo.ZoneInfo(self.tz)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"periodic task {self.task_name!r}: unknown time zone {self.tz!r} "
                                 "(use an IANA name such as 'Europe/Berlin')") from None
        if self.cron is not None:
            _cron_iter(self.cron, _dt.datetime.now(self._zone))  # fail at registration, not at the first tick

    def next_after(self, ts: float) -> float:
        """The first tick strictly after unix time ``ts`` (``inf`` when the trigger has no more)."""
        if self.every is not None:
            return (math.floor(ts / self.every) + 1) * self.every
        start = _dt.datetime.fromtimestamp(ts, self._zone)
        if self.cron is not None:
            # cronsim yields ticks strictly after its start, whole seconds, DST-aware in the zone
            return float(next(_cron_iter(self.cron, start.replace(microsecond=0))).timestamp())
        fire = self.trigger.get_next_fire_time(None, start + _dt.timedelta(microseconds=1))
        return math.inf if fire is None else float(fire.timestamp())

    def describe(self) -> str:
        if self.every is not None:
            return f"every {self.every:g}s"
        if self.cron is not None:
            return f"cron {self.cron!r}" + (f" ({self.tz})" if self.tz else " (UTC)")
        return f"trigger {self.trigger!r}"

    def to_dict(self, now: float | None = None) -> dict[str, Any]:
        """JSON-ready description (``inspect``); ``next_run`` is ISO 8601 UTC."""
        import time

        nxt = self.next_after(time.time() if now is None else now)
        return {"name": self.name, "task_name": self.task_name, "schedule": self.describe(), "cron": self.cron,
                "every": self.every, "tz": self.tz, "args": list(self.args), "kwargs": self.kwargs,
                "priority": self.priority, "queue": self.queue,
                "next_run": None if math.isinf(nxt) else _dt.datetime.fromtimestamp(nxt, UTC).isoformat()}


def schedules(app: BaseQueueTasks) -> dict[str, Schedule]:
    """The app's schedules by name (kept on ``app.periodic_schedules``)."""
    found = getattr(app, "periodic_schedules", None)
    if found is None:
        found = {}
        app.periodic_schedules = found  # type: ignore[attr-defined]
    return found  # type: ignore[no-any-return]


def _unique_name(app: BaseQueueTasks, task_name: str) -> str:
    """``task_name``, then ``task_name#2``...: deterministic, since every host imports the same code in order."""
    taken = schedules(app)
    name, n = task_name, 1
    while name in taken:
        n += 1
        name = f"{task_name}#{n}"
    return name


def register(app: BaseQueueTasks, func_or_name: Callable[..., Any] | str | None = None, *, cron: str | None = None,
             every: float | _dt.timedelta | None = None, args: Sequence[Any] = (),
             kwargs: dict[str, Any] | None = None, trigger: Any = None, tz: str | None = None,
             **task_options: Any) -> Any:
    """Schedule a task; with a function, register it as a task too (``task_options`` go to ``@app.task``).

    ``func_or_name`` is a plain function (returns its :class:`TaskFunc`), a ``TaskFunc`` or a task name
    (returns the :class:`Schedule`; ``priority=``/``queue=`` override the call), or None (returns a
    decorator). The arguments are validated now when the task is known here, so a wrong schedule fails
    at import rather than at its first tick.
    """
    if func_or_name is None:
        def decorator(func: Callable[..., Any]) -> Any:
            return register(app, func, cron=cron, every=every, args=args, kwargs=kwargs, trigger=trigger, tz=tz,
                            **task_options)

        return decorator
    call: dict[str, Any] = {}
    result: Any
    if isinstance(func_or_name, str) or isinstance(func_or_name, TaskFunc):
        task_name = func_or_name if isinstance(func_or_name, str) else func_or_name.name
        extra = set(task_options) - CALL_OPTIONS
        if extra:
            raise TypeError(f"periodic task {task_name!r} is already registered: only {sorted(CALL_OPTIONS)} may be "
                            f"given here, not {sorted(extra)} (pass task options to @app.task)")
        call = task_options
        result = None
    elif callable(func_or_name):
        result = app.task(**task_options)(func_or_name)
        task_name = result.name
    else:
        raise TypeError(f"app.periodic needs a function, a task or a task name, not {type(func_or_name).__name__}")
    call_args, call_kwargs = tuple(args), dict(kwargs or {})
    tf = app.tasks.get(task_name)
    if tf is not None:
        tf.bind(call_args, call_kwargs)  # raises TaskArgumentsError naming the task and the argument
    sched = Schedule(name=_unique_name(app, task_name), task_name=task_name, cron=cron,
                     every=every,  # type: ignore[arg-type]  # a timedelta is converted in __post_init__
                     trigger=trigger, args=call_args, kwargs=call_kwargs, tz=tz, **call)
    schedules(app)[sched.name] = sched
    return sched if result is None else result


class Timer:
    """QTasks' ``(A)syncTimer`` shape: ``timer = Timer(app); timer.add_task("name", trigger=..., args=(...))``.

    ``trigger`` is a cron string, a number of seconds (or ``timedelta``), or an APScheduler trigger such as
    ``CronTrigger(second="*/10")``. Schedules land in the app, so ``qtasks-fast run`` fires them too;
    :meth:`run_forever` runs a scheduler alone in this process (no workers). Any number of timers and
    supervisors may run at once: each tick is still enqueued once.
    """

    def __init__(self, app: BaseQueueTasks, **_: Any) -> None:
        self.app = app

    def add_task(self, *args: Any, task_name: str | None = None, trigger: Any = None, **kwargs: Any) -> Schedule:
        if task_name is None:
            if not args or not isinstance(args[0], str):
                raise TypeError("Timer.add_task needs the task name: add_task('name', trigger=..., args=(...))")
            task_name, args = args[0], args[1:]
        call_args = tuple(kwargs.pop("args", ())) + tuple(args)
        call_kwargs = {**kwargs.pop("kwargs", {}), **{k: kwargs.pop(k) for k in list(kwargs) if k not in _TIMER_OPTS}}
        spec: dict[str, Any] = {k: kwargs[k] for k in _TIMER_OPTS if k in kwargs}
        if isinstance(trigger, str):
            spec["cron"] = trigger
        elif isinstance(trigger, (int, float, _dt.timedelta)):
            spec["every"] = trigger
        elif trigger is not None:
            spec["trigger"] = trigger
        sched: Schedule = register(self.app, task_name, args=call_args, kwargs=call_kwargs, **spec)
        return sched

    async def run(self) -> None:
        """Run the scheduler on the running event loop until cancelled."""
        from qtasks_fast.scheduler import Scheduler

        await Scheduler(self.app).run_forever()

    def run_forever(self) -> None:
        """Block, running the scheduler (Ctrl+C stops it)."""
        import asyncio
        import contextlib

        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(self.run())


_TIMER_OPTS = frozenset({"cron", "every", "tz", "priority", "queue"})
AsyncTimer = SyncTimer = Timer

__all__ = ["AsyncTimer", "Schedule", "SyncTimer", "Timer", "register", "schedules"]
