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
import difflib
import logging
import os
from collections.abc import Callable
from typing import Any

#: fields that hold objects, not settings: never read from the environment
_NOT_FROM_ENV = frozenset({"task_manager"})
#: where a value came from, as :meth:`GlobalConfig.source` names it (an env source is ``"env QTASKS_X"``)
FLAG, CODE, DEFAULT = "flag", "code", "default"


class BadSetting(ValueError):
    """A ``QTASKS_<NAME>`` value that is not one of its setting; the message is one line saying which and
    what to do (``qtasks-fast`` prints it as it is)."""


#: the least value a ``QTASKS_<FIELD>`` may set (``--concurrency 0`` is refused, so is ``QTASKS_CONCURRENCY=0``:
#: a worker that could run nothing would start and sit idle); those of :data:`_ABOVE` must be above their bound
_ENV_MIN: dict[str, float] = {"concurrency": 1, "threads": 1, "batch_size": 1, "max_deliveries": 1, "max_payload": 1,
                              "prefetch": -1, "lease_seconds": 0, "drain_seconds": 0, "log_summary_seconds": 0,
                              "result_time_interval": 0}
_ABOVE = frozenset({"lease_seconds", "result_time_interval"})

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


def env_name(field: str, prefix: str = "QTASKS_") -> str:
    """The environment variable of a setting: ``lease_seconds`` -> ``QTASKS_LEASE_SECONDS`` (``prefix`` is the
    config's ``environ_prefix``)."""
    return prefix + field.upper()


#: the statuses a task ends in here (QTasks ``result_statuses_end``): fixed, they are what the storage
#: contract's ``finished`` means and what ``add_task(timeout=)``/``wait`` return on
STATUSES_END = ("success", "error", "cancel")
#: QTasks ``app.config`` fields with no meaning here yet: setting one raises with what to use instead
#: (a QTasks app that sets them must learn the value is not honoured, not have it silently dropped). None now
QTASKS_NOT_YET: dict[str, str] = {}


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
    #: keep the query side's indexes on Redis (lists, counts, event feed, throughput: a zset entry per task,
    #: two for errors and cancels, an event entry per batch); False leaves them empty (records and waits are
    #: unaffected)
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
    #: QTasks ``task_default_priority``: the priority of a task registered without ``priority=`` (read when
    #: it is sent, so setting it after ``@app.task`` still applies)
    task_default_priority: int = 0
    #: QTasks ``task_default_decode``: decoder of ``returning`` for tasks registered without ``decode=``
    task_default_decode: Callable[[Any], Any] | None = None
    #: QTasks ``environ_prefix``: the prefix of the environment variables this config reads (``QTASKS_``);
    #: pass it to ``GlobalConfig(environ_prefix=...)``, as the environment is read when the config is made.
    #: The CLI's own variables (``QTASKS_BROKER_URL``, ``QTASKS_LOG_LEVEL``) keep the ``QTASKS_`` prefix
    environ_prefix: str = "QTASKS_"
    #: QTasks ``logs_default_level_server``: the worker's log level when neither ``--log-level`` nor
    #: ``QTASKS_LOG_LEVEL`` gives one. Set as a name (``"DEBUG"``) or a ``logging`` number, read as the number
    #: (``logging.INFO`` is 20), as QTasks reads it
    logs_default_level_server: int = logging.INFO
    #: QTasks ``logs_default_level_client``: the level of the ``qtasks_fast`` logger in a producer, applied once
    #: set (in code or by ``QTASKS_LOGS_DEFAULT_LEVEL_CLIENT``); left alone by default, so an app's own
    #: ``logging`` setup decides. A worker process uses the server level instead. Read as a number, as the server's
    logs_default_level_client: int = logging.INFO
    #: QTasks ``logs_format``: the ``logging`` format of the worker's lines (README "Logs" lists the extra
    #: record attributes: ``worker``, ``where``, ``task``, ``task_name``, ``task_id``)
    logs_format: str = "%(asctime)s %(levelname)s %(name)s [%(where)s] %(message)s"
    #: QTasks ``result_time_interval`` (seconds, > 0): there, how often a waiting ``SyncResult``/``AsyncResult``
    #: polls the storage. Here a wait is woken as soon as the record is final (results are pushed), so the
    #: bound it sets on how late a result is seen is always met: kept (and reported to ``subscribe``) for
    #: code that reads it, never slept on
    result_time_interval: float = 1.0

    def __new__(cls, *args: Any, **kwargs: Any) -> GlobalConfig:
        self = super().__new__(cls)
        names = [f.name for f in dataclasses.fields(cls) if f.init]
        object.__setattr__(self, "_passed", frozenset(names[:len(args)]) | kwargs.keys())
        return self

    def __post_init__(self) -> None:
        passed: frozenset[str] = getattr(self, "_passed", frozenset())
        sources: dict[str, str] = {}
        object.__setattr__(self, "_callbacks", [])
        object.__setattr__(self, "_warned_held", set())
        for name in passed:
            if name in self.__dataclass_fields__ and name not in _NOT_TYPED:  # those are checked below
                check_type(name, getattr(self, name))
        for f in dataclasses.fields(self):
            sources[f.name] = CODE if f.name in passed else DEFAULT
            if f.name in _NOT_FROM_ENV or f.name == "environ_prefix" or not _from_text(f):
                continue
            raw = os.environ.get(env_name(f.name, self.environ_prefix))
            if raw is None:
                continue
            object.__setattr__(self, f.name, self._parse(f.name, raw))
            sources[f.name] = "env " + env_name(f.name, self.environ_prefix)
        for qname, field in _QTASKS_NAMES.items():  # QTasks reads QTASKS_<ITS FIELD>: so do we, for its names
            self._env_alias(qname, field, sources)
        object.__setattr__(self, "_sources", sources)
        for name in _LEVELS:
            object.__setattr__(self, name, log_level_value(name, getattr(self, name)))
        if sources["logs_default_level_client"] != DEFAULT:
            logging.getLogger("qtasks_fast").setLevel(self.logs_default_level_client)
        if self.priority_levels < 1:
            raise ValueError("priority_levels must be at least 1")
        for name in ("socket_timeout", "connect_timeout"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 (no limit) or a positive number of seconds")
        positive_seconds("result_time_interval", self.result_time_interval)

    def _env_alias(self, qname: str, field: str, sources: dict[str, str]) -> None:
        """``QTASKS_MAX_TASKS_PROCESS`` (QTasks' name) sets ``concurrency`` as ``QTASKS_CONCURRENCY`` does; both set to
        different values is refused in one line rather than one silently winning."""
        var = env_name(qname, self.environ_prefix)
        raw = os.environ.get(var)
        if raw is None:
            return
        try:
            value = self._parse(field, raw)
        except BadSetting as exc:
            raise BadSetting(str(exc).replace(env_name(field, self.environ_prefix), var)) from None
        if sources[field].startswith("env ") and value != getattr(self, field):
            raise BadSetting(f"{var}={raw!r} and {sources[field][4:]}={getattr(self, field)!r} disagree (both set "
                             f"{field}): unset one of them")
        object.__setattr__(self, field, value)
        sources[field] = "env " + var

    def _parse(self, name: str, raw: str) -> object:
        """``raw`` as the field's type: its default's (``lease_seconds=60`` in code is still a float field)."""
        if name in _LEVELS:
            return log_level_value(env_name(name, self.environ_prefix), raw)
        default = self.__dataclass_fields__[name].default
        kind = type(getattr(self, name) if default is dataclasses.MISSING or default is None else default)
        if kind is bool:
            return parse_bool(name, raw)
        try:
            value = kind(raw)
        except ValueError:
            raise BadSetting(f"{env_name(name, self.environ_prefix)}={raw!r} is not a valid {kind.__name__}: fix or "
                             "unset it") from None
        least = _ENV_MIN.get(name)
        if least is not None and (value <= least if name in _ABOVE else value < least):
            bound = f"above {least:g}" if name in _ABOVE else f"at least {least:g}"
            raise BadSetting(f"{env_name(name, self.environ_prefix)}={raw!r} must be {bound}: fix or unset it")
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        """``app.config.x = v`` in code: recorded as code, and, by the one precedence, left under an
        environment variable or a flag that set ``x`` (the operator's value stays in force)."""
        sources: dict[str, str] | None = self.__dict__.get("_sources")
        if sources is None or name.startswith("_"):  # the dataclass __init__, or our own bookkeeping
            object.__setattr__(self, name, value)
            return
        if isinstance(getattr(type(self), name, None), property):  # a QTasks name of one of our fields
            if name in _QTASKS_NAMES:
                check_type(_QTASKS_NAMES[name], value, shown=name)
            object.__setattr__(self, name, value)
            if sources.get(_QTASKS_NAMES.get(name, name), CODE) == CODE:  # not held by the environment/a flag
                self._notify(name, getattr(self, name))  # QTasks' subscribers test the name they set
            return
        if name not in sources:
            raise AttributeError(_unknown(name, sources))
        if name in _LEVELS:
            value = log_level_value(name, value)
        elif name == "result_time_interval":
            positive_seconds(name, value)
        else:
            check_type(name, value)
        if sources[name] != DEFAULT and sources[name] != CODE:
            self._held(name, value, sources[name])
            return
        sources[name] = CODE
        object.__setattr__(self, name, value)
        if name == "logs_default_level_client":
            logging.getLogger("qtasks_fast").setLevel(value)
        self._notify(name, value)

    def _held(self, name: str, value: Any, source: str) -> None:
        """A value set in code under a field the environment or a flag holds: not applied (the one precedence),
        said once per field at WARNING, so code that sets it (and expects ``subscribe`` to hear) learns why."""
        warned: set[str] = self.__dict__["_warned_held"]
        if name not in warned:
            warned.add(name)
            logging.getLogger("qtasks_fast.config").warning(
                "config.%s = %r is not applied: %s holds it (a flag and the environment beat code); unset that to "
                "set it in code", name, value, source)

    def _notify(self, name: str, value: Any) -> None:
        for callback in list(self.__dict__.get("_callbacks", ())):
            callback(self, name, value)

    def subscribe(self, callback: Callable[[GlobalConfig, str, Any], None]) -> None:
        """QTasks ``config.subscribe``: call ``callback(config, field, value)`` after each field set in code
        (``app.config.x = v``; a field the environment or a flag holds is not changed, so not reported). A
        QTasks name of ours is reported as set, after our field: ``max_tasks_process`` after ``concurrency``."""
        self.__dict__["_callbacks"].append(callback)

    # --------------------------------------------- QTasks names of our fields (qtasks.configs.config)
    @property
    def max_tasks_process(self) -> int:
        """QTasks ``max_tasks_process`` (tasks run at once): our ``concurrency``, per worker process."""
        return self.concurrency

    @max_tasks_process.setter
    def max_tasks_process(self, value: int) -> None:
        self.concurrency = value

    @property
    def running_older_tasks(self) -> bool:
        """QTasks ``running_older_tasks``: always true here. Queued tasks survive a worker restart and a
        delivery whose worker died is taken over after its lease, so there is nothing to switch on; False
        cannot be honoured (nothing here drops queued work) and is refused."""
        return True

    @running_older_tasks.setter
    def running_older_tasks(self, value: bool) -> None:
        if not value:
            raise ValueError("config.running_older_tasks=False cannot be honoured: queued and interrupted tasks "
                             "always run here (at-least-once); purge a queue with app.purge(queue) instead")

    @property
    def result_statuses_end(self) -> list[str]:
        """QTasks ``result_statuses_end``: the statuses a task ends in, fixed here (:data:`STATUSES_END`)."""
        return list(STATUSES_END)

    @result_statuses_end.setter
    def result_statuses_end(self, value: list[str]) -> None:
        if sorted(value) != sorted(STATUSES_END):
            raise ValueError(f"config.result_statuses_end is fixed to {list(STATUSES_END)} here (a task's record "
                             f"is final in those only), not {list(value)!r}: remove the line")

    def __getstate__(self) -> dict[str, Any]:
        """A copy (``copy.copy``, pickle) gets its own record of sources, not a view of this one's."""
        state = dict(self.__dict__)
        state["_sources"] = dict(state.get("_sources", {}))
        state["_callbacks"] = list(state.get("_callbacks", []))
        return state

    def source(self, name: str) -> str:
        """Where field ``name`` got its value: ``"flag"``, ``"env QTASKS_<NAME>"``, ``"code"`` or ``"default"``."""
        sources: dict[str, str] = self.__dict__.get("_sources", {})
        return sources.get(name, DEFAULT)

    def set_from_flag(self, name: str, value: Any, source: str = FLAG) -> None:
        """A command-line flag's value for field ``name``: it beats the environment and code. ``source``: the
        CLI's own environment variable when it, not the flag, gave the value (``env QTASKS_LOG_LEVEL``)."""
        if name not in self.__dict__.get("_sources", {}):
            raise AttributeError(f"GlobalConfig has no field {name!r}")
        if name in _LEVELS:
            value = log_level_value(name, value)
        object.__setattr__(self, name, value)
        self.__dict__["_sources"][name] = source

    def server_log_level(self) -> int:
        """The worker's log level: ``QTASKS_LOG_LEVEL`` (the CLI's variable) when set, else
        ``logs_default_level_server`` (flag, its own env variable, code, default). ``qtasks-fast run`` records
        its flag here first, so one rule serves the CLI, ``app.run_forever()`` and ``app.run_worker()``."""
        raw = os.environ.get("QTASKS_LOG_LEVEL")
        if raw and self.source("logs_default_level_server") != FLAG:
            return log_level_value("QTASKS_LOG_LEVEL", raw)
        return self.logs_default_level_server


#: QTasks' name of one of our fields -> the field (its setter sets that one, which is reported under both names)
_QTASKS_NAMES = {"max_tasks_process": "concurrency"}

#: the fields holding a log level
_LEVELS = ("logs_default_level_server", "logs_default_level_client")
#: fields with a check of their own, which says more than :func:`check_type` (a level's names, positive seconds)
_NOT_TYPED = frozenset({*_LEVELS, "result_time_interval"})


def log_level_value(name: str, value: Any) -> int:
    """``value`` (a level name in any case, or a ``logging`` number) as the ``logging`` number QTasks' config
    holds (``"info"`` -> 20); a one-line ``BadSetting`` for anything else, at the moment it is set rather than
    when the worker starts logging."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    number = logging.getLevelName(value.strip().upper()) if isinstance(value, str) else None
    if isinstance(number, int):
        return number
    raise BadSetting(f"{name}={value!r} is not a log level: use DEBUG, INFO, WARNING, ERROR or CRITICAL")


def check_type(name: str, value: Any, shown: str | None = None) -> None:
    """Refuse, in one line naming the field and the type it takes, a value of field ``name`` of another type than
    its default's (``max_tasks_process = "abc"``, ``delete_finished_tasks = "no"``, which is truthy): when it is
    set, not as a traceback at the next ``add_task`` or as the opposite meaning. Fields holding objects are free."""
    default = GlobalConfig.__dataclass_fields__[name].default
    if isinstance(default, bool):
        ok, what = isinstance(value, bool), "True or False"
    elif isinstance(default, int):
        ok, what = isinstance(value, int) and not isinstance(value, bool), "an int"
    elif isinstance(default, float):
        ok, what = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
    elif isinstance(default, str):
        ok, what = isinstance(value, str), "a str"
    elif name == "task_default_decode":
        ok, what = value is None or callable(value), "a callable or None"
    else:
        return
    if not ok:
        raise BadSetting(f"config.{shown or name} must be {what}, not {value!r}")


def positive_seconds(name: str, value: Any) -> None:
    """Refuse, in one line, a ``value`` of field ``name`` that is not a number of seconds above 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"config.{name} must be a number of seconds above 0 (such as 0.1), not {value!r}")


def _from_text(f: dataclasses.Field[Any]) -> bool:
    """Whether field ``f`` can be read from an environment variable: a str, number or bool (not a callable)."""
    return isinstance(f.default, (str, int, float, bool))


def _unknown(name: str, sources: dict[str, str]) -> str:
    """The one-line error of ``app.config.<name> = ...`` for a field that does not exist."""
    if name in QTASKS_NOT_YET:
        return f"config.{name} (QTasks) is not honoured by qtasks_fast: {QTASKS_NOT_YET[name]}"
    close = difflib.get_close_matches(name, [*sources, "max_tasks_process", "running_older_tasks",
                                             "result_statuses_end"], n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"GlobalConfig has no field {name!r}: {hint}the fields are listed by `qtasks-fast -A app info`"


def effective_prefetch(concurrency: int, prefetch: int) -> int:
    """How many messages a worker holds beyond ``concurrency``: ``prefetch`` capped at ``concurrency``, and
    ``concurrency`` itself for ``-1`` (it follows concurrency). The worker and ``inspect`` both use this."""
    return concurrency if prefetch < 0 else min(concurrency, prefetch)
