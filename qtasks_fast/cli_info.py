"""``qtasks-fast [-A app] info``: the install (versions, compiled core, uvloop) and, given an app, each
setting in force and where it came from.

Settings follow one precedence (README "Configuration"): a command-line flag, then the environment
(``QTASKS_*``), then code, then the default. When a fleet does not behave as its code says, the
question is which of these won; this table answers it without reading the code or the environment
of the process: every ``GlobalConfig`` field, the broker URL (redacted) and, for the embedded
backend, the SQLite file, each with its source (``flag``, ``env QTASKS_X``, ``code``, ``default``).
Nothing is connected or created: ``info`` only reads.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qtasks_fast.app import BaseQueueTasks


def versions() -> dict[str, object]:
    """The versions of qtasks_fast and its dependencies, and whether the compiled core and uvloop are in use."""
    import importlib.metadata as md
    import platform

    from qtasks_fast import __version__
    from qtasks_fast._corelib import COMPILED, compiled, core

    hot = {"qtasks_fast._core": COMPILED, **{name: compiled(name) for name in (
        "qtasks_fast.backends.redis._pack", "qtasks_fast.worker._run")}}

    def version(dist: str) -> str | None:
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return None

    try:
        import uvloop  # noqa: F401

        has_uvloop = True
    except ImportError:
        has_uvloop = False
    return {
        "qtasks_fast": __version__,
        "python": platform.python_version(),
        # true only when every hot module is compiled: the decoder, the Redis packing and the worker's run loop
        "compiled_core": all(hot.values()),
        "compiled_modules": hot,
        "core_module": getattr(core, "__file__", "?"),
        "uvloop": has_uvloop,
        "msgspec": version("msgspec"),
        "redis": version("redis"),
        "hiredis": version("hiredis"),
        "psutil": version("psutil"),
        "cpus": os.cpu_count(),
    }


def settings(app: BaseQueueTasks) -> dict[str, dict[str, Any]]:
    """``{setting: {"value": ..., "source": ...}}``: the broker URL (redacted), the embedded SQLite file
    when the broker is SQLite, then every ``GlobalConfig`` field."""
    from qtasks_fast.url import redact

    url, source = app.broker_source()
    out: dict[str, dict[str, Any]] = {
        "broker_url": {"value": redact(url) if url else "(embedded SQLite)" if source == "default" else None,
                       "source": source}}
    sqlite = app.sqlite_source()
    if sqlite is not None:
        out["sqlite_path"] = {"value": os.path.abspath(sqlite[0]), "source": sqlite[1]}
    config = app.config
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if not isinstance(value, (str, int, float, bool, type(None))):
            value = type(value).__name__  # an object (a task manager): named, not dumped
        elif f.name.startswith("logs_default_level_") and isinstance(value, int):
            name = logging.getLevelName(value)  # config reads 20 (as QTasks); an operator reads and sets INFO
            value = value if name.startswith("Level") else name
        out[f.name] = {"value": value, "source": config.source(f.name)}
    return out


def info_dict(app: BaseQueueTasks | None = None) -> dict[str, object]:
    """What ``info --json`` prints: :func:`versions`, plus ``app`` and ``settings`` given an app."""
    data = versions()
    if app is not None:
        data["app"] = app.name
        data["settings"] = settings(app)
    return data


def _shown(value: object) -> str:
    return {True: "yes", False: "NO"}.get(value, str(value)) if isinstance(value, bool) else str(value)


def _with_effect(app: BaseQueueTasks, name: str, value: object) -> str:
    """A setting as the table shows it: ``prefetch`` -1 (the default) also says the number a worker holds, as
    ``inspect`` does; a bare -1 read as "unlimited" or "off". ``--json`` keeps the value as it is set."""
    from qtasks_fast.config import effective_prefetch

    concurrency = app.config.concurrency
    if name == "prefetch" and isinstance(value, int) and isinstance(concurrency, int):
        held = effective_prefetch(concurrency, value)
        if held != value:
            why = "follows concurrency" if value < 0 else "capped at concurrency"
            return f"{value} (a worker holds {held}: {why})"
    return str(value)


def cmd_info(app: BaseQueueTasks | None, as_json: bool) -> int:
    data = info_dict(app)
    if as_json:
        print(json.dumps(data, indent=2))
        return 0
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    table = Table(title="qtasks_fast")
    table.add_column("component")
    table.add_column("value", overflow="fold")
    for k, v in data.items():
        if k not in ("app", "settings"):
            table.add_row(k, _shown(v))
    console.print(table)
    if app is not None:
        rows = Table(title=escape(f"settings of app {app.name!r} (flag > env > code > default)"))
        rows.add_column("setting", no_wrap=True)
        rows.add_column("value", overflow="fold")
        rows.add_column("source", overflow="fold")
        for name, row in settings(app).items():
            rows.add_row(name, escape(_with_effect(app, name, row["value"])), escape(row["source"]))
        console.print(rows)
    return 0
