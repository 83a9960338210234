"""QTasks' command line shape (issue 11): ``python -m qtasks_fast -A mod:app run``, ``web`` and ``stats inspect ...``.

What a user relies on: the commands a QTasks deployment runs (``python -m qtasks -A mod:app run``, ``... stats
inspect app|tasks|task NAME [json=true]``) work with only the module name changed: ``run`` serves the app's
tasks, ``stats inspect`` prints the app (as ``inspect``) or its registered tasks, JSON with QTasks' ``json=true``
or ``--json``, and a task name the app does not have is an error naming the registered ones. ``web`` serves the
WebView and REST API with QTasks' flags in QTasks' places (``-app``, ``--port N`` before the command); a QTasks flag
that means nothing here (``--port`` for another command, ``--stats-app``) is refused in one line, never dropped.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from conftest import APPS, ProcessHarness, cli_env, free_port, start_cli, stop_cli


def stats(*words: str, name: str = "stats") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "qtasks_fast", "-A", "mixed_app:app", "stats", *words],
                          env=cli_env("memory://", name), cwd=APPS, capture_output=True, text=True, timeout=60)


def test_run_with_module_colon_app_serves_the_tasks(tmp_path: Path, redis_url: str) -> None:
    name = f"shape{uuid.uuid4().hex[:8]}"
    h = ProcessHarness(tmp_path, name)
    try:
        proc = h.start(redis_url, processes=1, app="mixed_app:app")
        h.wait_ready(proc, 1)
        m = h.producer(redis_url)
        done = m.add.add_task(2, 3, timeout=20)  # type: ignore[attr-defined]
        assert done is not None and done.returning == 5
        assert m.app.ping() is True  # type: ignore[attr-defined]
    finally:
        h.close()


@pytest.mark.parametrize("form", [["json=true"], ["--json"]])
def test_stats_inspect_tasks_lists_the_registered_tasks(form: list[str]) -> None:
    out = stats("inspect", "tasks", *form)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [r["name"] for r in rows] == sorted(r["name"] for r in rows) and {"add", "fail", "gen"} <= {
        r["name"] for r in rows}
    picked = stats("inspect", "tasks", "add", "fail", *form)
    assert [r["name"] for r in json.loads(picked.stdout)] == ["add", "fail"]


def test_stats_inspect_task_and_app() -> None:
    one = stats("inspect", "task", "gen", "json=true")
    assert one.returncode == 0, one.stderr
    assert json.loads(one.stdout)["name"] == "gen" and json.loads(one.stdout)["kind"] == "generator"
    table = stats("inspect", "task", "add")
    assert table.returncode == 0 and "mixed_app.add" in table.stdout
    app = stats("inspect", "app", "json=true")
    assert app.returncode == 0, app.stderr
    data = json.loads(app.stdout)
    assert data["app"] == "stats" and "add" in data["tasks"] and data["workers"] == []


@pytest.mark.parametrize(("words", "code", "says"), [
    (["inspect", "task", "nope"], 1, "no task 'nope' in app 'stats'; registered: add,"),
    (["inspect", "task"], 2, "takes one task name"),
    (["inspect", "tasks", "json=maybe"], 2, "json='maybe' is not true or false"),
    (["inspect", "tasks", "color=red"], 2, "unknown option 'color=red'"),
    ([], 2, ""),
])
def test_stats_refuses_what_it_cannot_do_in_one_line(words: list[str], code: int, says: str) -> None:
    out = stats(*words)
    assert out.returncode == code, (out.stdout, out.stderr)
    assert says in out.stderr and out.stderr.count("\n") <= 1


@pytest.mark.parametrize("app_flag", ["-A", "-app"])
def test_web_in_qtasks_shape_serves_the_webview_on_the_port_before_the_command(
        app_flag: str, redis_url: str, app_name: str, tmp_path: Path) -> None:
    port, log, token = free_port(), tmp_path / "web.log", "qtasks-shape-token-0123456789"
    proc = start_cli([app_flag, "web_app:app", "--port", str(port), "web"],
                     cli_env(redis_url, app_name, QTASKS_WEB_TOKEN=token), log=log)
    try:
        for _ in range(300):
            assert proc.poll() is None, log.read_text()
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/api/v1/tasks", timeout=1,
                                   headers={"authorization": f"Bearer {token}"})
                break
            except httpx.TransportError:
                time.sleep(0.05)
        else:
            raise AssertionError(f"web did not serve on --port {port}: {log.read_text()}")
        assert answer.status_code == 200, answer.text
        assert f"serving app {app_name!r} on http://127.0.0.1:{port}/" in log.read_text()
    finally:
        assert stop_cli(proc, 20) == 0


@pytest.mark.parametrize(("words", "says"), [
    (["--port", "8000", "run"], "run takes no port"),
    (["--port", "8000", "web", "--port", "8001"], "two ports"),
    (["stats", "--stats-app", "mod:stats", "inspect", "app"], "a custom stats object has no counterpart"),
])
def test_qtasks_flags_without_a_meaning_here_are_refused_in_one_line(words: list[str], says: str) -> None:
    out = subprocess.run([sys.executable, "-m", "qtasks_fast", "-A", "mixed_app:app", *words],
                         env=cli_env("memory://", "shape"), cwd=APPS, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and says in out.stderr and out.stderr.count("\n") == 1, (out.stdout, out.stderr)
