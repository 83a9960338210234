"""Every bad command-line input ends with one line saying what is wrong and exit code 2, never a traceback,
on every subcommand (issue 10, item 8); output cut short by its reader exits quietly; tables keep ids whole
(item 15).

Each kind of bad input is one test, run across the subcommands (``python -m qtasks_fast`` in a
subprocess, as an operator types it).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UUID = "0b7c6f1e-3a5d-4c2b-9e8f-1a2b3c4d5e6f"
APP = ("import os\n"
       "from qtasks_fast import QueueTasks\n"
       "app = QueueTasks(os.environ['TEST_APP_NAME'], broker_url=os.environ.get('APP_URL'))\n"
       "@app.task\n"
       "def add(a: int, b: int) -> int:\n"
       "    return a + b\n"
       "@app.task(queue='io')\n"
       "def fetch(url: str) -> int:\n"
       "    return 200\n")
#: every subcommand that takes an app, with the arguments it needs
COMMANDS = {
    "run": ["run"], "inspect": ["inspect"], "status": ["status", UUID], "logs": ["logs", UUID],
    "cancel": ["cancel", UUID], "restart": ["restart", UUID], "dlq list": ["dlq", "list"],
    "dlq requeue": ["dlq", "requeue"], "dlq purge": ["dlq", "purge", "--yes"], "purge": ["purge", "default", "--yes"],
    "info": ["info"],
}
#: the subcommands that talk to the broker (info reads settings only; inspect reads the app)
TALKING = [c for c in COMMANDS if c not in ("info", "inspect")]


@pytest.fixture
def project(tmp_path: Path, app_name: str) -> Path:
    (tmp_path / "cli_app.py").write_text(APP)
    return tmp_path


def qtf(project: Path, app_name: str, *args: str, app: str = "cli_app", stdout: int | None = None,
        **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("QTASKS_")}
    full.update({"PYTHONPATH": f"{project}{os.pathsep}{ROOT}", "TEST_APP_NAME": app_name, "COLUMNS": "80",
                 "APP_URL": f"sqlite:///{project}/app.sqlite3", **env})
    return subprocess.run([sys.executable, "-m", "qtasks_fast", "-A", app, *args], env=full, cwd=project,
                          stdout=stdout if stdout is not None else subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)


def one_line_exit_2(res: subprocess.CompletedProcess[str], expected: str) -> None:
    """Exit 2; stderr is one line (argparse: its usage, then one line) that holds ``expected``; no traceback."""
    err = res.stderr.strip()
    assert res.returncode == 2, res
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1 or (lines[0].startswith("usage:") and "error:" in lines[-1]), err
    assert expected in lines[-1], err


BAD_URLS = {
    "unknown scheme": ("foo://x", "unsupported broker URL 'foo://x': use redis://"),
    "db not a number": ("redis://127.0.0.1:6379/abc", "names database 'abc': a Redis database is a number"),
    "port not a number": ("redis://127.0.0.1:notaport/0", "has an invalid port"),
    "port out of range": ("redis://127.0.0.1:70000/0", "has an invalid port"),
    "no sqlite file": ("sqlite://", "names no file"),
}


@pytest.mark.parametrize("kind", list(BAD_URLS))
@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_url_that_cannot_work_is_one_line_before_anything_connects(command: str, kind: str, project: Path,
                                                                      app_name: str) -> None:
    url, expected = BAD_URLS[kind]
    one_line_exit_2(qtf(project, app_name, *COMMANDS[command], "--broker", url), expected)
    if command in ("run", "status"):  # the same from the environment and from the app's code
        one_line_exit_2(qtf(project, app_name, *COMMANDS[command], QTASKS_BROKER_URL=url),
                        "(from env QTASKS_BROKER_URL)")
        one_line_exit_2(qtf(project, app_name, *COMMANDS[command], APP_URL=url), "(from the app's broker_url)")


@pytest.mark.parametrize("command", [*TALKING, "inspect"])
def test_a_redis_database_the_server_does_not_have(command: str, project: Path, app_name: str,
                                                   redis_url: str) -> None:
    url = redis_url.rsplit("/", 1)[0] + "/99"  # the shared Redis has the default 16 databases
    one_line_exit_2(qtf(project, app_name, *COMMANDS[command], "--broker", url),
                    "names a Redis database this server does not have")


@pytest.mark.parametrize("command", [*TALKING, "inspect"])
def test_a_wrong_password_says_so(command: str, project: Path, app_name: str, redis_url: str) -> None:
    """Not "cannot reach Redis ... is redis-server running?": it answered, and refused these credentials."""
    url = redis_url.rsplit("/", 1)[0].replace("redis://", "redis://nobody:wrong@") + "/0"
    res = qtf(project, app_name, *COMMANDS[command], QTASKS_BROKER_URL=url)
    one_line_exit_2(res, "refuses this client")
    assert "check the user and password" in res.stderr and "wrong" not in res.stderr


@pytest.mark.parametrize("command", ["run", "inspect", "status"])
def test_an_app_module_whose_import_is_missing_says_so(command: str, project: Path, app_name: str) -> None:
    """The module is found and imports a package that is not installed: "run from the directory that contains
    it" would send the user looking for the wrong thing."""
    (project / "dep_app.py").write_text("import no_such_dependency_qtf  # noqa\n")
    res = qtf(project, app_name, *COMMANDS[command], app="dep_app")
    one_line_exit_2(res, "importing app module 'dep_app' failed: No module named 'no_such_dependency_qtf', "
                         "which it imports: install it")
    assert "Run from the directory" not in res.stderr


@pytest.mark.parametrize("command", list(COMMANDS))
def test_an_app_attribute_that_does_not_exist(command: str, project: Path, app_name: str) -> None:
    one_line_exit_2(qtf(project, app_name, *COMMANDS[command], app="cli_app:typo"),
                    "module cli_app has no attribute 'typo'")
    if command == "run":
        one_line_exit_2(qtf(project, app_name, "run", app="cli_app.typo"), "module cli_app has no attribute 'typo'")
        one_line_exit_2(qtf(project, app_name, "run", app="cli_app:ap"), "(did you mean -A cli_app:app?)")
        one_line_exit_2(qtf(project, app_name, "run", app="cli_app:add"),
                        "cli_app:add is a TaskFunc, not a QueueTasks app")


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_log_level_that_does_not_exist(command: str, project: Path, app_name: str) -> None:
    one_line_exit_2(qtf(project, app_name, *COMMANDS[command], QTASKS_LOG_LEVEL="verbose"),
                    "'verbose' is not a log level: use DEBUG, INFO, WARNING or ERROR")
    if command == "run":
        one_line_exit_2(qtf(project, app_name, "run", "--log-level", "verbose"), "'verbose' is not a log level")


@pytest.mark.parametrize(("args", "env", "expected"), [
    (["--processes", "0"], {}, "argument --processes/-n: must be at least 1, not 0"),
    (["--processes", "two"], {}, "argument --processes/-n: 'two' is not a whole number"),
    ([], {"QTASKS_PROCESSES": "0"}, "must be at least 1, not 0 (the flag, or env QTASKS_PROCESSES)"),
    (["--concurrency", "0"], {}, "argument --concurrency/-c: must be at least 1, not 0"),
    (["--worker-id", ""], {}, "argument --worker-id: '' is not a worker id"),
    (["--worker-id", "web 1"], {}, "argument --worker-id: 'web 1' is not a worker id"),
    ([], {"QTASKS_WORKER_ID": ""}, "'' is not a worker id"),
    ([], {"QTASKS_CONCURRENCY": "0"}, "QTASKS_CONCURRENCY='0' must be at least 1"),
])
def test_numbers_of_run_are_checked_before_the_broker(args: list[str], env: dict[str, str], expected: str,
                                                      project: Path, app_name: str) -> None:
    # an unreachable broker: run would wait for it, so exit 2 at once proves the check comes first
    one_line_exit_2(qtf(project, app_name, "run", *args, "--broker", "redis://127.0.0.1:1/0", **env), expected)


@pytest.mark.parametrize("count", ["0", "-1", "many"])
def test_dlq_list_count(count: str, project: Path, app_name: str) -> None:
    one_line_exit_2(qtf(project, app_name, "dlq", "list", "--count", count), "argument --count")


@pytest.mark.parametrize("command", [["purge", "defualt"], ["dlq", "purge", "--queue", "defualt"]])
def test_a_destructive_command_on_a_queue_no_task_uses_is_refused(command: list[str], project: Path,
                                                                  app_name: str) -> None:
    res = qtf(project, app_name, *command)
    one_line_exit_2(res, f"no task of app {app_name!r} uses queue 'defualt' (did you mean 'default'?); its "
                         "queues: default, io; pass --yes to do it anyway")
    forced = qtf(project, app_name, *command, "--yes")  # asked for: done, with the warning
    assert forced.returncode == 0 and "did you mean 'default'?" in forced.stderr, forced


@pytest.mark.parametrize("command", [["dlq", "list", "--queue", "i0"], ["dlq", "requeue", "--queue", "i0"]])
def test_a_read_on_a_queue_no_task_uses_warns(command: list[str], project: Path, app_name: str) -> None:
    res = qtf(project, app_name, *command)
    assert res.returncode == 0, res
    assert res.stderr.strip() == (f"qtasks-fast: warning: no task of app {app_name!r} uses queue 'i0' (did you "
                                  "mean 'io'?); its queues: default, io"), res.stderr


def test_run_serves_a_queue_no_task_uses_with_a_warning(project: Path, app_name: str) -> None:
    """A task manager (or another app's producer) may route work to a queue no task declares: the pool
    serves it, and says once that no task uses it, in case it is a typo."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QTASKS_")}
    env.update(PYTHONPATH=f"{project}{os.pathsep}{ROOT}", TEST_APP_NAME=app_name,
               APP_URL=f"sqlite:///{project}/app.sqlite3")
    log = project / "run.log"
    with open(log, "wb") as out:
        pool = subprocess.Popen([sys.executable, "-m", "qtasks_fast", "-A", "cli_app", "run", "-Q", "defualt,io",
                                 "--worker-id", "q"], env=env, cwd=project, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while "serving queues" not in log.read_text() and time.monotonic() < deadline and pool.poll() is None:
                time.sleep(0.05)
        finally:
            pool.send_signal(signal.SIGTERM)
            code = pool.wait(60)
    text = log.read_text()
    assert "serving queues defualt,io" in text and code == 0, text
    assert text.count("did you mean 'default'?") == 1, text


def _closed_pipe(project: Path, app_name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The command with its stdout a pipe whose reader has gone (``| head -1`` once head has exited)."""
    read, write = os.pipe()
    os.close(read)
    try:
        return qtf(project, app_name, *args, stdout=write)
    finally:
        os.close(write)


def _dead_letters(project: Path, app_name: str, n: int) -> None:
    import sqlite3

    assert qtf(project, app_name, "dlq", "list").returncode == 0  # creates the file
    with sqlite3.connect(project / "app.sqlite3") as db:
        db.executemany("INSERT INTO dead_letters (app, queue, prio, uuid, body, reason, at) VALUES "
                       "(?, 'default', 0, ?, x'c1', 'unknown task', ?)",
                       [(app_name, f"{i:08x}-3a5d-4c2b-9e8f-1a2b3c4d5e6f", int(time.time() * 1000))
                        for i in range(n)])


@pytest.mark.parametrize("args", [["dlq", "list"], ["dlq", "list", "--json"], ["status", UUID], ["inspect"],
                                  ["info"], ["info", "--json"]])
def test_output_into_a_closed_pipe_exits_quietly(args: list[str], project: Path, app_name: str) -> None:
    _dead_letters(project, app_name, 300)
    res = _closed_pipe(project, app_name, *args)
    assert res.returncode in (0, 1), res  # 1: not found (status), or cut short like rich's tables
    for bad in ("Traceback", "BrokenPipe", "broker error", "Exception ignored"):
        assert bad not in res.stderr, res.stderr


def test_dlq_list_keeps_ids_and_uuids_whole_on_a_narrow_terminal(project: Path, app_name: str) -> None:
    _dead_letters(project, app_name, 2)
    res = qtf(project, app_name, "dlq", "list")  # COLUMNS=80
    assert res.returncode == 0, res
    for i in range(2):
        assert f"{i:08x}-3a5d-4c2b-9e8f-1a2b3c4d5e6f" in res.stdout, res.stdout  # on one line: not wrapped


def test_dlq_list_on_a_narrow_terminal_keeps_every_field_readable(project: Path, app_name: str) -> None:
    """At 80 columns the one table left queue, task, time and reason a few characters wide (a reason filled
    40 lines); too narrow for it, each dead letter is a field/value table."""
    _dead_letters(project, app_name, 2)
    res = qtf(project, app_name, "dlq", "list")  # COLUMNS=80
    assert res.returncode == 0, res
    assert res.stdout.count("unknown task") == 2 and res.stdout.count(" default ") >= 2, res.stdout
    assert max(len(line) for line in res.stdout.splitlines()) <= 80
    wide = qtf(project, app_name, "dlq", "list", COLUMNS="200")  # wide enough: one row per dead letter
    rows = [line for line in wide.stdout.splitlines() if "unknown task" in line]
    assert len(rows) == 2 and all("-3a5d-4c2b-9e8f-1a2b3c4d5e6f" in r and " default " in r for r in rows), wide.stdout


def test_restart_prints_its_whole_title(project: Path, app_name: str) -> None:
    code = ("import os, cli_app\n"
            "t = cli_app.add.add_task(1, 2)\n"
            "print(t.uuid)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("QTASKS_")}
    env.update(PYTHONPATH=f"{project}{os.pathsep}{ROOT}", TEST_APP_NAME=app_name,
               APP_URL=f"sqlite:///{project}/app.sqlite3")
    uuid = subprocess.run([sys.executable, "-c", code], env=env, cwd=project, capture_output=True, text=True,
                          timeout=60, check=True).stdout.strip()
    res = qtf(project, app_name, "restart", uuid)
    assert res.returncode == 0, res
    assert res.stdout.splitlines()[0].strip() == "restarted as a new task", res.stdout
    assert uuid in res.stdout  # the new record names the original (restart_of)
    as_json = json.loads(qtf(project, app_name, "restart", uuid, "--json").stdout)
    assert as_json["restart_of"] == uuid


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_setting_from_the_environment_that_is_no_value_of_it(command: str, project: Path, app_name: str) -> None:
    """``QTASKS_INDEX_RESULTS=flase`` must not silently mean False, nor ``QTASKS_LEASE_SECONDS=soon`` crash."""
    one_line_exit_2(qtf(project, app_name, *COMMANDS[command], QTASKS_INDEX_RESULTS="flase"),
                    "QTASKS_INDEX_RESULTS='flase' is not a valid bool (1/0, true/false, yes/no, on/off): fix or "
                    "unset it")
    if command == "run":
        one_line_exit_2(qtf(project, app_name, "run", QTASKS_LEASE_SECONDS="soon"),
                        "QTASKS_LEASE_SECONDS='soon' is not a valid float: fix or unset it")
        for flag in ("QTASKS_PIN_CPUS", "QTASKS_SCHEDULER"):
            one_line_exit_2(qtf(project, app_name, "run", **{flag: "maybe"}), f"{flag}='maybe' is not a valid bool")


@pytest.mark.parametrize("args", [["web", "--port", "99999"], ["--port", "70000", "web"], ["grpc", "--port", "65536"]],
                         ids=["web --port", "QTasks' --port before web", "grpc --port"])
def test_a_port_past_65535_is_one_line_not_a_bind_traceback(args: list[str], project: Path, app_name: str) -> None:
    """A port no socket can bind was the socket's ``OverflowError`` traceback at start; now argparse's one line."""
    one_line_exit_2(qtf(project, app_name, *args), "must be at most 65535")
