"""``qtasks-fast -A mod:app grpc``: serve ``qtasks.v1.QTasksService`` and ``qtasks_fast.v1.QTasksFast`` for the app
(:mod:`qtasks_fast.grpc`), so services in any language submit, follow and control its tasks.

Secure by default, as ``qtasks-fast web``: it binds 127.0.0.1; every call needs ``authorization: Bearer <token>``
with the web app's token (``--token-file``, ``QTASKS_GRPC_TOKEN`` or ``QTASKS_WEB_TOKEN``; none: one generated and
printed once); TLS and mutual TLS on request; a non-loopback ``--host`` is refused without a configured token or TLS.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qtasks_fast.app import BaseQueueTasks

OK, USAGE = 0, 2


def add_parser(sub: Any) -> None:
    from qtasks_fast import cli_broker
    from qtasks_fast.cli_types import whole

    p = sub.add_parser("grpc", help="serve the app over gRPC (qtasks.v1.QTasksService and qtasks_fast.v1.QTasksFast)",
                       description="Serve QTasks' qtasks.v1.QTasksService and qtasks_fast.v1.QTasksFast (submit, "
                                   "batch, get, list, cancel, restart, logs, watch) for the -A app, on any backend. "
                                   "Calls carry metadata 'authorization: Bearer <token>'; the token comes from "
                                   "--token-file, env QTASKS_GRPC_TOKEN or QTASKS_WEB_TOKEN; without one a token is "
                                   "generated and printed once. The .proto files: qtasks_fast/grpc/v1/ and "
                                   "qtasks_fast/plugins/grpc/core/.")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1, this host only); another address needs a "
                        "configured token (--token-file, QTASKS_GRPC_TOKEN or QTASKS_WEB_TOKEN) or TLS")
    p.add_argument("--port", type=whole(0, most=65535), default=50051,
                   help="TCP port (default 50051, QTasks'; 0: any free one)")
    p.add_argument("--read-only", action="store_true",
                   help="refuse AddTask, AddTasks, CancelTask and RestartTask with PERMISSION_DENIED")
    p.add_argument("--token-file", metavar="FILE",
                   help="read the token from FILE (first line); env QTASKS_GRPC_TOKEN or QTASKS_WEB_TOKEN otherwise")
    p.add_argument("--tls-cert", metavar="FILE", help="serve TLS with this certificate chain (PEM)")
    p.add_argument("--tls-key", metavar="FILE", help="... and this private key (PEM)")
    p.add_argument("--tls-client-ca", metavar="FILE",
                   help="mutual TLS: accept only clients with a certificate this CA (PEM) signed")
    cli_broker.add_arguments(p, "broker URL, as for run (env QTASKS_BROKER_URL; default: the app's)")


def _err(text: str) -> None:
    print(f"qtasks-fast grpc: {text}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace, load: Callable[[argparse.Namespace], BaseQueueTasks | None]) -> int:
    """Check the flags, load the app, serve until Ctrl-C/SIGTERM."""
    from qtasks_fast.cli_web import loopback, short_token
    from qtasks_fast.exceptions import ConfigError

    try:
        from qtasks_fast.grpc.security import address, credentials, resolve_token
    except ImportError:
        _err("the gRPC gateway needs grpcio and protobuf: pip install 'qtasks-fast[grpc]'")
        return USAGE

    if bool(args.tls_cert) != bool(args.tls_key):
        _err("--tls-cert and --tls-key go together: pass both for TLS, or neither")
        return USAGE
    if args.tls_client_ca and not args.tls_cert:
        _err("--tls-client-ca asks for mutual TLS: pass --tls-cert and --tls-key too")
        return USAGE
    try:
        token, configured = resolve_token(args.token_file)
        tls = credentials(args.tls_cert, args.tls_key, args.tls_client_ca) if args.tls_cert else None
    except ConfigError as exc:
        _err(str(exc))
        return USAGE
    if not loopback(args.host) and not (configured or tls):
        _err(f"refusing to listen on {args.host} with a generated token and no TLS: other hosts could reach it; "
             "set QTASKS_GRPC_TOKEN (or QTASKS_WEB_TOKEN, or --token-file), and serve TLS (--tls-cert/--tls-key)")
        return USAGE
    short = short_token(token, configured, args.host, "QTASKS_GRPC_TOKEN (or QTASKS_WEB_TOKEN, or --token-file)")
    if short:
        _err(short)
        return USAGE
    app = load(args)
    if app is None:
        return USAGE
    from qtasks_fast.grpc.server import serve

    if not configured:
        _err(f"no token configured (QTASKS_GRPC_TOKEN, QTASKS_WEB_TOKEN or --token-file): call with this one, valid "
             f"until the server stops:\n{token}")
    if not loopback(args.host) and tls is None:
        _err("warning: serving plain gRPC on a network address: the token travels in clear unless a TLS proxy "
             "is in front")

    def ready(port: int) -> None:
        mode = "mutual TLS" if args.tls_client_ca else "TLS" if tls else "plaintext"
        _err(f"serving app {app.name!r} over gRPC ({mode}) on {address(args.host, port)}"
             f"{' (read-only)' if args.read_only else ''}")

    try:
        asyncio.run(serve(app, args.host, args.port, token, read_only=args.read_only, tls=tls, ready=ready))
    except ConfigError as exc:
        _err(str(exc))
        return USAGE
    return OK
