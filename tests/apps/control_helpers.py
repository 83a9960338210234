"""Helpers of the task-control tests: a fresh producer copy of control_app, and one-shot CLI runs."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from unittest import mock

APPS = Path(__file__).resolve().parent
ROOT = APPS.parent.parent
_loaded = 0


def load_app(app_name: str, broker_url: str, **env: str) -> Any:
    """A fresh module object of control_app.py bound to ``app_name`` and ``broker_url``."""
    global _loaded
    _loaded += 1
    spec = importlib.util.spec_from_file_location(f"control_app_{app_name}_{_loaded}", APPS / "control_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with mock.patch.dict(os.environ, {"TEST_APP_NAME": app_name, "QTASKS_BROKER_URL": broker_url, **env}):
        spec.loader.exec_module(module)
    return module


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
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(interval)
