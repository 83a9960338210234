"""``create_app``: the WebView and REST API of one app as a single ASGI application."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from qtasks_fast import service
from qtasks_fast.service import ServiceError
from qtasks_fast.service.feed import Feeds
from qtasks_fast.service.throttle import FailureLimiter
from qtasks_fast.web import api, errors, metrics, openapi, pages, sse
from qtasks_fast.web.auth import Auth
from qtasks_fast.web.endpoints import paths, route
from qtasks_fast.web.security import Security

if TYPE_CHECKING:
    from qtasks_fast.app import BaseQueueTasks

assert api  # its endpoints register themselves on import


async def health(request: Request) -> Response:
    found = await service.health(request.app.state.qtasks)
    return JSONResponse({"ok": found.ok, "broker": found.broker, "workers": found.workers, "reason": found.reason},
                        status_code=200 if found.ok else 503)


async def openapi_json(request: Request) -> Response:
    doc = openapi.document(levels=request.app.state.qtasks.config.priority_levels)
    doc["servers"] = [{"url": request.scope.get("root_path", "")}]  # this route is mounted at .../api/v1
    doc["paths"]["/events"] = sse.openapi_path()
    return JSONResponse(doc)


def routes() -> list[BaseRoute]:
    # a queue's name may hold a '/' (the app allows any text): its segment is the rest of the path up to the
    # endpoint's own ending (``/queues/a%2Fb/purge`` reaches queue ``a/b``, the server having decoded the %2F)
    api_routes: list[BaseRoute] = [Route(path.replace("{queue}", "{queue:path}"), route(eps),
                                         methods=[ep.method for ep in eps]) for path, eps in paths().items()]
    api_routes += [Route("/events", sse.events), Route("/openapi.json", openapi_json)]
    return [*pages.ROUTES, Route("/health", health), Route("/metrics", metrics.metrics),
            Mount("/api/v1", routes=api_routes),
            Mount("/static", StaticFiles(packages=[("qtasks_fast.web", "static")]), name="static")]


def create_app(app: BaseQueueTasks, *, token: str | None = None, read_only: bool = False,
               root_path: str = "") -> Starlette:
    """The WebView and REST API of ``app``, as an ASGI app (Starlette) to serve with uvicorn or mount in a
    FastAPI/Starlette service.

    ``token``: the one every client authenticates with (default: ``QTASKS_WEB_TOKEN``; :func:`create_app`
    refuses to run without one, so a mounted app is never open). ``read_only``: every mutation answers 403.
    ``root_path``: serve under this prefix (``/tasks``) as the full path a reverse proxy passes on.
    """
    from qtasks_fast.web.auth import resolve_token

    resolved, configured = resolve_token(token)
    if not configured:
        raise ValueError("create_app needs a token: pass token=... or set QTASKS_WEB_TOKEN")
    auth, limiter = Auth(resolved), FailureLimiter()
    inner = Starlette(routes=routes(), middleware=[Middleware(Security, auth=auth, limiter=limiter)],
                      exception_handlers={ServiceError: errors.service_error, HTTPException: errors.http_error,
                                          Exception: errors.internal_error})
    inner.state.qtasks, inner.state.read_only, inner.state.auth = app, read_only, auth
    inner.state.limiter = limiter
    inner.state.feeds = Feeds(app, encode=sse.encode_raw)
    root_path = root_path.rstrip("/")
    if not root_path:
        return inner
    outer = Starlette(routes=[Mount(root_path, app=inner)])
    return outer
