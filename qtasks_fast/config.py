"""``GlobalConfig``: every knob of an app in one place, with the reason for each default.

One precedence for every setting (README "Configuration"): a command-line flag, then the environment
(``QTASKS_<FIELD>``), then code (``GlobalConfig(...)`` arguments or ``app.config.x = ...``), then the
default. The environment beats code because it is what an operator can change without a release:
``QTASKS_CONCURRENCY=8`` must throttle a fleet whatever the app hard-codes. Each field remembers where
its value came from (:meth:`GlobalConfig.source`), which ``qtasks-fast -A app info`` shows; a dataclass
``__init__`` cannot tell a passed value from a default by value, so ``__new__`` records the names passed.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

#: fields that hold objects, not settings: never read from the environment
_NOT_FROM_ENV = frozenset({"task_manager"})
#: where a value came from, as :meth:`GlobalConfig.source` names it (an env source is ``"env QTASKS_X"``)
FLAG, CODE, DEFAULT = "flag", "code", "default"


class BadSetting(ValueError):
    """A ``QTASKS_<NAME>`` value that is not one of its setting; the message is one line saying which and
    what to do (``qtasks-fast`` prints it as it is)."""


#: the least value a ``QTASKS_<FIELD>`` may set (``--concurrency 0`` is refused, so is ``QTASKS_CONCURRENCY=0``:
#: a worker that could run nothing would start and sit idle); ``lease_seconds`` must be above its bound
_ENV_MIN: dict[str, float] = {"concurrency": 1, "threads": 1, "batch_size": 1, "max_deliveries": 1, "max_payload": 1,
                              "prefetch": -1, "lease_seconds": 0, "drain_seconds": 0, "log_summary_seconds": 0}

TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


def parse_bool(name: str, raw: str) -> bool:
    """``QTASKS_<name>`` as a bool; a ``ValueError`` (one line) for anything else than 1/0, true/false, yes/no,
    on/off: ``QTASKS_INDEX_RESULTS=flase`` must not silently mean False."""
    if raw.strip().lower() in TRUE:
        return True
    if raw.strip().lower() in FALSE:
        return False
    raise BadSetting(f"QTASKS_{name.upper()}={raw!r} is not a valid bool (1/0, true/false, yes/no, on/off): fix or "
                     "unset it")


def env_name(field: str) -> str:
    """The environment variable of a setting: ``lease_seconds`` -> ``QTASKS_LEASE_SECONDS``."""
    return "QTASKS_" + field.upper()


@dataclasses.dataclass
class GlobalConfig:
    """App-wide settings (QTasks ``app.config``). ``QTASKS_<NAME>`` in the environment beats a value given
    in code, which beats the default; ``qtasks-fast run`` flags beat all three."""

    #: queue used by tasks that do not name one
    default_queue: str = "default"
    #: seconds a finished record (and its result) is kept
    result_ttl: float = 86400.0
    #: largest encoded envelope accepted, in bytes; bigger ones are refused at enqueue and dead-lettered in the worker
    max_payload: int = 1024 * 1024
    #: a delivery whose worker stops renewing it for this long is taken over by another worker
    lease_seconds: float = 30.0
    #: deliveries after which a message is dead-lettered instead of run again (stops crash loops)
    max_deliveries: int = 5
    #: priority levels (0 = most urgent); each is one stream per queue
    priority_levels: int = 10
    #: keep the status/name indexes a dashboard lists from (costs two ZADDs per task)
    index_results: bool = True
    #: tasks run at once per worker process. 64, within the connection pools task code shares: redis-py's
    #: ``redis.asyncio`` client allows 100 connections and raises ``MaxConnectionsError`` past them, so one
    #: client shared by every task breaks under a burst once more than 100 run. Short tasks drain as fast
    #: as at 256 (measured, benchmarks/RESULTS.md): the fetch, not the number running, sets that pace
    concurrency: int = 64
    #: threads for sync tasks per worker process
    threads: int = 16
    #: most messages fetched in one round trip
    batch_size: int = 500
    #: messages a worker process holds beyond ``concurrency``, ready to start the moment a slot frees
    #: (-1 = as many as ``concurrency``); 0 for long tasks, so an idle worker is never left without work
    prefetch: int = -1
    #: seconds a graceful stop waits for running tasks before handing the rest back
    drain_seconds: float = 30.0
    #: validate arguments against type hints (producer side when the task is known, always in the worker)
    validate_args: bool = True
    #: seconds ``add_task(unique="key")`` holds the key when no ttl is given (``unique=("key", ttl)``)
    unique_ttl: float = 3600.0
    #: seconds a Redis command may take to answer before it fails with ``BrokerUnavailable`` (0 = no limit):
    #: without it a hung Redis (stopped, partitioned without a reset) blocks ``add_task`` forever. Blocking
    #: waits (``add_task(timeout=N)``, the worker's read) are cut into slices of half this on the server, so
    #: they are never cut by it. A URL query ``?socket_timeout=`` wins
    socket_timeout: float = 10.0
    #: seconds to open a connection to Redis before it fails with ``BrokerUnavailable`` (0 = no limit); a URL
    #: query ``?socket_connect_timeout=`` wins
    connect_timeout: float = 5.0
    #: seconds between a worker process's summary lines at INFO (tasks/s, ok, failed, retried, cancelled;
    #: none for an idle interval); successes have no line of their own, failures do. 0 = no summary
    log_summary_seconds: float = 60.0
    #: QTasks' ``delete_finished_tasks``: when a fleet starts (``qtasks-fast run``, each ``app.run_forever()``), delete
    #: the records of every finished task of the app's queues first (queued and running ones are kept), so it
    #: starts on a clean store; results read after that start are only those of tasks finished since. Off by
    #: default: records otherwise live ``result_ttl`` seconds after they finish
    delete_finished_tasks: bool = False
    #: a ``qtasks_fast.components.task_manager.TaskManager``: sees (and may change) every task before it
    #: is sent, on the producer only; None costs nothing
    task_manager: Any = None

    def __new__(cls, *args: Any, **kwargs: Any) -> GlobalConfig:
        self = super().__new__(cls)
        names = [f.name for f in dataclasses.fields(cls) if f.init]
        object.__setattr__(self, "_passed", frozenset(names[:len(args)]) | kwargs.keys())
        return self

    def __post_init__(self) -> None:
        passed: frozenset[str] = getattr(self, "_passed", frozenset())
        sources: dict[str, str] = {}
        for f in dataclasses.fields(self):
            sources[f.name] = CODE if f.name in passed else DEFAULT
            if f.name in _NOT_FROM_ENV:
                continue
            raw = os.environ.get(env_name(f.name))
            if raw is None:
                continue
            object.__setattr__(self, f.name, self._parse(f.name, raw))
            sources[f.name] = "env " + env_name(f.name)
        object.__setattr__(self, "_sources", sources)
        if self.priority_levels < 1:
            raise ValueError("priority_levels must be at least 1")
        for name in ("socket_timeout", "connect_timeout"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 (no limit) or a positive number of seconds")

    def _parse(self, name: str, raw: str) -> object:
        """``raw`` as the field's type: its default's (``lease_seconds=60`` in code is still a float field)."""
        default = self.__dataclass_fields__[name].default
        kind = type(getattr(self, name) if default is dataclasses.MISSING or default is None else default)
        if kind is bool:
            return parse_bool(name, raw)
        try:
            value = kind(raw)
        except ValueError:
            raise BadSetting(f"{env_name(name)}={raw!r} is not a valid {kind.__name__}: fix or unset it") from None
        least = _ENV_MIN.get(name)
        if least is not None and (value <= least if name == "lease_seconds" else value < least):
            bound = f"above {least:g}" if name == "lease_seconds" else f"at least {least:g}"
            raise BadSetting(f"{env_name(name)}={raw!r} must be {bound}: fix or unset it")
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        """``app.config.x = v`` in code: recorded as code, and, by the one precedence, left under an
        environment variable or a flag that set ``x`` (the operator's value stays in force)."""
        sources: dict[str, str] | None = self.__dict__.get("_sources")
        if sources is not None and name in sources:
            if sources[name] != DEFAULT and sources[name] != CODE:
                return
            sources[name] = CODE
        object.__setattr__(self, name, value)

    def __getstate__(self) -> dict[str, Any]:
        """A copy (``copy.copy``, pickle) gets its own record of sources, not a view of this one's."""
        state = dict(self.__dict__)
        state["_sources"] = dict(state.get("_sources", {}))
        return state

    def source(self, name: str) -> str:
        """Where field ``name`` got its value: ``"flag"``, ``"env QTASKS_<NAME>"``, ``"code"`` or ``"default"``."""
        sources: dict[str, str] = self.__dict__.get("_sources", {})
        return sources.get(name, DEFAULT)

    def set_from_flag(self, name: str, value: Any) -> None:
        """A command-line flag's value for field ``name``: it beats the environment and code."""
        if name not in self.__dict__.get("_sources", {}):
            raise AttributeError(f"GlobalConfig has no field {name!r}")
        object.__setattr__(self, name, value)
        self.__dict__["_sources"][name] = FLAG


def effective_prefetch(concurrency: int, prefetch: int) -> int:
    """How many messages a worker holds beyond ``concurrency``: ``prefetch`` capped at ``concurrency``, and
    ``concurrency`` itself for ``-1`` (it follows concurrency). The worker and ``inspect`` both use this."""
    return concurrency if prefetch < 0 else min(concurrency, prefetch)
