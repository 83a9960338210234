"""QTasks' ``qtasks.stats.inspect.InspectStats``: what ``SyncStats(app).inspect()`` returns, over
:mod:`qtasks_fast.control`'s inspect data.

    stats = SyncStats(app).inspect()          # AsyncStats(app): await stats.inspect()
    print(stats.app())                        # label: value lines; stats.app(json=True): a JSON string
    print(stats.task("add"), stats.tasks())   # one task / every task (or the ones named)

Why over ``control``: ``qtasks-fast inspect`` already knows what the app is (tasks with their options,
config, queues) and what the broker says about the fleet (per queue: waiting, in flight, delayed, dead;
the live workers). ``inspect()`` reads the fleet once, so the returned object is a snapshot, and a
broker that cannot answer leaves those rows ``unknown`` with the reason in ``Notes``.
"""

from __future__ import annotations

import inspect as _inspect
import json as _json
from typing import Any

from qtasks_fast import control

#: label column width of the text output (QTasks' layout)
LABEL_WIDTH = 26
RULE = "-" * 50


class InspectStats:
    """A snapshot of the app and its fleet, rendered as QTasks' ``InspectStats`` renders it."""

    def __init__(self, app: Any, fleet: dict[str, Any] | None = None) -> None:
        self._app = app
        self._fleet = fleet or {"queue_stats": None, "workers": None, "notes": []}

    def app(self, json: bool = False) -> str:
        """The app: name, client, version, config, counts, backend, and the fleet's queues and workers."""
        app, fleet = self._app, self._fleet
        ev = getattr(app, "events", None)
        from qtasks_fast import __version__  # here: the package imports this module

        global_config = getattr(app.storage, "global_config", None)
        # QTasks' keys in QTasks' order (a dashboard parsing its JSON finds them), then ours
        info: dict[str, Any] = {
            "Name": app.name,
            "Method": "async" if app.is_async else "sync",
            "Version": app.version or __version__,
            "Config": str(app.config),
            "Tasks Count": len(app.tasks),
            "Routers Count": len(app.routers),
            "Plugins Count": len({id(p) for ps in app.plugins.by_trigger.values() for p in ps}),
            "Broker": type(app.broker).__name__,
            "Worker": type(app.worker).__name__ if app.worker is not None else "—",
            "Starter": "—",  # no starter object here: `qtasks-fast run` / run_forever start the workers
            "Storage": type(app.storage).__name__,
            "GlobalConfig": type(global_config).__name__ if global_config else "—",
            "Log": type(app.log).__name__,
            "Init Count": sum(len(hs) for hs in getattr(ev, "handlers", {}).values()),
            "Queues": app.queues,
            "Queue Stats": fleet["queue_stats"] if fleet["queue_stats"] is not None else "unknown",
            "Workers": fleet["workers"] if fleet["workers"] is not None else "unknown",
        }
        if fleet["notes"]:
            info["Notes"] = "; ".join(fleet["notes"])
        if json:
            return _json.dumps(info, ensure_ascii=False, indent=2, default=str)
        return _block(info) + "\n" + RULE

    def task(self, task_name: str, json: bool = False) -> str:
        """One task (``TaskNotFound`` naming the registered ones when it is not in the app)."""
        return self._render([self._app.get_task(task_name)], json, one=True)

    def tasks(self, *tasks: str, json: bool = False) -> str:
        """The tasks named (every task when none is named)."""
        funcs = [self._app.get_task(t) for t in tasks] if tasks else list(self._app.tasks.values())
        return self._render(funcs, json)

    def _render(self, funcs: list[Any], json: bool, one: bool = False) -> str:
        infos = [_task_info(tf) for tf in funcs]
        if json:
            return _json.dumps(infos[0] if one else infos, ensure_ascii=False, indent=2, default=str)
        return "\n".join(f"{_block(_task_lines(i))}\n{RULE}" for i in infos) or "No registered tasks."


#: the keys of QTasks' task JSON (``asdict`` of its ``TaskExecSchema``), in its order
QTASKS_TASK_KEYS = ("priority", "name", "func", "awaiting", "generating", "echo", "max_time", "retry", "retry_on_exc",
                    "decode", "tags", "description", "generate_handler", "executor", "middlewares_before",
                    "middlewares_after", "extra")


def _task_info(tf: Any) -> dict[str, Any]:
    """QTasks' keys first (``func`` is the function's dotted name, as our ``function``), then ours."""
    ours = control.task_info(tf)
    ours["func"] = ours["function"]
    ours["awaiting"], ours["generating"], ours["extra"] = tf.awaiting, tf.generating, dict(tf.extra)
    info = {key: ours.pop(key, None) for key in QTASKS_TASK_KEYS}
    info.update(ours)
    info["args"], info["kwargs"] = _signature(tf.func)
    return info


def _task_lines(info: dict[str, Any]) -> dict[str, Any]:
    out = {"Task name": info["name"], "Priority": info.get("priority"),
           "Description": info.get("description") or "—", "Tags": ", ".join(info.get("tags") or ()) or "—",
           "Kind": info["kind"], "Task Self": info.get("echo"), "Queue": info.get("queue"),
           "Executor": info.get("executor"), "Args": ", ".join(info["args"]) or "—",
           "Kwargs": ", ".join(f"{k}={v}" for k, v in info["kwargs"].items()) or "—"}
    for key, label in (("retry", "Retry Count"), ("retry_on_exc", "Retry on Exception"), ("max_time", "Max Time"),
                       ("decode", "Decode"), ("generate_handler", "Generator"),
                       ("middlewares_before", "Middlewares Before"), ("middlewares_after", "Middlewares After")):
        if info.get(key):
            out[label] = info[key]
    return out


def _signature(func: Any) -> tuple[list[str], dict[str, Any]]:
    """The positional parameters (``name: type``) and those with defaults, as QTasks lists them."""
    args: list[str] = []
    kwargs: dict[str, Any] = {}
    try:
        params = _inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return args, kwargs
    for p in params:
        ann = p.annotation
        typ = "" if ann is p.empty else f": {ann.__name__ if isinstance(ann, type) else ann}"
        if p.kind is p.VAR_POSITIONAL:
            args.append(f"*{p.name}")
        elif p.kind is p.VAR_KEYWORD:
            kwargs[f"**{p.name}"] = "..."
        elif p.default is p.empty and p.kind is not p.KEYWORD_ONLY:
            args.append(f"{p.name}{typ}")
        else:
            kwargs[f"{p.name}{typ}"] = "required" if p.default is p.empty else p.default
    return args, kwargs


def _block(info: dict[str, Any]) -> str:
    return "\n".join(f"{label:<{LABEL_WIDTH}}: {value}" for label, value in info.items())


__all__ = ["InspectStats"]

#: QTasks imports classes from modules below this one (qtasks_fast.qtasks_paths): a package for the import system
__path__: list[str] = []
