"""``qtasks-fast -A app web`` as a process (issue 13): served on loopback, it answers the REST API with the
configured token, streams a task's status changes live over SSE while a worker runs it, prints a generated
token once when none is configured, and refuses a network address without a token or TLS."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from apps.web_app import build
from conftest import APPS, cli_env, free_port, start_cli, stop_cli

from qtasks_fast.testing import WorkerThread

TOKEN = "process-test-token-abcdef012345"


def wait_up(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    for _ in range(200):
        assert proc.poll() is None, log.read_text()
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError(f"the web server did not start: {log.read_text()}")


async def test_the_server_streams_a_task_live_and_answers_the_api(redis_url: str, app_name: str,
                                                                  tmp_path: Path) -> None:
    port, log = free_port(), tmp_path / "web.log"
    proc = start_cli(["-A", "web_app:app", "web", "--port", str(port)],
                     cli_env(redis_url, app_name, QTASKS_WEB_TOKEN=TOKEN), log=log)
    try:
        wait_up(port, proc, log)
        base, auth = f"http://127.0.0.1:{port}", {"authorization": f"Bearer {TOKEN}"}
        app = build(app_name, redis_url)
        async with httpx.AsyncClient(base_url=base, headers=auth, timeout=10) as c:
            assert (await c.get("/api/v1/tasks")).status_code == 200
            assert (await c.get("/api/v1/tasks", headers={"authorization": "Bearer x"})).status_code == 401
            with WorkerThread(app):
                async with c.stream("GET", "/api/v1/events") as stream:
                    uid = (await c.post("/api/v1/tasks", json={"name": "add", "args": [2, 3]})).json()["uuid"]
                    seen: list[str] = []

                    async def until_success() -> None:
                        async for line in stream.aiter_lines():
                            if line.startswith("data: "):
                                event = json.loads(line[6:])
                                if event["uuid"] == uid:
                                    seen.append(event["status"])
                                    if event["status"] == "success":
                                        return

                    await asyncio.wait_for(until_success(), 10)
            assert seen[0] == "new" and seen[-1] == "success"
            assert (await c.get(f"/api/v1/tasks/{uid}")).json()["returning"] == 5
    finally:
        assert stop_cli(proc, 20) == 0
    assert TOKEN not in log.read_text()  # a configured token is never printed


def test_without_a_token_it_prints_one_once_and_a_network_address_is_refused(redis_url: str, app_name: str,
                                                                             tmp_path: Path) -> None:
    env = cli_env(redis_url, app_name)
    env.pop("QTASKS_WEB_TOKEN", None)
    refused = subprocess.run([sys.executable, "-m", "qtasks_fast", "-A", "web_app:app", "web", "--host", "0.0.0.0"],
                             env=env, cwd=APPS, capture_output=True, text=True, timeout=30)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert "refusing to listen on 0.0.0.0" in refused.stderr and "QTASKS_WEB_TOKEN" in refused.stderr
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    allowed = start_cli(["-A", "web_app:app", "web", "--host", "0.0.0.0", "--port", str(free_port()),
                         "--token-file", str(token_file), "--read-only"], env, log=tmp_path / "net.log")
    port, log = free_port(), tmp_path / "web.log"
    proc = start_cli(["-A", "web_app:app", "web", "--port", str(port)], env, log=log)
    try:
        wait_up(port, proc, log)
        lines = log.read_text().splitlines()
        token = lines[lines.index(next(x for x in lines if "sign in with this one" in x)) + 1].strip()
        assert len(token) >= 32 and log.read_text().count(token) == 1
        r = httpx.get(f"http://127.0.0.1:{port}/api/v1/workers", headers={"authorization": f"Bearer {token}"})
        assert r.status_code == 200
        time.sleep(0.5)
        assert allowed.poll() is None, (tmp_path / "net.log").read_text()  # a configured token: it serves
    finally:
        assert stop_cli(proc, 20) == 0
        stop_cli(allowed, 20)


@pytest.mark.parametrize(("flags", "says"), [
    (["--ssl-certfile", "x.pem"], "--ssl-keyfile"), (["--root-path", "tasks"], "--root-path"),
    (["--token-file", "/nonexistent/token"], "/nonexistent/token"),
    (["--ssl-certfile", "/nonexistent/c.pem", "--ssl-keyfile", "/nonexistent/k.pem"], "/nonexistent/c.pem"),
    (["--ssl-certfile", "{tmp}/c.pem", "--ssl-keyfile", "{tmp}/c.pem"], "PEM"),  # files that are no PEM pair
    (["--port", "{taken}"], "cannot listen"),
])
def test_bad_flags_are_one_line_and_exit_2(flags: list[str], says: str, tmp_path: Path) -> None:
    (tmp_path / "c.pem").write_text("not a certificate\n")
    with socket.create_server(("127.0.0.1", 0)) as taken:
        flags = [f.format(tmp=tmp_path, taken=taken.getsockname()[1]) for f in flags]
        r = subprocess.run([sys.executable, "-m", "qtasks_fast", "-A", "web_app:app", "web", *flags],
                           env=cli_env("memory://", "badflags", QTASKS_WEB_TOKEN=TOKEN), cwd=APPS,
                           capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    assert says in r.stderr and "serving" not in r.stderr, r.stderr


@pytest.mark.parametrize("command", ["web", "grpc"])
def test_a_short_token_is_refused_on_a_network_address(command: str) -> None:
    """A configured token under 16 characters could be guessed from the network: refused there, in one line
    that does not show it."""
    r = subprocess.run([sys.executable, "-m", "qtasks_fast", "-A", "web_app:app", command, "--host", "0.0.0.0"],
                       env=cli_env("memory://", "shorttoken", QTASKS_WEB_TOKEN="abc123xyz"), cwd=APPS,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "9-character token" in r.stderr and "16+" in r.stderr and "abc123xyz" not in r.stderr


def test_nice_lowers_the_server_s_cpu_priority_and_a_bad_value_is_one_line(redis_url: str, app_name: str,
                                                                           tmp_path: Path) -> None:
    port, log = free_port(), tmp_path / "web.log"
    env = cli_env(redis_url, app_name, QTASKS_WEB_TOKEN=TOKEN)
    proc = start_cli(["-A", "web_app:app", "web", "--port", str(port), "--nice", "7"], env, log=log)
    try:
        wait_up(port, proc, log)
        mine = int(Path("/proc/self/stat").read_text().rpartition(")")[2].split()[16])
        theirs = int(Path(f"/proc/{proc.pid}/stat").read_text().rpartition(")")[2].split()[16])
        assert theirs == min(19, mine + 7), (mine, theirs)
    finally:
        stop_cli(proc)
    bad = subprocess.run([sys.executable, "-m", "qtasks_fast", "-A", "web_app:app", "web", "--nice", "25"], env=env,
                         cwd=APPS, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--nice 25: pass 0 to 19" in bad.stderr and "Traceback" not in bad.stderr
