"""The ``grpc`` benchmark suite runs (``--quick``) and reports each case through the gateway and in process, with
their ratio (no timing asserts: speed is what the suite measures, not what a test checks)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT


def test_the_grpc_suite_reports_every_case_next_to_the_python_api(redis_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    proc = subprocess.run([sys.executable, "-m", "qtasks_fast.benchmarks", "--quick", "--n", "200", "--suite", "grpc",
                           "--out", str(tmp_path), "--redis-url", redis_url], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = json.loads((tmp_path / "grpc.json").read_text())["rows"]
    assert [r["case"].split(" (")[0].split(",")[0] for r in rows] == [
        "AddTask one by one", "AddTask concurrent", "AddTasks", "WatchTasks"]
    for row in rows:
        assert row["gRPC"] > 0 and row["in-process Python"] > 0 and row["gRPC / Python"] > 0, row
