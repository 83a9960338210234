"""The gRPC gateway's setup rules in process (issue 14 review): ``qtasks-fast grpc`` without the grpc extra is one
line, and the plugins take the token from the same sources as the CLI and the web app and warn when they serve
plaintext beyond this host."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import grpc
import pytest

from qtasks_fast import asyncio as qasyncio
from qtasks_fast.cli import main
from qtasks_fast.exceptions import ConfigError
from qtasks_fast.grpc.security import resolve_token
from qtasks_fast.plugins.grpc import AsyncgRPCPlugin, qtasks_pb2, qtasks_pb2_grpc
from tests.conftest import free_port


def test_without_the_grpc_extra_the_cli_says_what_to_install(monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Finding 9: one line naming the extra, exit 2 (not a chained ImportError traceback)."""
    monkeypatch.setitem(sys.modules, "qtasks_fast.grpc.security", None)  # as when grpcio is not installed
    assert main(["-A", "qtasks_fast.app:QueueTasks", "grpc"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "qtasks-fast[grpc]" in err and "Traceback" not in err


def test_token_file_first_line_and_ipv6_address(tmp_path: Path) -> None:
    """Findings 12 and 8: a token file's first line; an IPv6 literal bound in brackets."""
    from qtasks_fast.grpc.security import address

    (tmp_path / "t").write_text("  first-line-token-0123 \nsecond\n")
    assert resolve_token(str(tmp_path / "t")) == ("first-line-token-0123", True)
    assert (address("::1", 5), address("127.0.0.1", 5), address("[::1]", 5)) == ("[::1]:5", "127.0.0.1:5",
                                                                                   "[::1]:5")


@pytest.mark.parametrize("source", ["QTASKS_WEB_TOKEN", "token_file"])
async def test_plugin_reads_the_web_apps_token_sources(source: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Finding 7: one secret for the WebView, REST, the CLI gateway and the plugins."""
    monkeypatch.delenv("QTASKS_GRPC_TOKEN", raising=False)
    monkeypatch.delenv("QTASKS_WEB_TOKEN", raising=False)
    app = qasyncio.QueueTasks("grpc-token-sources", broker_url="memory://")
    kwargs: dict[str, str] = {}
    if source == "token_file":
        (tmp_path / "t").write_text("plugin-token-from-file\n")
        kwargs["token_file"] = str(tmp_path / "t")
    else:
        monkeypatch.setenv(source, "plugin-token-from-file")
    plugin = AsyncgRPCPlugin(app, port=free_port(), **kwargs)  # type: ignore[arg-type]
    await plugin.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{plugin.port}") as channel:
            stub = qtasks_pb2_grpc.QTasksServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.GetTask(qtasks_pb2.GetTaskRequest(uuid="00000000-0000-4000-8000-000000000000"),
                                   metadata=(("authorization", "Bearer plugin-token-from-file"),))
            assert info.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        await plugin.stop()


async def test_plugin_warns_when_serving_plaintext_on_a_network_address(caplog: pytest.LogCaptureFixture) -> None:
    """Finding 7: as the CLI warns; and TLS options come in pairs."""
    app = qasyncio.QueueTasks("grpc-plaintext", broker_url="memory://")
    plugin = AsyncgRPCPlugin(app, host="0.0.0.0", port=free_port(), token="a-token-of-enough-length")
    with caplog.at_level(logging.WARNING, logger="qtasks_fast"):
        await plugin.start()
    await plugin.stop()
    assert any("plain gRPC on 0.0.0.0" in r.getMessage() for r in caplog.records)
    with pytest.raises(ConfigError, match="tls_cert= and tls_key= together"):
        AsyncgRPCPlugin(app, token="t", tls_cert="c.pem")
