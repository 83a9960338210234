"""QTasks' gRPC plugins: ``SyncgRPCPlugin(app)`` / ``AsyncgRPCPlugin(app)`` serve ``qtasks.v1.QTasksService``.

    app.add_plugin(AsyncgRPCPlugin(app, token="s3cret"))   # every worker of the app serves 127.0.0.1:50051

The worker starts the server with the plugins (``start``) and stops it after draining (``stop``). Both names
exist so QTasks code keeps working; they differ in nothing but the client they expect (either serves a sync
or an async app, see :mod:`qtasks_fast.plugins.grpc.service`).

Deliberately safer than QTasks (which listens on 0.0.0.0 with no authentication): the default host is
127.0.0.1, and every call must carry the metadata ``authorization: Bearer <token>`` (token from ``token=`` or
the environment variable ``QTASKS_GRPC_TOKEN``). With no token the server refuses to start, unless
``insecure=True`` says that an open queue is wanted. The port is bound without SO_REUSEPORT: a second process
on the same port fails to start the server (a one-line error in its log) instead of silently sharing calls;
run the pool with one process per port (``--processes 1``) or give each pool its own port.
"""

from __future__ import annotations

import os
from typing import Any

import grpc

from qtasks_fast.exceptions import ConfigError
from qtasks_fast.log import get_logger
from qtasks_fast.plugins import BasePlugin
from qtasks_fast.plugins.grpc.core import qtasks_pb2_grpc
from qtasks_fast.plugins.grpc.service import QTasksServicer

log = get_logger("grpc")
TOKEN_ENV = "QTASKS_GRPC_TOKEN"
#: QTasks' message size limits (40 MiB each way)
DEFAULT_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_send_message_length", 40 * 1024 * 1024),
    ("grpc.max_receive_message_length", 40 * 1024 * 1024),
]


class AsyncgRPCPlugin(BasePlugin):
    """Serve AddTask/GetTask of ``app`` over gRPC at ``host:port`` while a worker of the app runs."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 50051, *,
                 max_concurrent_rpcs: int | None = None, grpc_options: list[tuple[str, Any]] | None = None,
                 token: str | None = None, insecure: bool = False) -> None:
        super().__init__()
        self.app, self.host, self.port = app, host, int(port)
        self.max_concurrent_rpcs = max_concurrent_rpcs
        self.grpc_options = list(grpc_options or DEFAULT_OPTIONS)
        self.token, self.insecure = token, insecure
        self._server: grpc.aio.Server | None = None

    def _token(self) -> str | None:
        """The token to require, read at start (a producer importing the app needs none); None when insecure."""
        token = self.token or os.environ.get(TOKEN_ENV) or None
        if token is None and not self.insecure:
            raise ConfigError(f"{type(self).__name__}: no token; pass token= or set {TOKEN_ENV} "
                              "(or insecure=True to serve without authentication)")
        return token

    async def start(self, **kwargs: Any) -> None:
        """Bind and start serving; a no-op when already serving."""
        if self._server is not None:
            return
        token = self._token()
        options = [*self.grpc_options, ("grpc.so_reuseport", 0)]
        server = grpc.aio.server(options=options, maximum_concurrent_rpcs=self.max_concurrent_rpcs)
        qtasks_pb2_grpc.add_QTasksServiceServicer_to_server(QTasksServicer(self.app, token), server)
        address = f"{self.host}:{self.port}"
        try:
            self.port = server.add_insecure_port(address) or self.port
        except RuntimeError as exc:
            raise ConfigError(f"{type(self).__name__}: cannot listen on {address} ({exc}); is the port taken? "
                              "pass another port=") from None
        await server.start()
        self._server = server
        log.info("gRPC QTasksService on %s:%d%s", self.host, self.port, "" if token else " (insecure: no token)")

    async def stop(self, **kwargs: Any) -> None:
        """Stop serving, letting calls in flight finish for up to 3 seconds."""
        server, self._server = self._server, None
        if server is not None:
            await server.stop(3.0)


class SyncgRPCPlugin(AsyncgRPCPlugin):
    """QTasks' name for the plugin of a sync app; the same server (the app's blocking calls run in a thread)."""
