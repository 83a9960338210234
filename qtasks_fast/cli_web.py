"""``qtasks-fast -A mod:app web``: serve the WebView and REST API (:func:`qtasks_fast.web.create_app`) with uvicorn.

Secure by default: it binds 127.0.0.1; authentication is always on, with a token from ``QTASKS_WEB_TOKEN`` or
``--token-file`` (never a flag value: argv is visible to every user of the host), else one generated now and
printed once on stderr. It refuses a non-loopback ``--host`` when it has neither a configured token nor TLS, or
when the token is shorter than :data:`MIN_TOKEN` characters. Start-up errors are one line and exit 2; "serving" is
printed once the socket is bound.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import signal
import socket
import ssl
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qtasks_fast.app import BaseQueueTasks

OK, USAGE = 0, 2
#: the port served without --port (QTasks' WebView listens on 8000; ours keeps its documented one)
DEFAULT_PORT = 8080


def add_parser(sub: Any) -> None:
    from qtasks_fast import cli_broker
    from qtasks_fast.cli_types import whole

    p = sub.add_parser("web", help="serve the WebView and REST API (/api/v1) of the app",
                       description="Serve the WebView (sign in with the token) and the REST API under /api/v1 "
                                   "(OpenAPI at /api/v1/openapi.json, events as SSE at /api/v1/events), /health and "
                                   "/metrics, for the fleet of the -A app, on any backend. The token comes from "
                                   "env QTASKS_WEB_TOKEN or --token-file; without one a token is generated and "
                                   "printed once.")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1, this host only); another address needs a "
                        "configured token (QTASKS_WEB_TOKEN or --token-file) or TLS (--ssl-certfile/--ssl-keyfile)")
    p.add_argument("--port", type=whole(1, most=65535), default=None,
                   help=f"TCP port (default {DEFAULT_PORT}; QTasks' 8000 when asked: --port 8000, also in QTasks' "
                        "place before the command)")
    p.add_argument("--read-only", action="store_true",
                   help="refuse every mutation (submit, cancel, restart, bulk, purge, dead letters) with 403")
    p.add_argument("--root-path", default="",
                   help="serve under this path prefix (/tasks) when a reverse proxy forwards it unchanged")
    p.add_argument("--token-file", metavar="FILE",
                   help="read the token from FILE (first line); env QTASKS_WEB_TOKEN otherwise")
    p.add_argument("--ssl-certfile", metavar="FILE", help="serve HTTPS with this certificate (PEM)")
    p.add_argument("--ssl-keyfile", metavar="FILE", help="... and this private key (PEM)")
    p.add_argument("--nice", type=whole(0), default=0, metavar="N",
                   help="lower this server's CPU priority by N (1-19, as nice(1)): on the cores of busy workers, "
                        "they go first and the live view lags instead (default 0)")
    cli_broker.add_arguments(p, "broker URL, as for run (env QTASKS_BROKER_URL; default: the app's)")


def loopback(host: str) -> bool:
    """True for an address only this host can reach (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to any address
        return False


#: the shortest configured token a server accepts on a network address (a generated one has 43 characters)
MIN_TOKEN = 16


def short_token(token: str, configured: bool, host: str, source: str) -> str | None:
    """Why a configured token is too short to serve ``host`` (a network address), or None: one line for stderr."""
    if not configured or loopback(host) or len(token) >= MIN_TOKEN:
        return None
    return (f"refusing to listen on {host} with a {len(token)}-character token: other hosts could guess it; set "
            f"{source} to {MIN_TOKEN}+ random characters (python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))')")


def _err(text: str) -> None:
    print(f"qtasks-fast web: {text}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace, load: Callable[[argparse.Namespace], BaseQueueTasks | None]) -> int:
    """Check the flags, load the app, serve until Ctrl-C/SIGTERM."""
    if args.port is None:
        args.port = DEFAULT_PORT
    from qtasks_fast.web.auth import ENV, TokenError, resolve_token

    tls = bool(args.ssl_certfile and args.ssl_keyfile)
    if bool(args.ssl_certfile) != bool(args.ssl_keyfile):
        _err("--ssl-certfile and --ssl-keyfile go together: pass both for HTTPS, or neither")
        return USAGE
    unreadable = _readable(args.ssl_certfile, args.ssl_keyfile)
    if unreadable:
        _err(unreadable)
        return USAGE
    if args.nice > 19:
        _err(f"--nice {args.nice}: pass 0 to 19 (19 the lowest priority)")
        return USAGE
    if args.root_path and not args.root_path.startswith("/"):
        _err(f"--root-path {args.root_path!r} must start with '/', such as /tasks")
        return USAGE
    try:
        token, configured = resolve_token(None, args.token_file)
    except TokenError as exc:
        _err(str(exc))
        return USAGE
    if not loopback(args.host) and not (configured or tls):
        _err(f"refusing to listen on {args.host} with a generated token and no TLS: other hosts could reach it; "
             f"set {ENV} or --token-file, and serve over TLS (--ssl-certfile/--ssl-keyfile or a TLS proxy)")
        return USAGE
    short = short_token(token, configured, args.host, f"{ENV} (or --token-file)")
    if short:
        _err(short)
        return USAGE
    app = load(args)
    if app is None:
        return USAGE
    if args.nice:
        os.nice(args.nice)  # why: following a fast fleet costs this process a quarter of a core (benchmarks/RESULTS.md)
    import uvicorn

    from qtasks_fast.web import create_app

    asgi = create_app(app, token=token, read_only=args.read_only, root_path=args.root_path)
    config = uvicorn.Config(asgi, host=args.host, port=args.port, ssl_certfile=args.ssl_certfile,
                            ssl_keyfile=args.ssl_keyfile, log_level="warning", server_header=False,
                            timeout_graceful_shutdown=5)
    try:
        config.load()  # reads the certificate and key: a file that is no PEM pair fails here, not after "serving"
        sock = _bound(args.host, args.port)
    except ssl.SSLError as exc:
        _err(f"cannot use --ssl-certfile {args.ssl_certfile!r} with --ssl-keyfile {args.ssl_keyfile!r} "
             f"({exc.reason or exc}): pass a PEM certificate and its private key")
        return USAGE
    except OSError as exc:
        _err(f"cannot listen on {args.host}:{args.port} ({exc.strerror or exc}): the port is taken or the address "
             "is not this host's; pass another --port or --host")
        return USAGE
    scheme = "https" if tls else "http"
    if not configured:
        _err(f"no token configured ({ENV} or --token-file): sign in with this one, valid until the server stops:\n"
             f"{token}")
    if not loopback(args.host) and not tls:
        _err("warning: serving plain HTTP on a network address: the token travels in clear unless a TLS proxy "
             "is in front")
    _err(f"serving app {app.name!r} on {scheme}://{args.host}:{args.port}{args.root_path.rstrip('/')}/"
         f"{' (read-only)' if args.read_only else ''}")
    for sig in (signal.SIGINT, signal.SIGTERM):  # uvicorn drains on them, then re-raises them: end with 0, quietly
        signal.signal(sig, lambda *_: None)
    asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))
    return OK


def _bound(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``, bound before "serving" is printed (uvicorn's own bind exits the
    process with a log line of its own when the port is taken)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host.strip("[]"), port), family=family, backlog=2048)


def _readable(*paths: str | None) -> str | None:
    """Why one of the TLS files cannot be read, or None."""
    for flag, path in zip(("--ssl-certfile", "--ssl-keyfile"), paths):
        if path is None:
            continue
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            return f"cannot read {flag} {path!r} ({exc.strerror}); check the path"
    return None
