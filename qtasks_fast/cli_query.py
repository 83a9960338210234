"""``qtasks-fast -A app tasks | events``: list and follow tasks from the shell, through :mod:`qtasks_fast.query`.

``tasks`` lists the app's tasks newest first with the filters the WebView and REST API offer (name, status,
queue, worker, error text, created/finished time range) and prints the cursor of the next page; ``--counts``
prints how many match per status. ``events`` prints status changes (``--follow`` keeps reading, resuming
from the last id it printed, so nothing is lost between reads). Exit codes as for the control commands:
0 done, 2 usage or broker problem (the message says which; a ``--queue`` no task of the app uses is one).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from qtasks_fast.abc.query import SEARCHED
from qtasks_fast.enums.task_status import TaskStatus

if TYPE_CHECKING:
    from qtasks_fast.abc.query import TaskFilter, TaskSummary
    from qtasks_fast.app import BaseQueueTasks

COMMANDS = ("tasks", "events")
OK, USAGE = 0, 2


def add_parsers(sub: Any, common: argparse.ArgumentParser, epilog: str) -> None:
    """Add ``tasks`` and ``events``; ``common`` carries ``--json`` and the broker flags."""
    from qtasks_fast.cli_types import moment, whole

    p = sub.add_parser("tasks", parents=[common], epilog=epilog, help="list the app's tasks, newest first, filtered",
                       description="List the app's tasks (queued, running and finished, while their records are "
                                   "kept), newest first. Filters combine; times are 10m/2h/1d (that long ago) or "
                                   "ISO 8601 (UTC unless zoned). The last line gives the --cursor of the next page.")
    p.add_argument("--name", "-n", dest="task_name", help="only tasks of this name")
    p.add_argument("--status", "-s", choices=[s.value for s in TaskStatus], help="only tasks in this status")
    p.add_argument("--queue", "-Q", help="only this queue (default: every queue of the app)")
    p.add_argument("--worker", "-w", dest="worker_id",
                   help="only tasks run by this worker: a consumer name (web1-0) or a --worker-id (web1)")
    p.add_argument("--error", "-e", dest="error_contains", help="only tasks whose traceback contains this text "
                                                                "(any case)")
    p.add_argument("--created-after", type=moment, help="created at or after this time")
    p.add_argument("--created-before", type=moment, help="created before this time")
    p.add_argument("--finished-after", type=moment, help="finished at or after this time")
    p.add_argument("--finished-before", type=moment, help="finished before this time")
    p.add_argument("--limit", "-l", type=whole(1), default=20, help="tasks per page, 1 to 1000 (default 20)")
    p.add_argument("--cursor", help="the cursor a previous page printed: show the next (older) page")
    p.add_argument("--counts", action="store_true", help="print how many tasks match per status instead")

    p = sub.add_parser("events", parents=[common], epilog=epilog, help="print task status changes, or follow them",
                       description="Print status changes (new, process, success, error, cancel) oldest first. "
                                   "Without --after: from the oldest kept; --after ID: after that event (an id "
                                   "printed before, so a reader resumes without gaps); --follow: keep waiting "
                                   "for more until interrupted.")
    p.add_argument("--after", help="the id of the last event seen ('$': only what comes next)")
    p.add_argument("--queue", "-Q", help="only this queue (default: every queue of the app)")
    p.add_argument("--limit", "-l", type=whole(1), default=100, help="events per read (default 100)")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new events until Ctrl-C")


def _when(ts: float | None) -> str:
    """``HH:MM:SS`` today (UTC), ``YYYY-MM-DD HH:MM:SS`` another day."""
    if ts is None:
        return ""
    when = _dt.datetime.fromtimestamp(ts, _dt.timezone.utc)
    today = _dt.datetime.now(_dt.timezone.utc).date()
    return when.strftime("%H:%M:%S" if when.date() == today else "%Y-%m-%d %H:%M:%S")


def _filter(args: argparse.Namespace) -> TaskFilter:
    from qtasks_fast.abc.query import TaskFilter

    return TaskFilter(task_name=args.task_name, status=args.status, queue=args.queue, worker_id=args.worker_id,
                      error_contains=args.error_contains, created_after=args.created_after,
                      created_before=args.created_before, finished_after=args.finished_after,
                      finished_before=args.finished_before)


async def _check_queue(app: BaseQueueTasks, queue: str | None) -> None:
    """Refuse a ``--queue`` no task of the app uses: a typo (``defualt``) would list nothing and look like an
    idle queue. The published task table is read first, so a queue of tasks this process never imported counts."""
    from qtasks_fast.cli_control import unknown_queue

    if queue:
        await app.all_queues()
        why = unknown_queue(app, queue)
        if why:
            raise ValueError(why)


async def _tasks(app: BaseQueueTasks, args: argparse.Namespace) -> int:
    from qtasks_fast import query
    from qtasks_fast.cli_control import _table

    await _check_queue(app, args.queue)
    if args.limit > query.MAX_PAGE:
        raise ValueError(f"--limit {args.limit} is too large: ask for at most {query.MAX_PAGE} tasks per page")
    if args.counts:
        counts = await query.count_tasks(app, _filter(args))
        if args.json:
            print(json.dumps(counts))
        else:
            searched = counts.pop(SEARCHED, None)
            _table(f"tasks of {app.name!r} per status", ["status", "tasks"], [[k, v] for k, v in counts.items()])
            if searched is not None:
                print(f"counted among the newest {searched:,} tasks searched; more may match")
        return OK
    page = await query.list_tasks(app, _filter(args), args.limit, args.cursor)
    if args.json:
        print(msgspec.json.encode(page).decode())
        return OK
    _task_table(app.name, page.tasks)
    if page.partial:  # a worker / error / finished filter checked record by record stopped early
        of = f" of {page.total:,}" if page.total else ""
        print(f"searched the newest {page.searched or 0:,}{of} tasks; more may match: "
              f"search further with --cursor {page.cursor}")
    else:
        print(f"next page: --cursor {page.cursor}" if page.cursor else "last page")
    return OK


def _task_table(app_name: str, tasks: list[TaskSummary]) -> None:
    """A row per task: the uuid whole (it is copied into ``status``/``cancel``), the error text wrapped, the
    rest cut with an ellipsis; on a narrow terminal timing and worker give way to the error, and a column that
    says the same for every row (one queue) is left out."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from qtasks_fast.cli_control import _printable

    columns: list[tuple[str, Callable[[TaskSummary], Any]]] = [
        ("uuid", lambda t: t.uuid), ("task", lambda t: t.task_name), ("queue", lambda t: t.queue),
        ("status", lambda t: t.status), ("created", lambda t: _when(t.created_at)),
        ("took", lambda t: _took(t)), ("worker", lambda t: t.worker_id or ""), ("error", lambda t: t.error or "")]
    console = Console()
    if len({t.queue for t in tasks}) <= 1:
        columns = [c for c in columns if c[0] != "queue"]
    if console.width < _WIDE:  # an 80-column terminal: the error text matters more than timing and worker
        columns = [c for c in columns if c[0] not in ("took", "worker")]
    widths = {name: max([len(name), *(len(str(get(t))) for t in tasks)]) for name, get in columns}
    table = Table(title=escape(f"tasks of {app_name!r}, newest first (times UTC)"))
    for name, _ in columns:
        table.add_column(name, no_wrap=name != "error", overflow="fold" if name in ("uuid", "error") else "ellipsis",
                         min_width=min(widths[name], _MIN_WIDTH[name]) if name in _MIN_WIDTH else None)
    for t in tasks:
        table.add_row(*[escape(_printable(str(get(t)))) for _, get in columns])
    console.print(table)


#: columns kept readable when the terminal is narrow (the error text gives way first)
_MIN_WIDTH = {"uuid": 36, "task": 16, "status": 7, "created": 8}
#: the terminal width from which the took and worker columns are shown
_WIDE = 110


def _took(t: TaskSummary) -> str:
    """How long the run took (finished - started), or since when it waits/runs (empty when unknown)."""
    if t.finished_at is not None and t.started_at is not None:
        return f"{max(t.finished_at - t.started_at, 0.0):.3f}s"
    return ""


async def _events(app: BaseQueueTasks, args: argparse.Namespace) -> int:
    from qtasks_fast import query

    await _check_queue(app, args.queue)
    after = args.after
    while True:
        page = await query.events(app, after, args.limit, block=1.0 if args.follow else 0.0, queue=args.queue)
        for e in page.events:
            if args.json:
                print(msgspec.json.encode(e).decode(), flush=True)
            else:
                print(f"{e.id}  {_when(e.at)}  {e.queue:<10} {e.task_name:<20} {e.uuid}  {e.status}"
                      + (f"  {e.worker_id}" if e.worker_id else ""), flush=True)
        after = page.cursor
        if not args.follow and len(page.events) < args.limit:
            return OK


def run(args: argparse.Namespace, load: Callable[[argparse.Namespace], BaseQueueTasks | None]) -> int:
    """Run ``tasks`` or ``events``; ``load`` returns the app (or None after printing why it cannot)."""
    from qtasks_fast.cli_control import run_session

    app = load(args)
    if app is None:
        return USAGE

    async def session() -> int:
        try:
            return await (_tasks(app, args) if args.command == "tasks" else _events(app, args))
        finally:
            await app.broker.close()

    return run_session(session, said=(ValueError,))
