"""The WebView's HTML pages (Jinja2 templates in ``templates/``, assets in ``static/``) and the sign-in.

A page is a route of :data:`ROUTES` (the fleet pages in :mod:`~qtasks_fast.web.pages_fleet`, the task pages in
:mod:`~qtasks_fast.web.pages_tasks`) whose handler calls :func:`render`; it reads through
:mod:`qtasks_fast.service` like the REST API. The sign-in form takes the server's token and sets the session
cookie (HttpOnly, SameSite=Strict, Secure over HTTPS, path = the mount point).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from qtasks_fast.web import pages_fleet, pages_tasks
from qtasks_fast.web.auth import COOKIE, SESSION_SECONDS
from qtasks_fast.web.pages_base import render, templates
from qtasks_fast.web.security import client_address

__all__ = ["ROUTES", "render", "templates"]


def _next(request: Request, raw: str | None) -> str:
    """Where to go after signing in: a path of this app only (never another site: ``//evil``, ``https://``)."""
    root = request.scope.get("root_path", "")
    if raw and raw.startswith(root + "/") and not raw.startswith("//") and "\\" not in raw:
        return raw
    return root + "/"


async def signin(request: Request) -> Response:
    if request.method == "GET":
        return render(request, "signin.html", next=_next(request, request.query_params.get("next")))
    form = await request.form()
    token, nxt = str(form.get("token", "")), _next(request, str(form.get("next", "")))
    limiter, address = request.app.state.limiter, client_address(request)
    wait = limiter.retry_after(address)
    if wait:
        page = render(request, "signin.html", 429, next=nxt, error=f"too many wrong tokens from this address: try "
                      f"again in {wait} s")
        page.headers["retry-after"] = str(wait)
        return page
    if not request.app.state.auth.token_ok(token):
        limiter.failed(address)
        return render(request, "signin.html", 401, next=nxt, error="wrong token: use the server's token "
                      "(QTASKS_WEB_TOKEN, --token-file, or the one it printed at start)")
    response = RedirectResponse(nxt, status_code=303)
    response.set_cookie(COOKIE, request.app.state.auth.new_session(), max_age=SESSION_SECONDS, httponly=True,
                        samesite="strict", secure=request.url.scheme == "https",
                        path=request.scope.get("root_path", "") or "/")
    return response


async def signout(request: Request) -> Response:
    request.app.state.auth.sign_out(request)
    response = RedirectResponse(request.scope.get("root_path", "") + "/signin", status_code=303)
    response.delete_cookie(COOKIE, path=request.scope.get("root_path", "") or "/", httponly=True, samesite="strict")
    return response


ROUTES: list[BaseRoute] = [Route("/signin", signin, methods=["GET", "POST"], name="signin"),
                           Route("/signout", signout, methods=["POST"], name="signout"),
                           *pages_fleet.routes(), *pages_tasks.routes()]
