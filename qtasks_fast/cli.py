"""``qtasks-fast`` (also ``python -m qtasks_fast``): run workers, control tasks, inspect the install, benchmark.

Every flag of ``run`` can also come from the environment as ``QTASKS_<FLAG>``
(``QTASKS_APP``, ``QTASKS_PROCESSES``, ``QTASKS_BROKER_URL``, ...): the one precedence of every
setting is flag, then environment, then code, then default (``qtasks-fast -A app info`` shows which
won). The broker URL also comes from ``--broker-file PATH`` (see :mod:`qtasks_fast.cli_broker`: a
password on the command line is visible to every user of the host). Bad input (a flag value, a URL,
``-A``) ends with one line on stderr and exit code 2, before anything is contacted. Task control
(``inspect``, ``status``, ``cancel``, ``restart``,
``dlq``, ``purge``) lives in :mod:`qtasks_fast.cli_control`. Exit codes: 0 ok,
1 not found (control commands), 2 a usage problem: the app cannot be imported
or the broker cannot be used (for ``run``: a wrong password or URL; an outage
at start is waited out, logged once), 1 for ``run`` when a worker cannot run
with this app or configuration (the log says why).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from qtasks_fast import cli_broker
from qtasks_fast.cli_types import LOG_LEVELS, log_level, whole, worker_id
from qtasks_fast.config import FLAG
from qtasks_fast.log import get_logger, setup_logging

if TYPE_CHECKING:
    from qtasks_fast.app import BaseQueueTasks


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"QTASKS_{name}", default)


def _env_bool(name: str, default: bool) -> bool:
    """``QTASKS_<name>`` as the default of an on/off flag; a value that is neither raises ``ValueError``."""
    from qtasks_fast.config import parse_bool

    raw = _env(name)
    return default if raw is None else parse_bool(name, raw)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="qtasks-fast",
        description="qtasks_fast: a fast QTasks-style task queue. Flags also read QTASKS_<FLAG> from the environment.",
        epilog="exit codes: 0 ok, 1 not found (status, cancel, restart, dlq --id) or a worker that cannot run "
               "(run), 2 usage or broker problem (app not importable, wrong broker URL or password, broker "
               "unreachable or lacking the feature; run waits for an unreachable broker instead). COMMAND --help "
               "explains each flag.",
    )
    p.add_argument("-A", "--app", "-app", default=_env("APP"),
                   help="the app: 'module', 'module:attr' or 'module.attr' (env QTASKS_APP; '-app' is QTasks' "
                        "spelling)")
    p.add_argument("--port", dest="qtasks_port", type=whole(1, most=65535), default=None,
                   help="QTasks' place of web's port, before the command ('-A mod:app --port 8000 web'): the same "
                        "as 'web --port'; no other command takes it")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run a supervised pool of worker processes",
                         description="Fork N worker processes that run the app's tasks; SIGTERM drains them.")
    run.add_argument("--processes", "-n", type=whole(1, "PROCESSES"), default=_env("PROCESSES") or "1",
                     help="worker processes to fork (env QTASKS_PROCESSES; default 1)")
    run.add_argument("--worker-id", type=worker_id, default=_env("WORKER_ID", os.uname().nodename),
                     help="stable id of this host's worker pool; consumer names are <id>-<slot>, so a restarted "
                          "pool with the same id takes over its unfinished messages at once (default: hostname)")
    run.add_argument("--concurrency", "-c", type=whole(1), default=None,
                     help="tasks running at once per process (default: config.concurrency, which reads env "
                          "QTASKS_CONCURRENCY)")
    run.add_argument("--queues", "-Q", default=_env("QUEUES"),
                     help="comma-separated queues to consume (default: every queue the app's tasks use; a queue "
                          "no task uses is served with a warning, for work a task manager routes there)")
    run.add_argument("--pin-cpus", action=argparse.BooleanOptionalAction, default=_env_bool("PIN_CPUS", False),
                     help="pin each worker process to its own CPU with psutil (env QTASKS_PIN_CPUS; default off)")
    cli_broker.add_arguments(run, "broker URL: redis://[user:pass@]host:port/db, rediss://... (TLS), sqlite:///path, "
                                  "memory:// (env QTASKS_BROKER_URL; default: the app's, else embedded SQLite). "
                                  "A password here is visible to other users: prefer the env or --broker-file")
    run.add_argument("--log-level", type=log_level, default=None,
                     help="DEBUG, INFO, WARNING or ERROR (env QTASKS_LOG_LEVEL; default: the app's "
                          "config.logs_default_level_server, INFO)")
    run.add_argument("--scheduler", action=argparse.BooleanOptionalAction, default=_env_bool("SCHEDULER", True),
                     help="enqueue the app's periodic tasks from this supervisor (env QTASKS_SCHEDULER; default on; "
                          "safe on every host: each tick is enqueued once fleet-wide)")

    from qtasks_fast import cli_control

    cli_control.add_parsers(sub)
    from qtasks_fast import cli_stats

    cli_stats.add_parser(sub)
    from qtasks_fast import cli_migrate

    cli_migrate.add_parser(sub)
    from qtasks_fast import cli_web

    cli_web.add_parser(sub)
    from qtasks_fast import cli_grpc

    cli_grpc.add_parser(sub)

    info = sub.add_parser("info", help="print versions, and with -A each setting in force and where it came from",
                          description="Print versions and whether the compiled core and uvloop are in use; with "
                                      "-A, every setting of the app in force (GlobalConfig fields, the broker URL "
                                      "redacted, the embedded SQLite file) and its source: flag, env QTASKS_X, "
                                      "code or default. Connects to nothing.")
    info.add_argument("--json", action="store_true", help="print JSON instead of a table")
    cli_broker.add_arguments(info, "broker URL, as for run (shown as the flag's)")

    bench = sub.add_parser("bench", help="run the bundled benchmark suites (see qtasks-fast bench --help)",
                           add_help=False)
    bench.add_argument("bench_args", nargs=argparse.REMAINDER, help="arguments passed to qtasks_fast.benchmarks")
    return p


def load(args: argparse.Namespace, build: bool = True) -> BaseQueueTasks | None:
    """The ``-A`` app with the CLI's broker flag applied (``--broker``, ``--broker-file``; without one the
    app's own precedence: ``$QTASKS_BROKER_URL``, then its code); None (the reason logged, one line) when
    it cannot be loaded or its broker URL cannot work. ``build``: also build the backend (``info`` does not:
    it creates nothing)."""
    from qtasks_fast.app import url_origin
    from qtasks_fast.backends import check_url
    from qtasks_fast.exceptions import ConfigError
    from qtasks_fast.loader import AppLoadError, load_app

    log = get_logger("cli")
    if not args.app:
        log.error("no app given: pass -A module:app (or set QTASKS_APP)")
        return None
    try:
        app = load_app(args.app)
    except AppLoadError as exc:
        log.error("%s", exc)
        return None
    try:
        url = cli_broker.resolve(args)
    except cli_broker.BrokerURLError as exc:
        log.error("%s", exc)
        return None
    if url:
        app._use_flag_url(url, cli_broker.source(args))
    url, source = app.broker_source()
    try:
        if url is not None:
            check_url(url)
    except (ValueError, ConfigError) as exc:  # a URL that cannot work (its message names it, redacted, and what
        log.error("%s (from %s)", exc, url_origin(source))  # to use); ConfigError: a backend's own check of it
        return None
    try:
        if build:
            app._resolve()
    except (ValueError, ConfigError) as exc:  # the same, named by the app
        log.error("%s", exc)
        return None
    return app


def qtasks_port(args: argparse.Namespace) -> str | None:
    """QTasks' ``--port`` before the command (``python -m qtasks -A mod:app --port 8000 web``) becomes ``web``'s
    own ``--port``; why it cannot, as a line for stderr (another command, or two different ports), or None.
    QTasks ignores it elsewhere; here a flag that would do nothing is refused rather than dropped."""
    if args.qtasks_port is None:
        return None
    if args.command != "web":
        return (f"--port {args.qtasks_port} before the command is the WebView's port (QTasks' "
                f"'-A mod:app --port N web'); {args.command or 'no command'} takes no port: drop it")
    if args.port is not None and args.port != args.qtasks_port:
        return f"two ports: --port {args.qtasks_port} before 'web' and --port {args.port} after it; give one"
    args.port = args.qtasks_port
    return None


def cmd_run(args: argparse.Namespace) -> int:
    from qtasks_fast.supervisor import Supervisor

    env_level = _env("LOG_LEVEL")
    if args.log_level is None and env_level is not None:
        try:
            env_level = log_level(env_level)
        except argparse.ArgumentTypeError as exc:
            print(f"qtasks-fast: QTASKS_LOG_LEVEL: {exc}", file=sys.stderr)
            return 2
    setup_logging(args.log_level or env_level or "INFO", f"{args.worker_id}-supervisor")
    log = get_logger("cli")
    app = load(args)
    if app is None:
        return 2
    if args.log_level or env_level:  # the flag, else the CLI's env variable, beat the app's config
        app.config.set_from_flag("logs_default_level_server", args.log_level or env_level,
                                 FLAG if args.log_level else "env QTASKS_LOG_LEVEL")
    args.log_level = app.config.logs_default_level_server
    setup_logging(args.log_level, f"{args.worker_id}-supervisor", fmt=app.config.logs_format)
    if args.concurrency:
        app.config.set_from_flag("concurrency", args.concurrency)
    queues = [q.strip() for q in args.queues.split(",") if q.strip()] if args.queues else None
    from qtasks_fast.cli_control import unknown_queue

    for q in queues or ():
        why = unknown_queue(app, q)
        if why:  # served anyway: a task manager or another producer may route work there
            log.warning("--queues: %s; serving it anyway", why)
    code = asyncio.run(_wait_for_broker(app))
    if code is not None:
        return code
    sup = Supervisor(app, args.processes, args.worker_id, args.concurrency, queues, args.pin_cpus, args.log_level,
                     scheduler=args.scheduler)
    return sup.run()


async def _wait_for_broker(app: object) -> int | None:
    """Wait until the broker answers, so that N workers do not each report the same outage: an outage at
    start is waited out (one line when it starts, one when it ends). None when the broker answered; 0 when
    SIGTERM/SIGINT came first; 2 when no retry can help (a wrong password, a broker URL that cannot work).
    Once it answers, ``config.delete_finished_tasks`` deletes the finished records, once for the whole pool."""
    from qtasks_fast.app import BaseQueueTasks
    from qtasks_fast.faults import Outage, describe, transient
    from qtasks_fast.stopping import sleep_unless_stopped, until_stopped
    from qtasks_fast.worker.startup import permanent, refused

    assert isinstance(app, BaseQueueTasks)
    log = get_logger("cli")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    outage = Outage(log, "the broker is not available at start; the pool waits for it")
    try:
        while True:
            try:
                broker = app.broker
                done, _ = await until_stopped(stop, broker.ping())
            except Exception as exc:  # noqa: BLE001 - each failure is classified below
                if refused(exc) or permanent(exc) or not transient(exc):  # the message says what to change
                    log.error("cannot use the broker: %s", describe(exc))
                    return 2
                if not await sleep_unless_stopped(stop, outage.failed(exc)):
                    return 0
                continue
            if not done:
                return 0
            outage.ok()
            if app.config.delete_finished_tasks:  # once per pool, not per worker process: see delete_finished
                from qtasks_fast.control import delete_finished

                try:
                    await delete_finished(app)
                except Exception as exc:  # noqa: BLE001 - one line, not a traceback: the pool does not start
                    log.error("cannot delete finished records (delete_finished_tasks): %s", describe(exc))
                    return 2
            return None
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        try:
            await asyncio.wait_for(app.broker.close(), 5)
        except Exception as exc:  # noqa: BLE001 - closing is best effort
            log.debug("closing the broker after the start-up check: %s", exc)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``qtasks-fast`` command. Output cut short by its reader (``| head``) ends it quietly with exit
    code 1, as rich's tables do and as Python's documentation advises for EPIPE."""
    try:
        return _main(argv)
    except BrokenPipeError:
        quiet_stdout()
        return 1


def quiet_stdout() -> None:
    """The reader of stdout has gone (``| head -1``): send what is left, and the flush at exit, nowhere,
    so that no BrokenPipe traceback or "Exception ignored" line follows."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real stdout: nothing will be flushed to it either
        pass


def _main(argv: Sequence[str] | None) -> int:
    own_argv = argv is None  # this process's command line: the one other users can read
    argv = list(sys.argv[1:] if argv is None else argv)
    if "bench" in argv and argv.index("bench") in (0, 2):  # [-A app] bench ARGS: ARGS belong to the suites
        from qtasks_fast.benchmarks.__main__ import main as bench_main

        return int(bench_main(argv[argv.index("bench") + 1:], prog="qtasks-fast bench") or 0)
    try:
        parser = build_parser()
    except ValueError as exc:  # a QTASKS_<FLAG> default that is no value of its flag
        print(f"qtasks-fast: {exc}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    if own_argv:
        cli_broker.hide_password(args, argv)
    problem = qtasks_port(args)
    if problem:
        print(f"qtasks-fast: {problem}", file=sys.stderr)
        return 2
    if args.command == "run":
        return cmd_run(args)
    level = os.environ.get("QTASKS_LOG_LEVEL") or "WARNING"
    if level.upper() not in LOG_LEVELS:
        print(f"qtasks-fast: QTASKS_LOG_LEVEL={level!r} is not a log level: use DEBUG, INFO, WARNING or ERROR",
              file=sys.stderr)
        return 2
    setup_logging(level, "cli")
    if args.command == "info":
        from qtasks_fast.cli_info import cmd_info

        app = load(args, build=False) if args.app else None
        return 2 if args.app and app is None else cmd_info(app, args.json)
    from qtasks_fast import cli_control

    if args.command in cli_control.COMMANDS:
        return cli_control.run(args, load)
    from qtasks_fast import cli_query

    if args.command in cli_query.COMMANDS:
        return cli_query.run(args, load)
    if args.command == "migrate":
        from qtasks_fast import cli_migrate

        return cli_migrate.run(args, load)
    if args.command == "web":
        from qtasks_fast import cli_web

        return cli_web.run(args, load)
    if args.command == "grpc":
        from qtasks_fast import cli_grpc

        return cli_grpc.run(args, load)
    if args.command == "stats":
        from qtasks_fast import cli_stats

        return cli_stats.run(args, load)
    parser.print_help()
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
