"""A non-Python client (issue 14): examples/grpc-node/client.js, with @grpc/grpc-js and @grpc/proto-loader from
npm, submits a task to ``qtasks-fast grpc``, waits for its result and watches its status changes.

``npm ci`` runs once per lock file into a cache folder (``$QTASKS_NODE_CACHE`` or ``~/.cache/qtasks_fast``), never
into the repository; node and npm must be on PATH (.ci/run installs them when absent)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

from apps.grpckit import TOKEN, served
from apps.web_app import build
from conftest import ROOT

from qtasks_fast.testing import WorkerThread

EXAMPLE = ROOT / "examples" / "grpc-node"


def node_modules() -> Path:
    """The example's dependencies, installed by ``npm ci`` into a cache folder keyed by the lock file."""
    for tool in ("node", "npm"):
        assert shutil.which(tool), f"{tool} is needed for the Node.js example: apt-get install nodejs npm"
    lock = (EXAMPLE / "package-lock.json").read_bytes()
    base = Path(os.environ.get("QTASKS_NODE_CACHE", Path.home() / ".cache" / "qtasks_fast"))
    where = base / f"grpc-node-{hashlib.sha256(lock).hexdigest()[:16]}"
    if not (where / "node_modules" / "@grpc" / "grpc-js").is_dir():
        where.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy(EXAMPLE / name, where / name)
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=where, check=True,
                       capture_output=True, timeout=600)
    return where / "node_modules"


def test_the_node_client_submits_waits_and_watches(redis_url: str, app_name: str, tmp_path: Path) -> None:
    modules = node_modules()
    with served(redis_url, app_name, tmp_path / "grpc.log") as server, WorkerThread(build(app_name, redis_url)):
        env = {**os.environ, "NODE_PATH": str(modules), "QTASKS_GRPC_TOKEN": TOKEN}
        ran = subprocess.run(["node", str(EXAMPLE / "client.js"), server.target], env=env, capture_output=True,
                             text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    steps = {}
    for line in ran.stdout.splitlines():
        step = json.loads(line)
        steps.setdefault(step["step"], []).append(step)
    assert steps["result"][0]["status"] == "success" and steps["result"][0]["result"] == 5
    assert steps["watched"][0]["statuses"] == ["new", "process", "success"]
    assert steps["error"][0]["code"] == "INVALID_ARGUMENT" and steps["error"][0]["details"].startswith("uuid")
