"""``qtasks-fast -A app migrate``: list and apply the versioned schema migrations of the app's backend.

Backends with a schema of their own (``qtasks_fast.abc.Migrations``: the PostgreSQL backend) apply pending
migrations on start anyway; this command does it ahead of a deploy (``--dry-run``: only show where the database
stands). A broker and a storage on the same schema are migrated once; a backend without migrations (Redis,
SQLite, memory) has nothing to do, which is said and is no error.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from qtasks_fast.cli_control import OK, USAGE, run_session

if TYPE_CHECKING:
    from qtasks_fast.app import BaseQueueTasks


def add_parser(sub: Any) -> None:
    from qtasks_fast import cli_broker

    p = sub.add_parser("migrate", help="apply the backend's pending schema migrations (PostgreSQL)",
                       description="Apply the pending versioned schema migrations of the app's broker and storage "
                                   "(the PostgreSQL backend: tables in the URL's ?schema=, default qtasks_fast), "
                                   "once each, safely while workers start (an advisory lock serialises them). "
                                   "Workers and clients apply them on start too; run this ahead of a deploy. "
                                   "Backends without a schema of their own (Redis, SQLite, memory) have nothing "
                                   "to migrate.",
                       epilog="exit codes: 0 done (or nothing to do), 2 usage or database problem")
    p.add_argument("--dry-run", action="store_true", help="list the migrations and whether each is applied; change "
                                                          "nothing")
    p.add_argument("--json", action="store_true", help="print JSON on stdout instead of a table")
    cli_broker.add_arguments(p, "broker URL, as for run (env QTASKS_BROKER_URL; default: the app's)")


def run(args: argparse.Namespace, load: Callable[[argparse.Namespace], BaseQueueTasks | None]) -> int:
    app = load(args)
    if app is None:
        return USAGE
    return run_session(lambda: _session(app, args.dry_run, args.json))


async def _session(app: BaseQueueTasks, dry_run: bool, as_json: bool) -> int:
    from qtasks_fast.abc import Migrations

    targets: dict[str, Migrations] = {}
    parts: tuple[object, ...] = (app.broker, app.storage)
    for part in parts:
        if isinstance(part, Migrations):
            targets.setdefault(part.migration_target, part)
    report: list[dict[str, Any]] = []
    for target, part in targets.items():
        applied = {v for v, _ in ([] if dry_run else await part.migrate())}
        for version, name, done in await part.migrations():
            state = "applied now" if version in applied else ("applied" if done else "pending")
            report.append({"target": target, "version": version, "name": name, "state": state})
    if as_json:
        print(json.dumps({"app": app.name, "migrations": report}, indent=2))
        return OK
    if not targets:
        print(f"nothing to migrate: {type(app.broker).__name__} and {type(app.storage).__name__} keep no "
              "versioned schema")
        return OK
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"migrations of {app.name!r}" + (" (dry run)" if dry_run else ""))
    for column in ("target", "version", "name", "state"):
        table.add_column(column, overflow="fold")
    for r in report:
        style = {"pending": "yellow", "applied now": "green"}.get(r["state"], "")
        table.add_row(r["target"], str(r["version"]), r["name"], f"[{style}]{r['state']}[/]" if style else r["state"])
    Console().print(table)
    return OK
