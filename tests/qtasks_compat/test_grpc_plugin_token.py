"""QTasks' gRPC plugin on a network address: a short token is refused, as ``qtasks-fast grpc``/``web`` refuse it."""

from __future__ import annotations

import socket

import pytest

pytest.importorskip("grpc")

from qtasks_fast import asyncio as qasyncio  # noqa: E402
from qtasks_fast.exceptions import ConfigError  # noqa: E402
from qtasks_fast.plugins.grpc import AsyncgRPCPlugin  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_plugin_refuses_a_short_token_off_loopback_and_says_how_long() -> None:
    """Review 11 finding 15: ``token="a"`` on 0.0.0.0 was served (anyone could guess it)."""
    app = qasyncio.QueueTasks("grpc-short-token", broker_url="memory://")
    plugin = AsyncgRPCPlugin(app, host="0.0.0.0", port=free_port(), token="a")
    try:
        with pytest.raises(ConfigError, match="1-character token.*16\\+ random characters"):
            await plugin.start()
        assert plugin._server is None
    finally:
        await plugin.stop()


def test_loopback_keeps_accepting_a_short_token() -> None:
    """On 127.0.0.1 only local processes reach the port: a short token stays allowed, as with the CLI."""
    app = qasyncio.QueueTasks("grpc-short-token-lo", broker_url="memory://")
    assert AsyncgRPCPlugin(app, host="127.0.0.1", token="a")._token() == "a"
