"""Shared fixtures: a reachable Redis, private redis-servers on free ports, and the CLI in a subprocess.

Tests never touch the process behind 127.0.0.1:6379; tests that stop or restart
Redis start their own ``redis-server`` with ``private_redis``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

ROOT = Path(__file__).resolve().parent.parent
APPS = Path(__file__).resolve().parent / "apps"
REDIS_URL = os.environ.get("QTASKS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_redis(url: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            redis.Redis.from_url(url).ping()
            return
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def ensure_local_redis(url: str = REDIS_URL) -> None:
    """Start redis-server on 127.0.0.1:6379 when nothing answers there (a bare machine, CI)."""
    try:
        redis.Redis.from_url(url).ping()
        return
    except redis.ConnectionError:
        if url != "redis://127.0.0.1:6379/0":
            pytest.fail(f"no Redis at {url} (QTASKS_TEST_REDIS_URL); start it first")
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("no Redis on 127.0.0.1:6379 and no redis-server binary to start one: apt-get install redis-server")
    subprocess.run([binary, "--daemonize", "yes", "--bind", "127.0.0.1", "--port", "6379", "--save", "",
                    "--appendonly", "no"], check=True, stdout=subprocess.DEVNULL)
    wait_redis(url)


@pytest.fixture(scope="session")
def redis_url() -> str:
    ensure_local_redis()
    return REDIS_URL


@pytest.fixture
def app_name() -> str:
    """A unique app name per test, so tests share a Redis without seeing each other's keys."""
    return f"t{uuid.uuid4().hex[:10]}"


class PrivateRedis:
    """A redis-server of our own on a free port (AOF on), that a test may stop and restart."""

    def __init__(self, workdir: Path, extra: list[str] | None = None) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.extra = extra or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir),
             "--appendonly", "yes", "--appendfsync", "always", "--save", "", *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_redis(self.url if "--requirepass" not in self.extra else self.auth_url())

    def auth_url(self) -> str:
        pw = self.extra[self.extra.index("--requirepass") + 1]
        return f"redis://default:{pw}@127.0.0.1:{self.port}/0"

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    r = PrivateRedis(tmp_path)
    r.start()
    yield r
    r.stop(signal.SIGKILL)


def cli_env(broker_url: str | None, app_name: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("QTASKS_BROKER_URL", None)
    if broker_url:
        env["QTASKS_BROKER_URL"] = broker_url
    env["TEST_APP_NAME"] = app_name
    env["PYTHONPATH"] = os.pathsep.join([str(APPS), str(ROOT), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def start_cli(args: list[str], env: dict[str, str], cwd: Path | None = None,
              log: Path | None = None) -> subprocess.Popen[bytes]:
    """``python -m qtasks_fast <args>`` in a subprocess (stderr to ``log`` when given)."""
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen([sys.executable, "-m", "qtasks_fast", *args], env=env, cwd=cwd or APPS,
                            stdout=out, stderr=subprocess.STDOUT if log else subprocess.DEVNULL)


def stop_cli(proc: subprocess.Popen[bytes], timeout: float = 40) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
