"""Plugins (QTasks ``BasePlugin``): code called by name at fixed points of the worker, producer, broker and storage.

    class Audit(BasePlugin):
        async def trigger(self, name, **kw):
            if name == "task_before_execute":
                return {"args": [a.strip() for a in kw["args"]]}   # replaces the call's arguments

    app.add_plugin(Audit(), trigger_names=["task_before_execute", "task_after_execute"], component="worker")

A plugin listens to trigger names of one component (``trigger_names=None``: every trigger of it,
QTasks' ``Globals``). ``trigger`` is async or sync, gets keyword arguments and may return a dict
of replacements (only for the triggers that take some, see :data:`REPLACES`); the next plugin of
the same trigger sees the replaced values. Triggers and their keyword arguments:

- worker: ``worker_start`` / ``worker_stop`` (``worker``), ``task_before_execute`` (``ctx``, ``task``,
  ``task_name``, ``uuid``, ``args``, ``kwargs``; replaces ``args``, ``kwargs``), ``task_after_execute``
  (``ctx``, ``task``, ``task_name``, ``uuid``, ``status``, ``result``), ``task_plugin_error`` (``ctx``, ``task``,
  ``task_name``, ``uuid``, ``e``: the ``ctx.plugin_error`` exception; ``{"result": v}`` makes ``v`` the result);
  each task trigger also passes QTasks' names ``task_func`` (= ``task``) and ``task_broker`` (the envelope)
- producer: ``task_before_enqueue`` (``app``, ``envelope``; replaces ``envelope``, ``args``, ``kwargs``,
  ``priority``, ``task_name``, and ``extra``: a dict merged into the envelope's ``meta``), ``task_after_enqueue``
  (``app``, ``envelope``)
- broker: ``broker_start`` / ``broker_stop`` (``broker``, ``worker``), fired by each worker process
- storage: ``storage_save`` (``storage``, ``outcomes``, ``worker``): after each batch of results is stored

Cost: none for a trigger nobody listens to. The worker looks its triggers up once when it starts;
the per-task triggers run as a middleware that :meth:`Plugins.add` installs with the first plugin
listening to one of them (so only then do tasks take the worker's hooked path). A failing plugin is
logged and skipped, except in ``task_before_execute`` (the task fails with its error, as a
middleware's ``before_execute``) and ``task_before_enqueue`` (``add_task`` raises).

QTasks' trigger names (``task_executor_before_execute``, ``broker_add_before``, ...) are accepted where one
of ours fires at the same point, and the plugin is called with the QTasks name, with QTasks' keyword arguments
beside ours and its returned QTasks keys read as ours (:mod:`qtasks_fast.plugins.qtasks_kw`); the others are
refused naming our closest trigger (:mod:`qtasks_fast.plugin_names`, docs/from-qtasks.md).

``start``/``stop`` of every plugin are awaited by each worker process around serving (before
``worker_start``, after ``worker_stop``); a producer never calls them.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Generator, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from qtasks_fast import plugin_names
from qtasks_fast.exceptions import TaskPluginTriggerError
from qtasks_fast.log import get_logger
from qtasks_fast.middleware import Middleware
from qtasks_fast.plugins.qtasks_kw import our_keys, qtasks_kwargs

if TYPE_CHECKING:
    from qtasks_fast.schemas import Envelope
    from qtasks_fast.worker.context import ExecContext

log = get_logger("plugins")

#: every trigger name, per component
TRIGGERS: dict[str, tuple[str, ...]] = {
    "worker": ("worker_start", "worker_stop", "task_before_execute", "task_after_execute", "task_plugin_error"),
    "producer": ("task_before_enqueue", "task_after_enqueue"),
    "broker": ("broker_start", "broker_stop"),
    "storage": ("storage_save",),
}
#: what a plugin may replace by returning ``{key: value}``, per trigger (other triggers: nothing)
REPLACES: dict[str, frozenset[str]] = {
    "task_before_execute": frozenset({"args", "kwargs"}),
    "task_before_enqueue": frozenset({"envelope", "args", "kwargs", "priority", "task_name", "extra"}),
    "task_plugin_error": frozenset({"result"}),
}


class BasePlugin:
    """Base class of a plugin: override :meth:`trigger` (and :meth:`start`/:meth:`stop` if it holds resources)."""

    def __init__(self, name: str | None = None) -> None:
        self.name = name or type(self).__name__

    async def start(self, **kwargs: Any) -> None:
        """A worker process starts serving (``worker=``); open what :meth:`trigger` needs."""

    async def stop(self, **kwargs: Any) -> None:
        """The worker process stops (``worker=``)."""

    def trigger(self, name: str, **kwargs: Any) -> dict[str, Any] | None | Awaitable[dict[str, Any] | None]:
        """Called at trigger ``name``; may be ``async def``. Return replacements (see :data:`REPLACES`) or None."""
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class Plugins:
    """``app.plugins``: the plugins listening to each trigger name. Falsy while empty."""

    def __init__(self) -> None:
        self.by_trigger: dict[str, list[BasePlugin]] = {}
        #: ``(id(plugin), our trigger) -> QTasks name`` for a plugin registered by a QTasks name: it is called so
        self.called_as: dict[tuple[int, str], str] = {}

    def __bool__(self) -> bool:
        return bool(self.by_trigger)

    def add(self, plugin: BasePlugin, trigger_names: Sequence[str] | None, component: str | None) -> list[str]:
        """Register ``plugin`` for ``trigger_names`` of ``component`` (None: all of them); returns our names.

        A QTasks trigger name is registered at our trigger of the same meaning and the plugin is called with
        the QTasks name (:mod:`qtasks_fast.plugin_names`); ``component`` may then be QTasks' (``"broker"`` for
        ``broker_add_before``) or None, as the name alone says where it fires."""
        if component == "global_config":  # QTasks' GlobalConfig component: its names are refused one by one below
            component = None
        if component is not None and component not in TRIGGERS:
            raise ValueError(f"add_plugin: no component {component!r}; components are {', '.join(TRIGGERS)}")
        if not isinstance(plugin, BasePlugin):
            raise TypeError(f"add_plugin: {plugin!r} is not a plugin (subclass qtasks_fast.plugins.BasePlugin)")
        if isinstance(trigger_names, str):
            raise TypeError(f"add_plugin: trigger_names must be a list of names, not the string {trigger_names!r}")
        #: QTasks' names a plugin of ours for a QTasks plugin serves, and our trigger it is registered at for
        #: them (``served_at``): ``worker_start`` for the default plugins, which plug themselves into the
        #: worker then (plugins.runtime.RuntimePlugin); the test plugin's is ``task_before_enqueue``
        if getattr(plugin, "serves_from_start", False):  # a server plugin: the names choose nothing (QTasks: any)
            trigger_names, component = ["worker_start"], "worker"
        served: frozenset[str] = getattr(plugin, "served_triggers", frozenset())
        served_at: str = getattr(plugin, "served_at", "worker_start")
        if served and trigger_names is None:
            trigger_names = sorted(served)
        known = TRIGGERS[component or "worker"]
        asked = list(known) if trigger_names is None else list(trigger_names)
        ours = {n: served_at for n in asked if n in served}
        ours.update({n: n for n in asked if n not in ours and (
            n in known or (component is None and any(n in ns for ns in TRIGGERS.values())))})
        for n in asked:
            if n in ours:
                continue
            if n in plugin_names.ALIASES:
                ours[n] = plugin_names.ALIASES[n][1]
            elif plugin_names.refusal(n):
                raise ValueError(plugin_names.refusal(n))
        unknown = [n for n in asked if n not in ours]
        if unknown:
            elsewhere = {n: c for c, ns in TRIGGERS.items() for n in ns if n in unknown}
            hint = "".join(f"; {n!r} is a trigger of component={c!r}" for n, c in elsewhere.items())
            if component is None:
                raise ValueError(f"add_plugin: no component has a trigger {', '.join(map(repr, unknown))}; the "
                                 f"triggers are {', '.join(n for ns in TRIGGERS.values() for n in ns)}")
            raise ValueError(f"add_plugin: component {component!r} has no trigger {', '.join(map(repr, unknown))}; "
                             f"its triggers are {', '.join(known)}{hint}")
        for asked_name, n in ours.items():
            listeners = self.by_trigger.setdefault(n, [])
            if plugin not in listeners:
                listeners.append(plugin)
                if asked_name != n:
                    self.called_as[(id(plugin), n)] = asked_name
        return list(dict.fromkeys(ours.values()))

    def get(self, name: str) -> list[BasePlugin] | None:
        """The listeners of ``name``, or None: what a component looks up once, at setup."""
        return self.by_trigger.get(name)

    def all(self) -> list[BasePlugin]:
        """Every registered plugin once, in registration order."""
        seen: dict[int, BasePlugin] = {}
        for listeners in self.by_trigger.values():
            for p in listeners:
                seen.setdefault(id(p), p)
        return list(seen.values())

    def _calls(self, name: str, strict: bool, kw: dict[str, Any]) -> Generator[Awaitable[Any], Any, dict[str, Any]]:
        """The listeners of ``name`` in order, as steps: yields each async result to be awaited (its value or
        error is sent back in); returns the replaced keyword arguments. One loop for :meth:`fire` and
        :meth:`fire_sync`, which differ only in how they await."""
        changed: dict[str, Any] = {}
        for plugin in self.by_trigger.get(name, ()):
            called = self.called_as.get((id(plugin), name), name)
            try:
                res = plugin.trigger(called, **(kw if called is name else qtasks_kwargs(called, name, kw)))
                if inspect.isawaitable(res):
                    res = yield res
                if called is not name:
                    res = our_keys(called, name, res)
                _apply(plugin, name, res, kw, changed)
            except Exception:
                if strict:
                    raise
                log.exception("plugin %r failed at trigger %r", plugin, name)
        return changed

    async def fire(self, name: str, strict: bool = False, **kw: Any) -> dict[str, Any]:
        """Call the listeners of ``name`` in order; returns the replaced keyword arguments (``{}``: none).

        ``strict``: a plugin's exception propagates; otherwise it is logged and the next plugin runs.
        """
        steps = self._calls(name, strict, kw)
        try:
            pending = next(steps)
            while True:
                try:
                    value = await pending
                except Exception as exc:  # noqa: BLE001 - handed to the plugin loop, which decides
                    pending = steps.throw(exc)
                else:
                    pending = steps.send(value)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    def fire_sync(self, name: str, strict: bool = False, **kw: Any) -> dict[str, Any]:
        """:meth:`fire` from sync code (the producer): an async ``trigger`` runs on the portal's loop thread."""
        steps = self._calls(name, strict, kw)
        try:
            pending = next(steps)
            while True:
                from qtasks_fast.portal import portal

                try:
                    value = portal().run(_await(pending))
                except Exception as exc:  # noqa: BLE001 - handed to the plugin loop, which decides
                    pending = steps.throw(exc)
                else:
                    pending = steps.send(value)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]


async def _await(aw: Awaitable[Any]) -> Any:
    return await aw


def _apply(plugin: BasePlugin, name: str, res: Any, kw: dict[str, Any], changed: dict[str, Any]) -> None:
    """Fold a plugin's replacements into ``kw`` (what the next plugin sees) and ``changed``."""
    if res is None:
        return
    allowed = REPLACES.get(name, frozenset())
    if not isinstance(res, dict) or not set(res) <= allowed:
        what = f"a dict with keys from {sorted(allowed)}" if allowed else "None (this trigger replaces nothing)"
        raise TypeError(f"plugin {plugin!r} returned {res!r} from trigger {name!r}; it must return {what} or None")
    kw.update(res)
    changed.update(res)


# ------------------------------------------------------------------ per-task triggers as middlewares
def qtasks_names(ctx: ExecContext) -> dict[str, Any]:
    """QTasks' keyword names of a task trigger's arguments, passed too: a plugin written for QTasks reads
    ``kwargs["task_func"]`` (the task: its ``extra`` holds the task's other ``@app.task`` options) and
    ``kwargs["task_broker"]`` (the call: here the envelope, with ``task_name``, ``uuid``, ``args``, ``kwargs``)."""
    return {"task_func": ctx.task, "task_broker": ctx.envelope}


class _BeforeExecute(Middleware):
    """Fires ``task_before_execute``; installed with the first plugin listening to it."""

    def __init__(self, plugins: Plugins) -> None:
        self.plugins = plugins

    async def before_execute(self, ctx: ExecContext) -> None:
        changed = await self.plugins.fire("task_before_execute", strict=True, ctx=ctx, task=ctx.task,
                                          task_name=ctx.task_name, uuid=ctx.uuid, args=ctx.args, kwargs=ctx.kwargs,
                                          **qtasks_names(ctx))
        if "args" in changed:
            ctx.args = list(changed["args"])
        if "kwargs" in changed:
            ctx.kwargs = dict(changed["kwargs"])


class _AfterExecute(Middleware):
    """Fires ``task_after_execute``; installed with the first plugin listening to it."""

    def __init__(self, plugins: Plugins) -> None:
        self.plugins = plugins

    async def after_execute(self, ctx: ExecContext, status: str, result: Any) -> None:
        await self.plugins.fire("task_after_execute", ctx=ctx, task=ctx.task, task_name=ctx.task_name,
                                uuid=ctx.uuid, status=status, result=result, **qtasks_names(ctx))


class _PluginError(Middleware):
    """Fires ``task_plugin_error`` (``e``: the task's ``TaskPluginTriggerError``, from ``ctx.plugin_error``): a
    returned ``{"result": value}`` ends the task with success and that result; none: it fails with ``e``."""

    def __init__(self, plugins: Plugins) -> None:
        self.plugins = plugins

    async def recover(self, ctx: ExecContext, exc: Exception) -> Any:
        if not isinstance(exc, TaskPluginTriggerError):
            raise exc
        changed = await self.plugins.fire("task_plugin_error", strict=True, ctx=ctx, task=ctx.task,
                                          task_name=ctx.task_name, uuid=ctx.uuid, e=exc, result=None,
                                          **qtasks_names(ctx))
        if "result" not in changed:
            raise exc
        return changed["result"]


class _BeforeEnqueue(Middleware):
    def __init__(self, plugins: Plugins) -> None:
        self.plugins = plugins

    def before_enqueue(self, app: Any, envelope: Envelope) -> Envelope:
        changed = self.plugins.fire_sync("task_before_enqueue", strict=True, app=app, envelope=envelope)
        env = changed.pop("envelope", envelope)
        if "extra" in changed:  # QTasks' extra fields of the call: kept in the envelope's meta for the worker side
            extra = changed.pop("extra")
            if extra:
                changed["meta"] = {**env.meta, **dict(extra)}
        prio = changed.get("priority")
        if prio is not None and (type(prio) is not int or not 0 <= prio < app.config.priority_levels):
            from qtasks_fast.components.producer import priority_level

            changed["priority"] = priority_level(prio, app.config.priority_levels, env.task_name)
        if changed:
            env = msgspec.structs.replace(env, **{k: list(v) if k == "args" else v for k, v in changed.items()})
        return env  # type: ignore[no-any-return]


class _AfterEnqueue(Middleware):
    def __init__(self, plugins: Plugins) -> None:
        self.plugins = plugins

    def after_enqueue(self, app: Any, envelope: Envelope) -> None:
        self.plugins.fire_sync("task_after_enqueue", app=app, envelope=envelope)


#: trigger name -> the middleware class that fires it
TASK_TRIGGER_MIDDLEWARES: dict[str, type[_BeforeExecute | _AfterExecute | _PluginError | _BeforeEnqueue
                                          | _AfterEnqueue]] = {
    "task_before_execute": _BeforeExecute, "task_after_execute": _AfterExecute, "task_plugin_error": _PluginError,
    "task_before_enqueue": _BeforeEnqueue, "task_after_enqueue": _AfterEnqueue,
}


def add_plugin(app: Any, plugin: BasePlugin, trigger_names: Iterable[str] | None,
               component: str | None) -> BasePlugin:
    """``app.add_plugin``: register, and install the middleware of each per-task trigger on first use."""
    plugins: Plugins = app.plugins
    before = set(plugins.by_trigger)
    if trigger_names is not None and not isinstance(trigger_names, str):
        trigger_names = list(trigger_names)
    names = plugins.add(plugin, trigger_names, component)  # type: ignore[arg-type]
    for n in names:
        mw = TASK_TRIGGER_MIDDLEWARES.get(n)
        if mw is not None and n not in before:
            app.add_middleware(mw(plugins), position="before")
    return plugin
