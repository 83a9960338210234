"""Where the embedded SQLite default lives, and the warning of a producer whose file no worker reads
(issue 10, item 4).

The file must not move with the working directory: a producer started from another directory than
the workers would write to a database nobody reads, and ``add_task(timeout=3)`` would return None
without a word. It lives next to the module that created the app (both sides import it), else in
the per-user data directory; and a producer is told, once, when no worker has used its file.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from qtasks_fast import QueueTasks
from qtasks_fast.backends.sqlite import seen as sqlite_seen
from qtasks_fast.testing import WorkerThread

ROOT = Path(__file__).resolve().parent.parent
APP_SOURCE = ("from qtasks_fast import QueueTasks\n"
              "app = QueueTasks({name!r})\n"
              "@app.task\n"
              "def add(a: int, b: int) -> int:\n"
              "    return a + b\n")


@pytest.fixture
def no_location_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("QTASKS_BROKER_URL", raising=False)
    monkeypatch.delenv("QTASKS_SQLITE_PATH", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))


@pytest.fixture
def warnings() -> Iterator[list[str]]:
    """Messages the embedded backend logs at WARNING (its logger may not propagate to caplog's root)."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING:
                lines.append(record.getMessage())

    handler = Keep()
    logger = logging.getLogger("qtasks_fast.sqlite")
    logger.addHandler(handler)
    yield lines
    logger.removeHandler(handler)


def _module_app(path: Path, name: str) -> QueueTasks:
    """Run the app module at ``path`` as its own module and return its app (as an import would)."""
    code = compile(path.read_text(), str(path), "exec")
    namespace: dict[str, object] = {"__name__": f"embedded_{name}"}
    exec(code, namespace)  # noqa: S102 - the test's own app file
    app = namespace["app"]
    assert isinstance(app, QueueTasks)
    return app


@pytest.mark.usefixtures("no_location_env")
def test_a_producer_in_another_directory_shares_the_workers_database(tmp_path: Path, app_name: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    module = project / "shop_tasks.py"
    module.write_text(APP_SOURCE.format(name=app_name))
    monkeypatch.chdir(project)
    worker_app = _module_app(module, "worker")
    monkeypatch.chdir(elsewhere)
    producer_app = _module_app(module, "producer")
    assert worker_app.broker.path == producer_app.broker.path == str(  # type: ignore[attr-defined]
        project / ".qtasks_fast" / f"{app_name}.sqlite3")
    with WorkerThread(worker_app):
        done = producer_app.add_task("add", 2, 3, timeout=20)
    assert done is not None and done.returning == 5


def test_the_cli_and_a_producer_started_elsewhere_meet(tmp_path: Path, app_name: str) -> None:
    """The README's setup: ``qtasks-fast run`` in the project, a script started from another directory."""
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    (project / "shop_tasks.py").write_text(APP_SOURCE.format(name=app_name))
    env = {k: v for k, v in os.environ.items() if k not in ("QTASKS_BROKER_URL", "QTASKS_SQLITE_PATH")}
    env.update(PYTHONPATH=f"{project}{os.pathsep}{ROOT}", XDG_DATA_HOME=str(tmp_path / "xdg"))
    log = open(tmp_path / "run.log", "wb")  # noqa: SIM115 - closed below
    pool = subprocess.Popen([sys.executable, "-m", "qtasks_fast", "-A", "shop_tasks", "run", "--worker-id", "loc"],
                            cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        producer = subprocess.run(
            [sys.executable, "-c", "from shop_tasks import add\nt = add.add_task(20, 22, timeout=30)\n"
                                   "print(t.returning if t else None)"],
            cwd=elsewhere, env=env, capture_output=True, text=True, timeout=60)
    finally:
        pool.terminate()
        pool.wait(60)
        log.close()
    assert producer.stdout.strip() == "42", (producer, (tmp_path / "run.log").read_text())
    assert not (elsewhere / ".qtasks_fast").exists()
    database = project / ".qtasks_fast" / f"{app_name}.sqlite3"
    assert f"uses the embedded SQLite database {database}" in (tmp_path / "run.log").read_text()


@pytest.mark.usefixtures("no_location_env")
def test_without_a_module_file_the_database_is_per_user_unless_url_or_env_say(
        tmp_path: Path, app_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    namespace: dict[str, object] = {"__name__": "interactive"}
    exec(compile(APP_SOURCE.format(name=app_name), "<stdin>", "exec"), namespace)  # noqa: S102
    app = namespace["app"]
    assert isinstance(app, QueueTasks)
    assert app.sqlite_source() == (str(tmp_path / "xdg" / "qtasks_fast" / f"{app_name}.sqlite3"),
                                   "default: per-user data dir (no module file next to the app)")
    assert app.broker.path == str(tmp_path / "xdg" / "qtasks_fast" / f"{app_name}.sqlite3")  # type: ignore[attr-defined]
    monkeypatch.setenv("QTASKS_SQLITE_PATH", str(tmp_path / "env.sqlite3"))
    assert QueueTasks(app_name).broker.path == str(tmp_path / "env.sqlite3")  # type: ignore[attr-defined]
    url_app = QueueTasks(app_name, broker_url=f"sqlite:///{tmp_path}/url.sqlite3")
    assert url_app.broker.path == f"{tmp_path}/url.sqlite3"  # type: ignore[attr-defined]


def test_a_producer_is_warned_once_when_no_worker_ever_used_its_database_and_not_after(
        tmp_path: Path, app_name: str, warnings: list[str]) -> None:
    url = f"sqlite:///{tmp_path}/fresh.sqlite3"
    app = QueueTasks(app_name, broker_url=url)

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    assert add.add_task(1, 2, timeout=0.2) is None
    assert len(warnings) == 1, warnings
    assert f"no worker of app {app_name!r} has used the SQLite database {tmp_path}/fresh.sqlite3" in warnings[0]
    assert add.add_task(1, 2, timeout=0.2) is None
    sqlite_seen.at_exit()
    assert len(warnings) == 1, warnings  # once

    with WorkerThread(app):
        assert add.add_task(1, 1, timeout=20) is not None
    sqlite_seen._state.clear()  # as in another process: it looks at the file afresh
    producer = QueueTasks(app_name, broker_url=url)
    producer.task(add.func)
    assert producer.add_task("add", 2, 2, timeout=0.2) is None  # no worker now: a plain timeout
    sqlite_seen.at_exit()
    assert len(warnings) == 1, warnings  # a worker has used the file: nothing more to say


def test_a_script_that_only_sends_is_warned_at_exit(tmp_path: Path, app_name: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "QTASKS_BROKER_URL"}
    env["QTASKS_SQLITE_PATH"] = str(tmp_path / "exit.sqlite3")
    script = (f"from qtasks_fast import QueueTasks\napp = QueueTasks({app_name!r})\n"
              "@app.task\ndef add(a: int, b: int) -> int:\n    return a + b\n"
              "print(add.add_task(1, 2).status)\n")
    res = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.strip() == "new", res
    assert f"no worker of app {app_name!r} has used the SQLite database {tmp_path}/exit.sqlite3" in res.stderr
    assert res.stderr.count("no worker of app") == 1 and "Traceback" not in res.stderr, res.stderr
