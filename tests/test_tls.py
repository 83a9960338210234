"""``rediss://`` (TLS) and AUTH URLs end to end, against a private redis-server with TLS on."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port, wait_redis

from qtasks_fast import QueueTasks
from qtasks_fast.testing import WorkerThread

PASSWORD = "tls-s3cret"


def make_certs(d: Path) -> None:
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=qtasks-test-ca",
        "-keyout", "ca.key", "-out", "ca.crt")
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out",
        "server.csr")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
        "-out", "server.crt", "-extfile", "san.ext")


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[str]:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make the test certificates: apt-get install openssl")
    make_certs(tmp_path)
    port = free_port()
    proc = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", "--port", "0", "--tls-port", str(port), "--bind",
         "127.0.0.1", "--tls-cert-file", str(tmp_path / "server.crt"), "--tls-key-file",
         str(tmp_path / "server.key"), "--tls-ca-cert-file", str(tmp_path / "ca.crt"), "--tls-auth-clients", "no",
         "--requirepass", PASSWORD, "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"rediss://default:{PASSWORD}@127.0.0.1:{port}/0?ssl_ca_certs={tmp_path / 'ca.crt'}"
    try:
        wait_redis(url)
        yield url
    finally:
        proc.kill()
        proc.wait()


def test_tasks_run_over_tls_with_auth(tls_redis: str, app_name: str) -> None:
    app = QueueTasks(app_name, broker_url=tls_redis)

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    with WorkerThread(app):
        assert add.add_task(2, 3, timeout=10).returning == 5  # type: ignore[union-attr]
    assert PASSWORD not in repr(app) and PASSWORD not in repr(app.broker) and PASSWORD not in repr(app.storage)
    assert "***" in repr(app.broker)


def test_plain_connection_to_a_tls_port_fails_clearly(tls_redis: str, app_name: str) -> None:
    from qtasks_fast import BrokerUnavailable

    plain = tls_redis.replace("rediss://", "redis://").split("?")[0]
    app = QueueTasks(app_name, broker_url=plain)
    with pytest.raises(BrokerUnavailable, match=r"cannot reach Redis at redis://default:\*\*\*@127.0.0.1"):
        app.add_task("anything")
