"""The thin transport adapter: a ``grpc.aio`` server carrying both services of one app.

``qtasks.v1.QTasksService`` (QTasks' protocol, :mod:`qtasks_fast.plugins.grpc.service`) and
``qtasks_fast.v1.QTasksFast`` (:mod:`qtasks_fast.grpc.servicer`) behind one token interceptor, with the standard
``grpc.health.v1.Health`` and server reflection QTasks' plugin serves too (a Kubernetes gRPC probe, ``grpcurl
list``). Health answers without the token (a probe sends no metadata, and it tells only whether the server
serves: SERVING, then NOT_SERVING while it stops); reflection is behind the token like the services. Used by
``qtasks-fast grpc`` (:func:`serve`) and by the gRPC plugins, which bind it their own way (a pool's standby).
Nothing here knows a task: swapping the transport means replacing this module, not the services.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from qtasks_fast.exceptions import ConfigError
from qtasks_fast.grpc.security import TokenInterceptor, address
from qtasks_fast.grpc.servicer import QTasksFastServicer
from qtasks_fast.grpc.v1 import qtasks_fast_pb2_grpc
from qtasks_fast.log import get_logger

if TYPE_CHECKING:
    from qtasks_fast.app import BaseQueueTasks

log = get_logger("grpc")
#: QTasks' message size limits (40 MiB each way)
DEFAULT_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_send_message_length", 40 * 1024 * 1024),
    ("grpc.max_receive_message_length", 40 * 1024 * 1024),
]
#: seconds calls in flight (open watch streams too) get to finish when the server stops
GRACE = 3.0
#: the health servicer of each server :func:`build_server` made, told NOT_SERVING by :func:`stop_server`
_HEALTH: weakref.WeakKeyDictionary[grpc.aio.Server, health.aio.HealthServicer] = weakref.WeakKeyDictionary()


def build_server(app: BaseQueueTasks, token: str | None, *, read_only: bool = False,
                 options: list[tuple[str, Any]] | None = None,
                 max_concurrent_rpcs: int | None = None) -> grpc.aio.Server:
    """An unbound server of both services for ``app``; ``token`` None serves without authentication."""
    from qtasks_fast.plugins.grpc.core import qtasks_pb2_grpc
    from qtasks_fast.plugins.grpc.service import QTasksServicer

    interceptors = [TokenInterceptor(token)] if token is not None else []
    server = grpc.aio.server(options=list(options or DEFAULT_OPTIONS), interceptors=interceptors,
                             maximum_concurrent_rpcs=max_concurrent_rpcs)
    qtasks_pb2_grpc.add_QTasksServiceServicer_to_server(QTasksServicer(app, read_only=read_only), server)
    qtasks_fast_pb2_grpc.add_QTasksFastServicer_to_server(QTasksFastServicer(app, read_only=read_only), server)
    checks = health.aio.HealthServicer()  # "" is SERVING from the start: it answers once the server listens
    from qtasks_fast.grpc.v1 import qtasks_fast_pb2
    from qtasks_fast.plugins.grpc.core import qtasks_pb2

    served = (qtasks_pb2.DESCRIPTOR.services_by_name["QTasksService"].full_name,
              qtasks_fast_pb2.DESCRIPTOR.services_by_name["QTasksFast"].full_name)
    health_pb2_grpc.add_HealthServicer_to_server(checks, server)
    reflection.enable_server_reflection((*served, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    _HEALTH[server] = checks
    return server


async def stop_server(server: grpc.aio.Server, grace: float | None) -> None:
    """Say NOT_SERVING to health checks (a load balancer stops sending new calls), then stop, letting calls in
    flight finish for ``grace`` seconds."""
    checks = _HEALTH.pop(server, None)
    if checks is not None:
        await checks.enter_graceful_shutdown()
    await server.stop(grace)


async def serve(app: BaseQueueTasks, host: str, port: int, token: str, *, read_only: bool = False,
                tls: grpc.ServerCredentials | None = None,
                ready: Callable[[int], None] | None = None) -> None:
    """Serve until SIGINT/SIGTERM, then stop gracefully; ``ready(port)`` once listening.
    :class:`ConfigError` when the address cannot be bound."""
    server = build_server(app, token, read_only=read_only, options=[*DEFAULT_OPTIONS, ("grpc.so_reuseport", 0)])
    where = address(host, port)
    try:
        bound = server.add_secure_port(where, tls) if tls is not None else server.add_insecure_port(where)
    except RuntimeError:
        bound = 0
    if not bound:
        raise ConfigError(f"cannot listen on {where}: the port is taken or the address is not this host's; "
                          "pass another --port or --host")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    try:
        if ready is not None:
            ready(bound)
        await stop.wait()
    finally:
        await stop_server(server, GRACE)
        await _leftovers()


async def _leftovers() -> None:
    """Cancel what still runs after the server stopped, waiting at most :data:`GRACE` seconds; a task that ignores
    its cancellation (a client library that swallowed it) would otherwise hold the process forever in
    ``asyncio.run``'s cleanup, so the process then ends at once, saying so."""
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in others:
        task.cancel()
    if others:
        _, pending = await asyncio.wait(others, timeout=GRACE)
        if pending:
            log.warning("gRPC server stopped; %d task(s) ignored cancellation, exiting without them", len(pending))
            logging.shutdown()
            sys.stderr.flush()
            os._exit(0)
