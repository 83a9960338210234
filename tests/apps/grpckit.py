"""What the gRPC gateway tests share: ``qtasks-fast -A web_app:app grpc`` in a process, stubs of both services,
status codes of failed calls, and test certificates (a CA, the server's, a client's for mutual TLS)."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
from conftest import cli_env, free_port, start_cli, stop_cli

from qtasks_fast.grpc.v1 import qtasks_fast_pb2 as pb
from qtasks_fast.grpc.v1 import qtasks_fast_pb2_grpc as pb_grpc
from qtasks_fast.plugins.grpc.core import qtasks_pb2_grpc

TOKEN = "grpc-gateway-test-token-0123456789"
AUTH = (("authorization", f"Bearer {TOKEN}"),)


class Served:
    """A running ``qtasks-fast grpc`` process: its address and its log."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc, self.port, self.log = proc, port, log
        self.target = f"127.0.0.1:{port}"

    def channel(self, credentials: grpc.ChannelCredentials | None = None) -> grpc.Channel:
        if credentials is None:
            return grpc.insecure_channel(self.target)
        return grpc.secure_channel(self.target, credentials)

    def ours(self, channel: grpc.Channel | None = None) -> pb_grpc.QTasksFastStub:
        return pb_grpc.QTasksFastStub(channel or self.channel())

    def qtasks(self, channel: grpc.Channel | None = None) -> qtasks_pb2_grpc.QTasksServiceStub:
        return qtasks_pb2_grpc.QTasksServiceStub(channel or self.channel())


@contextlib.contextmanager
def served(broker_url: str | None, app_name: str, log: Path, *flags: str, token: str | None = TOKEN,
           ready: Callable[[Served], None] | None = None) -> Iterator[Served]:
    """Serve ``web_app:app`` (its tasks: add, fail, sleeper, elsewhere) over gRPC until the block ends; the
    process must then exit 0 on SIGTERM."""
    env = cli_env(broker_url, app_name)
    env.pop("QTASKS_WEB_TOKEN", None)
    env.pop("QTASKS_GRPC_TOKEN", None)
    if token is not None:
        env["QTASKS_GRPC_TOKEN"] = token
    port = free_port()
    proc = start_cli(["-A", "web_app:app", "grpc", "--port", str(port), *flags], env, log=log)
    server = Served(proc, port, log)
    try:
        deadline = time.monotonic() + 30
        while "serving app" not in log.read_text(errors="replace"):
            assert proc.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, f"the gRPC server did not start: {log.read_text()}"
            time.sleep(0.05)
        yield server
    finally:
        assert stop_cli(proc, 20) == 0, log.read_text(errors="replace")


def code_of(call: Callable[[], Any]) -> tuple[grpc.StatusCode, str]:
    """The status code and details of a call that must fail."""
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    raise AssertionError("the call succeeded")


def json_value(text: str) -> pb.Value:
    return pb.Value(json=text)


def make_certs(d: Path) -> None:
    """ca.crt/key, server.crt/key for 127.0.0.1, client.crt/key signed by the CA (openssl)."""

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=qtasks-grpc-test-ca",
        "-keyout", "ca.key", "-out", "ca.crt")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for who in ("server", "client"):
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={who}", "-keyout", f"{who}.key", "-out",
            f"{who}.csr")
        run("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days",
            "2", "-out", f"{who}.crt", "-extfile", "san.ext")
