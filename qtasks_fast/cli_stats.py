"""``qtasks-fast -A app stats inspect app|tasks [NAME ...]|task NAME [json=true]``: QTasks' ``stats`` command.

QTasks' ``python -m qtasks -A mod:app stats inspect <target> [extra]`` calls ``SyncStats(app).inspect().<target>
(*extra)``; the shape is kept so its scripts keep working, and each target is read as ours: ``app`` is
``qtasks-fast inspect`` (the app, its queues' counts, the live workers), ``tasks``/``task`` the registered
tasks and their options. ``key=value`` words are QTasks' keyword form (only ``json=true`` means something
here); ``--json`` works too. QTasks' ``--stats-app`` (a custom stats object) has no counterpart.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from qtasks_fast import cli_broker
from qtasks_fast.config import parse_bool

if TYPE_CHECKING:
    from qtasks_fast.app import BaseQueueTasks

TARGETS = ("app", "tasks", "task")
OK, NOT_FOUND, USAGE = 0, 1, 2


def add_parser(sub: Any) -> None:
    """Add ``stats`` (and its ``inspect`` action) to the ``qtasks-fast`` parser's subparsers."""
    stats = sub.add_parser("stats", help="QTasks' stats command: 'stats inspect app', 'stats inspect tasks [NAME...]', "
                                         "'stats inspect task NAME'",
                           description="QTasks' command shape: 'inspect app' is 'qtasks-fast inspect'; 'inspect "
                                       "tasks'/'inspect task NAME' print the registered tasks and their options.")
    stats.set_defaults(stats_help=stats.print_help)
    stats.add_argument("--stats-app", metavar="MODULE:STATS",
                       help="QTasks' custom stats object: no counterpart here, refused (use 'inspect')")
    actions = stats.add_subparsers(dest="stats_command", metavar="ACTION")
    inspect = actions.add_parser("inspect", help="inspect the app or its tasks",
                                 description="TARGET app: the app, its queues' counts and the live workers (as "
                                             "'qtasks-fast inspect'); tasks [NAME ...]: those tasks (default all); "
                                             "task NAME: one task.")
    inspect.add_argument("target", choices=TARGETS, help="app, tasks or task")
    inspect.add_argument("extra", nargs="*", help="task names; json=true (QTasks' form) for JSON")
    inspect.add_argument("--json", action="store_true", help="print JSON on stdout instead of a table")
    cli_broker.add_arguments(inspect, "broker URL, as for run (env QTASKS_BROKER_URL; default: the app's)")


def _err(message: str) -> None:
    import sys

    print(f"qtasks-fast: {message}", file=sys.stderr)


def _split(extra: list[str]) -> tuple[list[str], bool | None, str | None]:
    """Task names, ``json=`` as a bool (None: not given), and an error line for a word that means nothing."""
    names: list[str] = []
    as_json: bool | None = None
    for word in extra:
        if "=" not in word:
            names.append(word)
            continue
        key, value = word.split("=", 1)
        if key != "json":
            return names, as_json, f"stats inspect: unknown option {word!r}; only json=true|false is understood"
        try:
            as_json = parse_bool("json", value)
        except ValueError:
            return names, as_json, f"stats inspect: json={value!r} is not true or false"
    return names, as_json, None


def run(args: argparse.Namespace, load: Callable[..., BaseQueueTasks | None]) -> int:
    """Run ``stats``; ``load`` is the CLI's app loader."""
    from qtasks_fast import cli_control, control

    if args.stats_app:
        _err(f"stats --stats-app {args.stats_app}: a custom stats object has no counterpart here; drop it and use "
             "'stats inspect app|tasks|task' (or 'inspect')")
        return USAGE
    if args.stats_command is None:
        args.stats_help()
        return USAGE
    names, as_json, problem = _split(args.extra)
    if problem:
        _err(problem)
        return USAGE
    args.json = bool(args.json or as_json)
    if args.target == "app":
        if names:
            _err(f"stats inspect app takes no names (got {names}); use 'stats inspect tasks NAME ...'")
            return USAGE
        args.command = "inspect"
        return cli_control.run(args, load)
    if args.target == "task" and len(names) != 1:
        _err(f"stats inspect task takes one task name, got {len(names)}; use 'stats inspect tasks' for several")
        return USAGE
    app = load(args, build=False)  # the registry is the app's own: nothing to connect to
    if app is None:
        return USAGE
    missing = [n for n in names if n not in app.tasks]
    if missing:
        _err(f"no task {', '.join(map(repr, missing))} in app {app.name!r}; registered: {', '.join(sorted(app.tasks))}")
        return NOT_FOUND
    rows = [control.task_info(app.tasks[n]) for n in (names or sorted(app.tasks))]
    if args.json:
        print(json.dumps(rows[0] if args.target == "task" else rows, indent=2, default=str))
        return OK
    for row in rows:
        cli_control._table(f"task {row['name']!r} of {app.name!r}", ["field", "value"],
                           [[k, v] for k, v in row.items()])
    return OK
