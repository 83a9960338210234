"""QTasks' gRPC plugins: ``SyncgRPCPlugin(app)`` / ``AsyncgRPCPlugin(app)`` serve ``qtasks.v1.QTasksService`` and our
``qtasks_fast.v1.QTasksFast`` (:mod:`qtasks_fast.grpc`) on one port, as ``qtasks-fast grpc`` does.

    app.add_plugin(AsyncgRPCPlugin(app, token="s3cret"))   # every worker of the app serves 127.0.0.1:50051

The worker starts the server with the plugins (``start``) and stops it after draining (``stop``). Both names
exist so QTasks code keeps working; they differ in nothing but the client they expect (either serves a sync
or an async app, see :mod:`qtasks_fast.plugins.grpc.service`).

Deliberately safer than QTasks (which listens on 0.0.0.0 with no authentication): the default host is
127.0.0.1, and every call must carry the metadata ``authorization: Bearer <token>``, the token from ``token=``
or the same sources as ``qtasks-fast grpc`` and the web app (``token_file=``, ``QTASKS_GRPC_TOKEN``,
``QTASKS_WEB_TOKEN``). With no token the server refuses to start, unless ``insecure=True`` says that an open
queue is wanted, and then only on a loopback host; off loopback a token shorter than 16 characters is refused,
as by the CLI. ``tls_cert=``/``tls_key=`` (and ``tls_client_ca=`` for
mutual TLS) serve TLS as the CLI's flags do; plaintext on a network address is logged as a warning at start.

One process per port: every worker process of a pool (``--processes N``) starts the plugin, and the port is
bound without SO_REUSEPORT, so the first serves and the others stand by, saying so once at INFO and naming the
worker that serves (its id and pid, which it records beside the port's lock when it binds); a standby
tries the port again every :data:`STANDBY_SECONDS` and takes over when the serving process has gone (a crash,
a restart), so the port does not wait for the supervisor to bring that one back. Why not SO_REUSEPORT for all:
the kernel would as readily share the port with a stale pool or another program of the same user, whose calls
would then reach the wrong code silently. In a pool of one process a taken port is an error (another program
holds it). ``SyncgRPCPlugin``'s ``start()``/``stop()`` are plain calls as in QTasks (the server then runs on
the helper loop), so QTasks code that starts the plugin itself keeps working.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import tempfile
from collections.abc import Iterator
from typing import Any

import grpc

from qtasks_fast.exceptions import ConfigError
from qtasks_fast.log import get_logger
from qtasks_fast.plugins import BasePlugin

log = get_logger("grpc")
TOKEN_ENV = "QTASKS_GRPC_TOKEN"
#: seconds between a standby process's tries of a port another process of its pool serves
STANDBY_SECONDS = 2.0
#: QTasks' message size limits (40 MiB each way)
DEFAULT_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_send_message_length", 40 * 1024 * 1024),
    ("grpc.max_receive_message_length", 40 * 1024 * 1024),
]


def _owner_path(port: int) -> str:
    return os.path.join(tempfile.gettempdir(), f"qtasks_fast-grpc-{port}.owner")


def note_owner(port: int, worker_id: str) -> None:
    """Record which worker serves ``port`` (its id and pid), for the standbys to name it."""
    with contextlib.suppress(OSError):
        with open(_owner_path(port), "w") as f:
            f.write(f"{worker_id} {os.getpid()}\n")


def owner(port: int) -> str:
    """``worker <id> (pid N)`` serving ``port`` as recorded by :func:`note_owner`, or ``another process``."""
    try:
        with open(_owner_path(port)) as f:
            worker_id, pid = f.read().split()
        os.kill(int(pid), 0)  # still there: the record is not a dead process's
    except (OSError, ValueError):
        return "another process"
    return f"worker {worker_id} (pid {pid})"


@contextlib.contextmanager
def bind_lock(port: int) -> Iterator[None]:
    """An exclusive lock of ``port`` among this host's processes (a file lock in the temp directory), held for
    milliseconds; none where ``fcntl`` is missing (the bind itself still decides, with grpc's error line)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    path = os.path.join(tempfile.gettempdir(), f"qtasks_fast-grpc-{port}.lock")
    with open(path, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(held, fcntl.LOCK_UN)


def port_free(host: str, port: int) -> bool:
    """Whether ``host:port`` can be bound now (no one listens there), tried as grpc binds (SO_REUSEADDR)."""
    if not port:
        return True
    host = host.strip("[]")
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        return True  # grpc's own bind says what is wrong with the name
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError:
                return False
    return True


class AsyncgRPCPlugin(BasePlugin):
    """Serve AddTask/GetTask of ``app`` over gRPC at ``host:port`` while a worker of the app runs."""

    #: it serves from :meth:`start`/:meth:`stop`, never from a trigger: ``add_plugin`` takes any trigger names
    #: for it (QTasks' examples pass ``trigger_names=["-"]``) and registers it at ``worker_start`` only
    serves_from_start = True

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 50051, *,
                 max_concurrent_rpcs: int | None = None, grpc_options: list[tuple[str, Any]] | None = None,
                 token: str | None = None, insecure: bool = False, token_file: str | None = None,
                 tls_cert: str | None = None, tls_key: str | None = None, tls_client_ca: str | None = None) -> None:
        super().__init__()
        self.app, self.host, self.port = app, host, int(port)
        self.max_concurrent_rpcs = max_concurrent_rpcs
        self.grpc_options = list(grpc_options or DEFAULT_OPTIONS)
        self.token, self.insecure, self.token_file = token, insecure, token_file
        self.tls = (tls_cert, tls_key, tls_client_ca)
        if bool(tls_cert) != bool(tls_key) or (tls_client_ca and not tls_cert):
            raise ConfigError(f"{type(self).__name__}: pass tls_cert= and tls_key= together (tls_client_ca= needs "
                              "both), or none of them")
        self._server: grpc.aio.Server | None = None
        self._tls: grpc.ServerCredentials | None = None
        #: while another process of the pool serves the port: the task trying it again
        self._standby: asyncio.Task[None] | None = None
        #: the id of the worker serving (named in the log and to the pool's standbys)
        self._worker_id = f"pid-{os.getpid()}"

    def _token(self) -> str | None:
        """The token to require, read at start (a producer importing the app needs none); None when insecure."""
        from qtasks_fast.cli_web import loopback, short_token
        from qtasks_fast.grpc.security import resolve_token

        token = self.token or None
        if token is None:
            found, configured = resolve_token(self.token_file)
            token = found if configured else None
        if token is None and not self.insecure:
            raise ConfigError(f"{type(self).__name__}: no token; pass token= or token_file=, or set {TOKEN_ENV} or "
                              "QTASKS_WEB_TOKEN (or insecure=True to serve without authentication)")
        if token is None and not loopback(self.host):
            raise ConfigError(f"{type(self).__name__}: refusing to serve {self.host} without a token: other hosts "
                              f"could reach it; pass token= or set {TOKEN_ENV}")
        short = None if token is None else short_token(token, True, self.host, f"token= (or {TOKEN_ENV})")
        if short is not None:  # the same guard as `qtasks-fast grpc`/`web`: a short token off loopback is guessable
            raise ConfigError(f"{type(self).__name__}: {short}")
        if not loopback(self.host) and not self.tls[0]:
            log.warning("%s serves plain gRPC on %s: the token travels in clear unless a TLS proxy is in front; "
                        "pass tls_cert= and tls_key=", type(self).__name__, self.host)
        return token

    def _credentials(self) -> grpc.ServerCredentials | None:
        cert, key, client_ca = self.tls
        if not (cert and key):
            return None
        from qtasks_fast.grpc.security import credentials

        return credentials(cert, key, client_ca)

    async def start(self, **kwargs: Any) -> None:
        """Bind and start serving; a no-op when already serving (or standing by).

        ``worker`` (passed by the worker) tells the size of its pool: with more than one process, a port taken
        (by a sibling, normally) makes this one stand by instead of failing."""
        if self._server is not None or self._standby is not None:
            return
        token = self._token()
        self._tls = self._credentials()
        worker = kwargs.get("worker")
        self._worker_id = str(getattr(worker, "worker_id", None) or f"pid-{os.getpid()}")
        if await self._serve(token):
            return
        from qtasks_fast.grpc.security import address as bound_address

        address = bound_address(self.host, self.port)
        if int(getattr(worker, "processes", 1) or 1) <= 1:
            raise ConfigError(f"{type(self).__name__}: cannot listen on {address}: the port is taken by another "
                              "program; pass another port=")
        log.info("gRPC port %s is served by %s of this pool; worker %s stands by and takes it over if it frees",
                 address, owner(self.port), self._worker_id)
        self._standby = asyncio.get_running_loop().create_task(self._stand_by(token))

    async def _serve(self, token: str | None) -> bool:
        """Bind and start the server; False when the port is taken.

        The port is asked first (grpc logs an error line of its own on each failed bind), under a lock of the
        host held until the server listens: processes of a pool starting together then never both see it free.
        """
        from qtasks_fast.grpc.security import address
        from qtasks_fast.grpc.server import build_server  # here: qtasks_fast.grpc imports this package's servicer

        options = [*self.grpc_options, ("grpc.so_reuseport", 0)]
        server = build_server(self.app, token, options=options, max_concurrent_rpcs=self.max_concurrent_rpcs)
        with bind_lock(self.port):
            port = 0
            if port_free(self.host, self.port):
                where = address(self.host, self.port)
                try:
                    port = (server.add_secure_port(where, self._tls) if self._tls is not None
                            else server.add_insecure_port(where))
                except RuntimeError:
                    port = 0
            if port:
                await server.start()
                note_owner(port, self._worker_id)
        if not port:
            await server.stop(None)
            return False
        self.port = port
        self._server = server
        log.info("gRPC QTasksService on %s:%d (%s), with qtasks_fast.v1.QTasksFast%s: served by worker %s (pid %d)",
                 self.host, self.port, "TLS" if self._tls is not None else "plaintext",
                 "" if token else " (insecure: no token)", self._worker_id, os.getpid())
        return True

    async def _stand_by(self, token: str | None) -> None:
        while not await self._serve(token):
            await asyncio.sleep(STANDBY_SECONDS)
        self._standby = None

    async def stop(self, **kwargs: Any) -> None:
        """Stop serving (or standing by), letting calls in flight finish for up to 3 seconds."""
        standby, self._standby = self._standby, None
        if standby is not None:
            standby.cancel()
        server, self._server = self._server, None
        if server is not None:
            from qtasks_fast.grpc.server import GRACE, stop_server

            await stop_server(server, GRACE)


class SyncgRPCPlugin(AsyncgRPCPlugin):
    """QTasks' plugin of a sync app: ``start()``/``stop()`` are plain calls as there (the worker runs them in a
    thread); the server runs on the helper loop and the app's blocking calls in threads."""

    def start(self, **kwargs: Any) -> None:  # type: ignore[override]
        """Bind and serve until :meth:`stop` (see :meth:`AsyncgRPCPlugin.start`)."""
        from qtasks_fast.portal import portal

        portal().run(super().start(**kwargs))

    def stop(self, **kwargs: Any) -> None:  # type: ignore[override]
        """Stop serving (see :meth:`AsyncgRPCPlugin.stop`)."""
        from qtasks_fast.portal import portal

        portal().run(super().stop(**kwargs))
