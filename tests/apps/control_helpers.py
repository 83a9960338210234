"""Helpers of the task-control tests: a fresh producer copy of control_app, and one-shot CLI runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from apps import testkit
from apps.testkit import load_app_copy

APPS = testkit.APPS
ROOT = APPS.parent.parent
_loaded = 0


def load_app(app_name: str, broker_url: str, **env: str) -> Any:
    """A fresh module object of control_app.py bound to ``app_name`` and ``broker_url``."""
    global _loaded
    _loaded += 1
    return load_app_copy(APPS / "control_app.py", f"control_app_{app_name}_{_loaded}", app_name, broker_url, **env)


def cli_env(broker_url: str, app_name: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(QTASKS_BROKER_URL=broker_url, TEST_APP_NAME=app_name,
               PYTHONPATH=os.pathsep.join([str(APPS), str(ROOT), env.get("PYTHONPATH", "")]), **extra)
    return env


def cli(broker_url: str, app_name: str, *args: str, timeout: float = 30) -> tuple[int, str, str]:
    """``python -m qtasks_fast -A control_app ARGS`` to completion: (exit code, stdout, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "qtasks_fast", "-A", "control_app", *args],
                          env=cli_env(broker_url, app_name), cwd=APPS, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    return proc.returncode, proc.stdout, proc.stderr


def cli_json(broker_url: str, app_name: str, *args: str) -> Any:
    code, out, err = cli(broker_url, app_name, *args, "--json")
    assert code == 0, (args, code, out, err)
    return json.loads(out)


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail naming ``what`` otherwise."""
    return testkit.wait_for(predicate, timeout, what, interval)
