"""Finds the app object from ``-A``: ``module``, ``module:attr`` or ``module.attr`` (as QTasks).

``module:factory`` naming a function is called with no arguments and must return the app, as QTasks'
``get_app`` does (an app-factory layout ports unchanged); each process that loads the spec calls it once (the
CLI, and an ``executor="process"`` task's child, which loads ``_import_spec``).

The app found is given ``app._import_spec = "module:attr"``: how another process (the children of
``executor="process"``) imports the very same app.
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
import types
from typing import Any

from qtasks_fast.app import BaseQueueTasks
from qtasks_fast.config import BadSetting


class AppLoadError(Exception):
    """The ``-A`` target could not be imported or holds no app; the message says what to fix."""


def load_app(spec: str) -> BaseQueueTasks:
    app, exact = _find(spec)
    app._import_spec = exact  # type: ignore[attr-defined]
    return app


def _find(spec: str) -> tuple[BaseQueueTasks, str]:
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like celery/uvicorn: the app usually lives in the current dir
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or module_name
        if missing != module_name and not module_name.startswith(missing + "."):
            # the app's module was found; a module it imports was not: no directory or -A fixes that
            raise AppLoadError(f"importing app module {module_name!r} failed: {exc}, which it imports: install it "
                               f"in the environment of {sys.executable}") from exc
        if attr or "." not in module_name or exc.name != module_name:
            raise AppLoadError(f"cannot import app module {module_name!r}: {exc}. "
                               "Run from the directory that contains it, or fix -A / QTASKS_APP.") from exc
        module_name, _, attr = module_name.rpartition(".")
        try:
            module = importlib.import_module(module_name)
        except Exception as exc2:
            raise AppLoadError(f"cannot import app module {module_name!r}: {exc2}") from exc2
    except BadSetting as exc:  # already one line that names the variable and what to do
        raise AppLoadError(f"{exc} (read while importing {module_name!r})") from exc
    except Exception as exc:
        raise AppLoadError(f"importing app module {module_name!r} failed: {type(exc).__name__}: {exc}") from exc
    found = [(k, v) for k, v in vars(module).items() if isinstance(v, BaseQueueTasks)]
    apps = f"its app{'s' if len(found) > 1 else ''}: {', '.join(k for k, _ in found)}" if found else "it has no app"
    if attr:
        obj: Any = module
        owner = f"module {module_name}"
        for part in attr.split("."):
            if not hasattr(obj, part):
                close = difflib.get_close_matches(part, [k for k, _ in found] or dir(obj), n=1)
                hint = f" (did you mean -A {module_name}:{close[0]}?)" if close and obj is module else ""
                raise AppLoadError(f"{owner} has no attribute {part!r}{hint}; {apps}")
            obj = getattr(obj, part)
            owner = f"{module_name}:{part}" if owner.startswith("module ") else f"{owner}.{part}"
        if isinstance(obj, types.FunctionType):
            obj = _call_factory(obj, f"{module_name}:{attr}")
        if not isinstance(obj, BaseQueueTasks):
            raise AppLoadError(f"{module_name}:{attr} is a {type(obj).__name__}, not a QueueTasks app: name the app "
                               f"object with -A {module_name}:NAME ({apps})")
        return obj, f"{module_name}:{attr}"
    preferred = getattr(module, "app", None)
    if isinstance(preferred, BaseQueueTasks):
        return preferred, f"{module_name}:app"
    if len(found) == 1:
        return found[0][1], f"{module_name}:{found[0][0]}"
    raise AppLoadError(f"module {module_name!r} has {len(found)} QueueTasks apps; name one with -A {module_name}:NAME")


def _call_factory(factory: types.FunctionType, spec: str) -> Any:
    """QTasks' app factory (``get_app``: ``app() if isinstance(app, FunctionType)``): its app, or one line saying
    why there is none."""
    try:
        made = factory()
    except Exception as exc:
        raise AppLoadError(f"app factory {spec}() failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(made, BaseQueueTasks):
        raise AppLoadError(f"app factory {spec}() returned a {type(made).__name__}, not a QueueTasks app: return the "
                           "app from it, or name the app object with -A module:NAME")
    return made
