"""The ASGI middleware in front of every route: who is asking (bearer token or session cookie), CSRF on a
browser's mutations, and the security headers (a strict Content-Security-Policy: no inline script or style,
nothing from another origin) on every response.

Pure ASGI, not ``BaseHTTPMiddleware``: the event stream (SSE) passes through unbuffered.
"""

from __future__ import annotations

from urllib.parse import parse_qs, quote

from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import get_route_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qtasks_fast.service.throttle import FailureLimiter
from qtasks_fast.web.auth import CSRF_FIELD, CSRF_HEADER, Auth

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
           (b"referrer-policy", b"no-referrer"), (b"x-frame-options", b"DENY")]
#: paths answered without signing in: the probe, the assets of the sign-in page, the sign-in itself, the API doc
PUBLIC = ("/health", "/static/", "/signin", "/api/v1/openapi.json")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
#: the largest form body read to find a CSRF field (a sign-in or action form is a few hundred bytes; a bulk
#: confirmation carries the uuids it counted: up to 10,000 of 37 bytes)
MAX_FORM = 512 * 1024


def _public(path: str) -> bool:
    return any(path == p or (p.endswith("/") and path.startswith(p)) for p in PUBLIC)


def denied(status: int, message: str) -> Response:
    """An API-style refusal: ``{"error": ...}``; a 401 says how to authenticate."""
    headers = {"www-authenticate": 'Bearer realm="qtasks"'} if status == 401 else None
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def client_address(conn: HTTPConnection) -> str:
    """The peer's address: the key of its failed-attempt bucket."""
    return conn.client.host if conn.client else "unknown"


def too_many(retry_after: int) -> Response:
    """429 for a client out of failed attempts: when it may try again."""
    return JSONResponse({"error": f"too many failed sign-ins from this address: try again in {retry_after} s"},
                        status_code=429, headers={"retry-after": str(retry_after)})


class Security:
    def __init__(self, app: ASGIApp, auth: Auth, limiter: FailureLimiter) -> None:
        self.app, self.auth, self.limiter = app, auth, limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _with_headers(send, scope["path"])
        conn = HTTPConnection(scope)
        path = get_route_path(scope) or "/"
        if _public(path):
            await self.app(scope, receive, send)
            return
        if "authorization" in conn.headers:  # a bearer token offered: limited when it keeps being wrong
            wait = self.limiter.retry_after(client_address(conn))
            if wait:
                await too_many(wait)(scope, receive, send)
                return
            if self.auth.bearer_ok(conn):
                await self.app(scope, receive, send)
                return
            self.limiter.failed(client_address(conn))
        nonce = self.auth.session(conn)
        if nonce is None:
            browser = "text/html" in conn.headers.get("accept", "") and not path.startswith("/api/")
            if browser and scope["method"] in SAFE_METHODS:
                root, query = scope.get("root_path", ""), scope.get("query_string", b"").decode("latin-1")
                back = root + path + (f"?{query}" if query else "")  # a shared link keeps its filters
                response: Response = RedirectResponse(f"{root}/signin?next={quote(back, safe='/')}", status_code=303)
            else:
                response = denied(401, "not signed in: send 'Authorization: Bearer <token>' (the server's token: "
                                       "QTASKS_WEB_TOKEN, --token-file, or the one it printed at start)")
            await response(scope, receive, send)
            return
        scope["qtasks.session"] = nonce
        if scope["method"] not in SAFE_METHODS:
            offered = conn.headers.get(CSRF_HEADER)
            if offered is None and conn.headers.get("content-type", "").startswith(
                    "application/x-www-form-urlencoded"):
                body = await _read_body(receive)
                offered = next(iter(parse_qs(body.decode("latin-1")).get(CSRF_FIELD, [])), None)
                receive = _replay(body, receive)
            if not self.auth.csrf_ok(nonce, offered):
                await denied(403, "missing or wrong CSRF token: reload the page and try again")(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _with_headers(send: Send, path: str) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            headers += HEADERS
            if "/static/" not in path:
                headers.append((b"cache-control", b"no-store"))
            message["headers"] = headers
        await send(message)
    return sending


async def _read_body(receive: Receive) -> bytes:
    chunks, size = [], 0
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > MAX_FORM or not message.get("more_body"):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body read once more for the route, then the connection's own messages (a disconnect)."""
    sent = False

    async def replaying() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()
    return replaying
