"""QTasks' keyword arguments for a plugin registered by a QTasks trigger name, and QTasks' keys of what it returns.

A plugin written for QTasks reads the keywords QTasks passes at its trigger (``kwargs["kw"]`` at
``task_executor_args_replace``, ``kwargs["args"]`` and ``kwargs["qtasks"]`` at ``qtasks_add_task_before_broker``)
and returns QTasks' keys (``{"kw": ...}``, ``{"task_name": ...}``, ``{"model": ...}``). Such a plugin is called
with ours *and* QTasks' (:func:`qtasks_kwargs`), and its returned keys are read as ours (:func:`our_keys`). Why
here and not in every trigger: only a plugin registered by a QTasks name pays for it (the lookup is per call of
that plugin), so our own triggers keep their cost.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Callable
from typing import Any

from qtasks_fast.log import get_logger

log = get_logger("plugins")


@dataclasses.dataclass
class ArgMeta:
    """QTasks' ``qtasks.schemas.argmeta.ArgMeta``: one argument of the call and its annotation, as QTasks'
    ``task_executor_args_replace`` passes them in ``args_info``."""

    name: str
    value: Any
    origin: type | None
    raw_type: type | None
    annotation: Any
    is_kwarg: bool
    index: int | None = None
    key: str | None = None


def args_info(task: Any, args: list[Any], kwargs: dict[str, Any]) -> list[ArgMeta]:
    """QTasks' ``args_info``: positionals by the function's parameter order, then the keywords."""
    func = getattr(task, "func", None)
    sig = getattr(task, "_sig", None)
    names = list(sig.parameters) if sig is not None else []
    try:
        hints = typing.get_type_hints(func) if func is not None else {}
    except Exception:  # noqa: BLE001 - unresolvable hints: names only
        hints = {}
    out = []
    for i, value in enumerate(args):
        name = names[i] if i < len(names) else f"arg{i}"
        ann = hints.get(name)
        out.append(
            ArgMeta(name, value, typing.get_origin(ann), ann if isinstance(ann, type) else None, ann, False, index=i)
        )
    for key, value in kwargs.items():
        ann = hints.get(key)
        out.append(
            ArgMeta(key, value, typing.get_origin(ann), ann if isinstance(ann, type) else None, ann, True, key=key)
        )
    return out


def _enqueue(kw: dict[str, Any], after: bool) -> dict[str, Any]:
    env, app = kw["envelope"], kw["app"]
    kwargs = dict(kw.get("kwargs", env.kwargs))
    return {
        "qtasks": app,
        "broker": app.broker,
        "task_name": kw.get("task_name", env.task_name),
        "priority": kw.get("priority", env.priority),
        "args": tuple(kw.get("args", env.args)),
        "kwargs" if after else "kw": kwargs,
    }


def _model(kw: dict[str, Any]) -> Any:
    from qtasks_fast.schemas.task_status import TaskStatusProcessSchema

    env = kw["envelope"] if "envelope" in kw else kw["task_broker"]
    return TaskStatusProcessSchema(
        task_name=env.task_name,
        priority=env.priority,
        args=json.dumps(list(kw.get("args", env.args)), default=str),
        kwargs=json.dumps(kw.get("kwargs", env.kwargs), default=str),
        created_at=env.created_at,
    )


def _executor(kw: dict[str, Any]) -> dict[str, Any]:
    return {"task_executor": kw["ctx"]}


def _args_replace(kw: dict[str, Any]) -> dict[str, Any]:
    args_meta = args_info(kw["task"], kw["args"], kw["kwargs"])
    return {"task_executor": kw["ctx"], "kw": kw["kwargs"], "args_info": args_meta}


def _worker(kw: dict[str, Any]) -> dict[str, Any]:
    return {"worker": getattr(kw["task"].app, "worker", None), "model": _model(kw)}


#: QTasks trigger -> the keyword arguments QTasks passes there that ours lack (added to ours, which stay)
INPUTS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "qtasks_add_task_before_broker": lambda kw: _enqueue(kw, after=False),
    "qtasks_add_task_after_broker": lambda kw: _enqueue(kw, after=True),
    "task_executor_args_replace": _args_replace,
    "task_executor_before_execute": _executor,
    "task_executor_after_execute": _executor,
    "worker_execute_before": _worker,
    "worker_execute_after": _worker,
}

#: QTasks trigger -> its returned keys read as ours; a key mapped to None is QTasks' and has no meaning here (a
#: record ``model`` the worker writes itself): dropped, said once per trigger at WARNING
OUTPUTS: dict[str, dict[str, str | None]] = {
    "qtasks_add_task_before_broker": {"kw": "kwargs"},
    "task_executor_args_replace": {"kw": "kwargs"},
    "worker_execute_before": {"model": None},
}
_said: set[str] = set()


def _aliased(called: str, name: str) -> bool:
    """Whether our trigger ``name`` fires for QTasks' ``called`` (not a plugin of ours serving that QTasks name
    from another trigger, such as ``worker_start``)."""
    from qtasks_fast.plugin_names import ALIASES

    return called in ALIASES and ALIASES[called][1] == name


def qtasks_kwargs(called: str, name: str, kw: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments for a plugin called by the QTasks name ``called`` at our ``name``: ours, plus QTasks'."""
    add = INPUTS.get(called)
    return kw if add is None or not _aliased(called, name) else {**kw, **add(kw)}


def our_keys(called: str, name: str, res: Any) -> Any:
    """A QTasks plugin's returned dict with QTasks' keys read as ours (``kw`` -> ``kwargs``); keys with no meaning
    here are dropped, and said once."""
    renames = OUTPUTS.get(called)
    if renames is None or not isinstance(res, dict) or not _aliased(called, name):
        return res
    out = {}
    for k, v in res.items():
        ours = renames.get(k, k)
        if ours is None:
            if called not in _said:
                _said.add(called)
                log.warning(
                    "a plugin at %r returned %r: the worker writes the task's record itself here, so it is "
                    'not applied (docs/from-qtasks.md "Plugin trigger names")',
                    called,
                    k,
                )
            continue
        out[ours] = v
    return out
