"""The defaults a newcomer meets: no broker URL (embedded SQLite) and ``memory://`` for unit tests."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from qtasks_fast import QueueTasks, TaskNotFound
from qtasks_fast.backends.sqlite.broker import SqliteBroker
from qtasks_fast.testing import WorkerThread

ROOT = Path(__file__).resolve().parent.parent


def test_quickstart_runs_two_processes_on_sqlite(tmp_path: Path) -> None:
    env = dict(os.environ, QTASKS_SQLITE_PATH=str(tmp_path / "qs.sqlite3"))
    env.pop("QTASKS_BROKER_URL", None)
    proc = subprocess.run([sys.executable, "examples/quickstart.py"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "26 tasks done" in proc.stdout and "timeout" not in proc.stdout
    assert "started worker quickstart-0" in proc.stderr and "started worker quickstart-1" in proc.stderr
    with sqlite3.connect(tmp_path / "qs.sqlite3") as db:
        rows = db.execute("SELECT status, worker_id FROM records WHERE app = 'quickstart'").fetchall()
    assert len(rows) == 26 and {status for status, _ in rows} == {"success"}
    assert {w for _, w in rows} <= {"quickstart-0", "quickstart-1"}


def test_no_url_means_embedded_sqlite(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("QTASKS_BROKER_URL", raising=False)
    monkeypatch.setenv("QTASKS_SQLITE_PATH", str(tmp_path / "default.sqlite3"))
    app = QueueTasks("embedded")

    @app.task
    def square(x: int) -> int:
        return x * x

    assert isinstance(app.broker, SqliteBroker)
    with WorkerThread(app):
        assert square.add_task(7, timeout=20).returning == 49  # type: ignore[union-attr]
        tasks = app.add_tasks([square.s(i) for i in range(200)])
        assert [app.wait(t.uuid, 20).returning for t in tasks] == [i * i for i in range(200)]  # type: ignore[union-attr]


def test_memory_broker_for_unit_tests() -> None:
    app = QueueTasks("unit", broker_url="memory://")

    @app.task
    async def greet(name: str) -> str:
        return f"hi {name}"

    with WorkerThread(app):
        assert greet.add_task("ann", timeout=5).returning == "hi ann"  # type: ignore[union-attr]
        with pytest.raises(TaskNotFound, match="no task 'nope'"):  # refused at once: the app knows its tasks
            app.add_task("nope", timeout=5)
