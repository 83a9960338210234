"""``qtasks-fast -A app inspect | status | logs | cancel | restart | dlq | purge``: task control from the shell.

Each prints a table (rich) or, with ``--json``, one JSON document on stdout.
Exit codes: 0 done; 1 not found (no such task, no such dead letter); 2 a usage
or broker problem (app not importable, broker unreachable or without the
feature, a destructive command without ``--yes``). Messages go to stderr and
say what to do.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import json
import sys
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from qtasks_fast.abc.broker import DeadLetter
    from qtasks_fast.app import BaseQueueTasks

COMMANDS = ("inspect", "status", "logs", "cancel", "restart", "dlq", "purge")
OK, NOT_FOUND, USAGE = 0, 1, 2
EPILOG = "exit codes: 0 done, 1 not found, 2 usage or broker problem (the message says which)"


def add_parsers(sub: Any) -> None:
    """Add the control subcommands to the ``qtasks-fast`` parser's subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON on stdout instead of a table")
    from qtasks_fast import cli_broker

    cli_broker.add_arguments(common, "broker URL, as for run (env QTASKS_BROKER_URL; default: the app's)")

    def cmd(name: str, help_: str, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_, description=description, epilog=EPILOG, parents=[common])  # type: ignore[no-any-return]

    cmd("inspect", "show the app's tasks and config, its queues' counts and the live workers",
        "Show what the app registers: tasks and their options (and what runs each: the event loop for an async "
        "task), queues, config as workers apply it and periodic schedules (with each schedule's next run); what "
        "the broker holds: per queue the messages waiting, in flight (held by workers), delayed and "
        "dead-lettered, and the live workers (id, host, pid, processes, queues, started, last heartbeat, tasks "
        "done/failed, CPU, RSS) and the lost ones (no heartbeat within lease_seconds, listed for an hour); and on "
        "Redis the broker's memory: used, maxmemory and policy, with a warning above 90 %% of maxmemory or when "
        "the policy may evict tasks. A broker that cannot say is noted on stderr. Nothing is changed.")
    p = cmd("status", "show one task's record", "Print the record of task UUID (status, result, traceback).")
    p.add_argument("uuid", help="the task's uuid, as add_task returned it")
    p = cmd("logs", "print the log lines a task emitted while it ran",
            "Print what task UUID logged while it ran, as captured by the LogCapture middleware "
            "(app.add_middleware(LogCapture)); kept as long as its record. --json: a list of lines.")
    p.add_argument("uuid", help="the task's uuid (a retry is another task: see its retry_child_uuid)")
    p = cmd("cancel", "cancel a queued or running task",
            "A queued (or delayed) task is removed and never runs. A fetched one is dropped unrun; a running "
            "async task is cancelled at its next await; a sync task in a thread is recorded 'cancel' at once "
            "(its thread runs on, result discarded); a process-executor task's child is killed; an inline "
            "task cannot be interrupted. A finished task is left as it is.")
    p.add_argument("uuid", help="the task's uuid")
    p.add_argument("--reason", default="", help="why; stored with the cancel (default: empty)")
    p = cmd("restart", "enqueue a task's call again under a new uuid",
            "Enqueue the same task with the same arguments as task UUID, under a new uuid that records the "
            "original (its record's restart_of). Prints the new task's record.")
    p.add_argument("uuid", help="uuid of the task to run again")

    dlq = sub.add_parser("dlq", help="list, requeue or delete dead-lettered messages", epilog=EPILOG,
                         description="Dead letters are messages that could not run (undecodable, unknown task, "
                                     "delivered max_deliveries times without finishing).")
    dsub = dlq.add_subparsers(dest="dlq_command", metavar="ACTION", required=True)
    for action, help_ in (("list", "list dead letters, newest first"),
                          ("requeue", "put dead letters back on their queue with a fresh delivery count"),
                          ("purge", "delete dead letters for good")):
        d = dsub.add_parser(action, help=help_, description=help_[0].upper() + help_[1:] + ".", epilog=EPILOG,
                            parents=[common])
        d.add_argument("--queue", "-Q", default=None, help="only this queue (default: every queue of the app)")
        if action == "list":
            from qtasks_fast.cli_types import whole

            d.add_argument("--count", type=whole(1), default=100, help="at most this many (default 100)")
        else:
            d.add_argument("--id", dest="ids", action="extend", nargs="+", default=None, metavar="ID",
                           help="only these dead-letter ids (from 'dlq list'); default: all of them")
        if action == "purge":
            d.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")

    from qtasks_fast import cli_query

    cli_query.add_parsers(sub, common, EPILOG)
    p = cmd("purge", "drop every waiting message of a queue",
            "Drop every queued and delayed (not running) message of QUEUE; their records become 'cancel'.")
    p.add_argument("queue", help="the queue to empty, e.g. default")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation (needed without a terminal)")


def _err(message: str) -> None:
    print(f"qtasks-fast: {message}", file=sys.stderr)


def unknown_queue(app: BaseQueueTasks, queue: str) -> str | None:
    """None when a task of ``app`` uses ``queue``; else one line saying so, with a "did you mean" and the
    app's queues (a typo in ``purge defualt`` or ``run -Q defualt`` would otherwise act on an empty queue
    and look like success)."""
    import difflib

    queues = app.queues
    if queue in queues:
        return None
    close = difflib.get_close_matches(queue, queues, n=1, cutoff=0.5)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"no task of app {app.name!r} uses queue {queue!r}{hint}; its queues: {', '.join(queues)}"


def _confirm(args: argparse.Namespace, what: str, app: BaseQueueTasks, queue: str | None = None) -> bool:
    """Ask before a destructive command (``--yes`` skips it; without a terminal it is needed); a queue no
    task of the app uses is named in the question, or in the refusal."""
    why = unknown_queue(app, queue) if queue else None
    if args.yes:
        if why:
            _err(f"warning: {why}")
        return True
    if not sys.stdin.isatty():
        _err(f"refusing to {what}: {why}; pass --yes to do it anyway" if why else
             f"refusing to {what} without confirmation: pass --yes")
        return False
    if why:
        _err(f"warning: {why}")
    return input(f"{what}? [y/N] ").strip().lower() in ("y", "yes")


def _json(data: Any) -> None:
    print(msgspec.json.encode(data).decode())


def _dead_dict(d: DeadLetter) -> dict[str, Any]:
    from qtasks_fast.schemas import Envelope

    try:
        at = _dt.datetime.fromtimestamp(d.at, _dt.timezone.utc).isoformat()
    except (OverflowError, OSError, ValueError):
        at = str(d.at)
    out: dict[str, Any] = {"id": d.id, "uuid": d.uuid, "queue": d.queue, "task_name": d.task_name,
                           "reason": d.reason, "at": at, "priority": d.priority}
    try:  # a dead letter is often the malformed message itself: anything it holds is listed, never fatal
        env = msgspec.msgpack.decode(d.body, type=Envelope)
        msgspec.json.encode((env.args, env.kwargs))  # e.g. a msgpack extension type has no JSON form
        out.update(args=env.args, kwargs=env.kwargs)
    except Exception:  # noqa: BLE001 - also a body nested too deeply to decode (RecursionError)
        out["body"] = bytes(d.body).hex()
    return out


def _short_time(iso: str) -> str:
    """``2026-12-07T08:50:10.447000+00:00`` -> ``2026-12-07 08:50:10`` for a table (``--json`` keeps it all)."""
    return iso[:19].replace("T", " ") if iso[10:11] == "T" else iso


def _printable(text: str) -> str:
    """``text`` with control characters but newlines and tabs escaped (``\\x1b``): a field written by a
    producer must not drive the operator's terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in "\n\t" else repr(c)[1:-1] for c in text)


#: columns whose values are copied into other commands (``status UUID``, ``dlq requeue --id ID``): never wrapped
WHOLE = frozenset({"id", "uuid"})


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(title))
    for i, c in enumerate(columns):  # the first column names the row, ids are copied: keep them whole
        table.add_column(c, no_wrap=i == 0 or c in WHOLE, overflow="fold")
    for r in rows:  # values are data, never markup: a "[/x]" in a task name or a reason must print as it is
        table.add_row(*["" if v is None else escape(_printable(str(v))) for v in r])
    Console().print(table)


#: the width the reason column gets at least in the one-table form of ``dlq list``
_REASON_MIN = 30


def _dead_letters_out(app_name: str, rows: list[dict[str, Any]]) -> None:
    """``dlq list``: one table, a row per dead letter, when the terminal is wide enough for the whole ids and
    a readable reason; else a field/value table per dead letter (at 80 columns the one table left the queue,
    task, time and reason a few characters each, one reason filling 40 lines)."""
    from rich.console import Console

    columns = ["id", "uuid", "queue", "task", "at (UTC)", "reason"]
    table = [[r["id"], r["uuid"], r["queue"], r["task_name"], _short_time(r["at"]), r["reason"]] for r in rows]
    widths = [max(len(str(c)), *(len(str(t[i] or "")) for t in table)) for i, c in enumerate(columns[:-1])]
    if sum(widths) + _REASON_MIN + 3 * len(columns) + 1 <= Console().width:
        _table(f"dead letters of {app_name!r}", columns, table)
        return
    for t in table:
        _table(f"dead letter {t[0]} of {app_name!r}", ["field", "value"], [list(p) for p in zip(columns, t)])


def _task_out(task: Any, as_json: bool, title: str) -> None:
    if as_json:
        _json(task)
        return
    _table(title, ["field", "value"], [[k, v] for k, v in msgspec.structs.asdict(task).items()])


async def _run(app: BaseQueueTasks, args: argparse.Namespace) -> int:  # noqa: C901 - one branch per command
    from qtasks_fast import control

    cmd, as_json = args.command, args.json
    if cmd == "status":
        task = await control.status(app, args.uuid)
        if task is None:
            _err(f"no task {args.uuid} in app {app.name!r}: unknown or expired (check the uuid and -A / --broker)")
            return NOT_FOUND
        _task_out(task, as_json, f"task {args.uuid}")
    elif cmd == "logs":
        return await _logs(app, args.uuid, as_json)
    elif cmd == "cancel":
        result = await control.cancel(app, args.uuid, args.reason)
        if as_json:
            _json({"uuid": args.uuid, "result": result})
        else:
            print({"queued": "cancelled: it will not run", "running": "cancel sent to the worker running it",
                   "finished": "already finished: nothing changed", "unknown": "unknown task"}[result])
        if result == "unknown":
            _err(f"no queued, running or finished task {args.uuid} in app {app.name!r} (check the uuid and -A)")
            return NOT_FOUND
    elif cmd == "restart":
        try:
            task = await control.restart(app, args.uuid)
        except control.TaskRecordNotFound as exc:
            _err(str(exc))
            return NOT_FOUND
        _task_out(task, as_json, "restarted as a new task")
    elif cmd == "purge":
        if not _confirm(args, f"drop every waiting message of queue {args.queue!r} of app {app.name!r}", app,
                        args.queue):
            return USAGE
        n = await control.purge(app, args.queue)
        _json({"queue": args.queue, "purged": n}) if as_json else print(f"purged {n} message(s) from {args.queue!r}")
    elif args.dlq_command == "list":
        _warn_queue(app, args.queue)
        letters = await control.dlq_list(app, args.queue, args.count)
        rows = [_dead_dict(d) for d in letters]
        if as_json:
            _json(rows)
        elif not rows:
            print(f"no dead letters in {'queue ' + repr(args.queue) if args.queue else 'any queue of the app'}")
        else:
            _dead_letters_out(app.name, rows)
    else:
        requeue = args.dlq_command == "requeue"
        if requeue:
            _warn_queue(app, args.queue)
        elif not _confirm(args, f"delete {'the given' if args.ids else 'every'} dead letter", app, args.queue):
            return USAGE
        fn = control.dlq_requeue if requeue else control.dlq_purge
        n = await fn(app, args.queue, args.ids)
        verb = "requeued" if requeue else "deleted"
        _json({verb: n}) if as_json else print(f"{verb} {n} dead letter(s)")
        if args.ids and n == 0:
            _err(f"none of the ids {args.ids} is a dead letter here (see: qtasks-fast -A ... dlq list)")
            return NOT_FOUND
    return OK


def _warn_queue(app: BaseQueueTasks, queue: str | None) -> None:
    why = unknown_queue(app, queue) if queue else None
    if why:
        _err(f"warning: {why}")


async def _logs(app: BaseQueueTasks, uuid: str, as_json: bool) -> int:
    from qtasks_fast import control

    lines: list[str] = []
    for q in app.queues:
        lines = await app.storage.get_logs(uuid, q)
        if lines:
            break
    if not lines and await control.status(app, uuid) is None:
        _err(f"no task {uuid} in app {app.name!r}: unknown or expired (check the uuid and -A / --broker)")
        return NOT_FOUND
    if as_json:
        _json(lines)
    elif not lines:
        _err(f"task {uuid} has no captured log lines (is LogCapture installed: app.add_middleware(LogCapture)?)")
    else:
        print("\n".join(lines))
    return OK


def run(args: argparse.Namespace, load: Callable[[argparse.Namespace], BaseQueueTasks | None]) -> int:
    """Run one control command; ``load`` returns the app (or None after printing why it cannot)."""
    from qtasks_fast import control
    from qtasks_fast.exceptions import InvalidTaskId

    if getattr(args, "uuid", None) is not None:  # checked before anything is loaded or contacted
        try:
            args.uuid = control.checked_uuid(args.uuid)
        except InvalidTaskId as exc:
            _err(str(exc))
            return USAGE
    app = load(args)
    if app is None:
        return USAGE
    if args.command == "inspect":
        data = control.inspect(app)
        try:
            data.update(asyncio.run(_fleet(app)))
        except Exception as exc:  # refused: a wrong password or database number is the user's to fix
            _err(broker_error(exc))
            return USAGE
        data["broker_memory"] = _broker_memory(app)
        for warning in (data["broker_memory"] or {}).get("warnings", ()):
            _err(f"warning: {warning}")
        for note in data["notes"]:
            _err(f"note: {note}")
        if args.json:
            print(json.dumps(data, indent=2, default=str))
        else:
            _inspect_tables(data)
        return OK

    async def session() -> int:
        try:
            await app.broker.ping()
            return await _run(app, args)
        finally:
            await app.broker.close()

    return run_session(session)


def run_session(session: Callable[[], Coroutine[Any, Any, int]], said: tuple[type[Exception], ...] = ()) -> int:
    """``asyncio.run(session())`` under the CLI's rule: a broker that cannot be reached or lacks a capability
    (or an error of ``said``: a bad value found late) is one line on stderr and exit code 2, never a traceback;
    Ctrl-C ends a follow quietly (0)."""
    from qtasks_fast.abc.capabilities import NotSupported
    from qtasks_fast.exceptions import BrokerError, BrokerUnavailable

    try:
        return asyncio.run(session())
    except BrokenPipeError:  # the reader of stdout left (| head): the CLI's main ends quietly
        raise
    except KeyboardInterrupt:
        return OK
    except (BrokerUnavailable, NotSupported) as exc:
        _err(str(exc))
    except said as exc:
        _err(str(exc))
    except Exception as exc:
        if not isinstance(exc, (ConnectionError, OSError, TimeoutError, BrokerError)):
            raise
        _err(broker_error(exc))
    return USAGE


async def _fleet(app: BaseQueueTasks) -> dict[str, Any]:
    """``control.fleet``; raises when the broker refused this client (an unreachable one is only a note)."""
    from qtasks_fast import control
    from qtasks_fast.worker.startup import refused

    try:
        try:
            await app.broker.ping()
        except Exception as exc:
            if refused(exc):
                raise
        return await control.fleet(app)
    finally:
        try:
            await app.broker.close()
        except Exception:  # noqa: BLE001 - closing is best effort at exit
            pass


def broker_error(exc: BaseException) -> str:
    """One line for a broker that failed a command: its cause, and what to check."""
    from qtasks_fast.exceptions import BrokerRefused, BrokerUnavailable
    from qtasks_fast.faults import describe

    if isinstance(exc, (BrokerUnavailable, BrokerRefused)):  # its message names the cause and what to do
        return str(exc)
    return f"broker error: {describe(exc)}; is it reachable, and is the URL right (--broker / QTASKS_BROKER_URL)?"


def _broker_memory(app: BaseQueueTasks) -> dict[str, Any] | None:
    """The broker's memory figures (``BrokerMemory``: Redis), ``{"error": ...}`` when it cannot say, None
    for a broker without them."""
    from qtasks_fast.abc.capabilities import BrokerMemory
    from qtasks_fast.exceptions import BrokerError

    if not isinstance(app.broker, BrokerMemory):
        return None
    try:
        return app.broker.memory_stats()
    except BrokerError as exc:
        message = f"broker memory unknown: {exc}"
        return {"error": message, "warnings": [message]}


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def _ago(seconds: float) -> str:
    return f"{seconds:.0f}s ago" if seconds < 120 else f"{seconds / 60:.0f} min ago"


def _inspect_tables(data: dict[str, Any]) -> None:
    notes = data.get("config_notes", {})
    _table(f"app {data['app']!r}", ["setting", "value"],
           [["broker", data["broker"]], ["queues", ", ".join(data["queues"])],
            *[[k, f"{v} ({notes[k]})" if k in notes else v] for k, v in data["config"].items()]])
    opts = ["queue", "priority", "max_time", "retry", "executor"]
    _table("tasks (all options: inspect --json)", ["name", "kind", *opts[:-1], "runs on"],
           [[t["name"], t["kind"], *[t.get(o) for o in opts]] for t in data["tasks"].values()])
    stats = data.get("queue_stats")
    if stats is not None:
        _table("queues", ["queue", "waiting", "in flight", "delayed", "dead letters"],
               [[q, c["waiting"], c["in_flight"], c["delayed"], c["dead"]] for q, c in stats.items()])
    workers = data.get("workers")
    if workers is not None and not workers:
        print("no live workers (none has sent a heartbeat within lease_seconds)")
    elif workers:
        _table("live workers", ["id", "host", "pid", "processes", "queues", "started (UTC)", "last heartbeat",
                                "done", "failed", "cpu", "rss"],
               [[w["id"], w["host"], w["pid"], w["processes"], ", ".join(w["queues"]), w["started"],
                 _ago(w["heartbeat_age"]), w.get("done", 0), w.get("failed", 0), f"{w.get('cpu_percent', 0.0):.0f}%",
                 _mib(w.get("rss", 0))] for w in workers])
    lost = data.get("lost_workers")
    if lost:  # killed or cut off: what they held was handed to others after the lease
        _table("lost workers (no heartbeat within lease_seconds; listed for an hour)",
               ["id", "host", "pid", "queues", "started (UTC)", "last heartbeat", "done", "failed"],
               [[w["id"], w["host"], w["pid"], ", ".join(w["queues"]), w["started"], _ago(w["heartbeat_age"]),
                 w.get("done", 0), w.get("failed", 0)] for w in lost])
    mem = data.get("broker_memory")
    if mem and "error" not in mem:
        limit = mem["maxmemory"]
        _table("broker memory (Redis)", ["", "value"],
               [["used_memory", _mib(mem["used_memory"])],
                ["maxmemory", _mib(limit) if limit else "none (unlimited)"],
                ["used", f"{mem['used_ratio']:.0%} of maxmemory" if limit else "-"],
                ["maxmemory-policy", mem["maxmemory_policy"]]])
    if data["periodic"]:
        _table("periodic tasks", ["name", "task", "schedule", "args", "kwargs", "next run (UTC)"],
               [[p["name"], p["task_name"], p["schedule"], p["args"], p["kwargs"], p["next_run"]]
                for p in data["periodic"]])
