"""Helpers of the compat tests, for the QTasks way of testing an app: its module started as a plain
``python app.py`` process, the test process importing the same module and talking to that server through
the default (embedded) broker."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

SERVERS = Path(__file__).resolve().parent / "servers"
#: longest wait for a server to say it serves (a start, not a measured time)
START_TIMEOUT = 30.0


def load_app_module(path: Path) -> ModuleType:
    """Import an app file by path under a name of its own (``tests/apps`` holds other ``app_*`` modules)."""
    spec = importlib.util.spec_from_file_location(f"qtasks_compat_{path.stem}_{abs(hash(path))}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Server:
    """``python <script>`` started from another directory (the broker must not depend on the cwd)."""

    def __init__(self, script: Path, log: Path, cmd: list[str] | None = None) -> None:
        """``cmd`` (default ``python <script>``) runs in ``log``'s directory."""
        self.script, self.log = script, log
        env = {k: v for k, v in os.environ.items() if not k.startswith("QTASKS_")}
        env["PYTHONUNBUFFERED"] = "1"
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(cmd or [sys.executable, str(script)], cwd=log.parent, env=env, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_serving(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while "serving queues" not in self.output():
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.script.name} exited with {self.proc.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.script.name} did not start serving:\n{self.output()}")
            time.sleep(0.05)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode


def serve(script: Path, log: Path) -> Iterator[Server]:
    server = Server(script, log)
    try:
        server.wait_serving()
        yield server
    finally:
        server.stop()
