"""What every WebView page shares: the Jinja2 environment (with filters for times, durations and bytes), the
context every template gets (:func:`render`), the caller of an action, and a service error shown as a page.

Times are shown in UTC (``2026-12-07 14:09:49``) so operators in several places read the same clock; the time
range inputs of the Tasks page are UTC as well (:func:`epoch`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from qtasks_fast import service
from qtasks_fast.web.auth import CSRF_FIELD, who

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
#: the pages of the nav bar: (route path, label)
NAV = (("/", "Overview"), ("/tasks", "Tasks"), ("/queues", "Queues"), ("/dead-letters", "Dead letters"),
       ("/workers", "Workers"), ("/schedules", "Schedules"), ("/audit", "Audit log"))
#: status of a service error -> HTTP status of the page that shows it
ERROR_STATUS = {service.NotFound: 404, service.BadRequest: 422, service.ReadOnly: 403, service.Unavailable: 503}


def _when(value: Any) -> str:
    """A time (epoch seconds or datetime) as ``YYYY-MM-DD HH:MM:SS`` UTC; ``—`` for none."""
    if value is None:
        return "—"
    if isinstance(value, (int, float)):
        value = dt.datetime.fromtimestamp(value, dt.timezone.utc)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return str(value.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"))


def _duration(start: Any, end: Any) -> str:
    """``end - start`` as ``12 ms`` / ``3.4 s`` / ``5 min``; empty when either is unknown."""
    if start is None or end is None:
        return ""
    seconds = (end.timestamp() if isinstance(end, dt.datetime) else end) - (
        start.timestamp() if isinstance(start, dt.datetime) else start)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _pretty(value: Any) -> str:
    """A value as indented JSON when it is one (what a task got or returned), else its text."""
    try:
        short = json.dumps(value, ensure_ascii=False, default=str)
        return short if len(short) <= 100 else json.dumps(value, indent=2, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return repr(value)


def _compact(value: Any) -> str:
    """A value as one line of JSON with its text as written (``é``, ``<b>``): Jinja's ``tojson`` writes
    ``\\u00e9``/``\\u003c``, which a reader cannot read; autoescaping makes the text safe in the page instead."""
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError, RecursionError):
        return repr(value)


def _ago(value: float | None) -> str:
    if value is None:
        return "—"
    seconds = max(0.0, dt.datetime.now(dt.timezone.utc).timestamp() - value)
    return f"{seconds:.0f} s ago" if seconds < 120 else f"{seconds / 60:.0f} min ago"


def _url(value: Any) -> str:
    """A name as one part of a link (a query value or a path segment): every reserved character escaped, so a
    queue ``a b&c#d/é`` links to itself, not to ``a b`` with a fragment. Jinja's ``urlencode`` keeps ``/``."""
    return quote(str(value), safe="")


templates.env.filters.update(when=_when, duration=_duration, size=_size, pretty=_pretty, ago=_ago,
                             compact=_compact, url=_url)


def render(request: Request, template: str, status: int = 200, **context: Any) -> Response:
    """``template`` with what every page needs: ``root`` (the mount point, prefix every link with it),
    ``csrf`` (the session's CSRF token: ``hx-headers`` on the body sends it), ``read_only``, ``app_name``,
    ``nav`` and ``here`` (the page's path without the mount point: the nav bar marks it)."""
    nonce = request.scope.get("qtasks.session")
    state = request.app.state
    root = request.scope.get("root_path", "")
    here = request.url.path[len(root):] or "/"
    base = {"root": root, "read_only": state.read_only, "csrf": state.auth.csrf_token(nonce) if nonce else "",
            "csrf_field": CSRF_FIELD, "app_name": state.qtasks.name, "signed_in": nonce is not None, "nav": NAV,
            "here": here, "notice": notice(request),
            "self_url": str(request.url.path) + (f"?{request.url.query}" if request.url.query else "")}
    return templates.TemplateResponse(request, template, {**base, **context}, status_code=status)


def failed(request: Request, exc: service.ServiceError) -> Response:
    """A service error as a page: its one-line message, the status the REST API would answer."""
    return render(request, "error.html", ERROR_STATUS.get(type(exc), 400), message=str(exc))


def caller(request: Request) -> service.Caller:
    return service.Caller(who=who(request), read_only=request.app.state.read_only)


#: the query parameters of a notice: its text and the server's signature of it for the session
NOTICE, NOTICE_SIG = "notice", "ns"


def _session(request: Request) -> str:
    """What a notice is signed for: the browser's session (its nonce), or ``api`` for a bearer client."""
    return str(request.scope.get("qtasks.session") or "api")


def notice(request: Request) -> str:
    """The notice to show: the URL's ``notice`` only when the server signed it for this session (after an
    action); text anyone could put in a link (``?notice=Your token expired, sign in at evil.example``) is not
    shown."""
    text, sig = request.query_params.get(NOTICE, ""), request.query_params.get(NOTICE_SIG, "")
    return text if text and request.app.state.auth.notice_ok(_session(request), text, sig) else ""


def signed_notice(request: Request, text: str) -> dict[str, str]:
    """The query parameters that show ``text`` on the next page of this session (none for no text)."""
    if not text:
        return {}
    return {NOTICE: text, NOTICE_SIG: request.app.state.auth.notice_sig(_session(request), text)}


def back(request: Request, path: str, notice: str = "", **params: Any) -> Response:
    """303 to ``path`` of this app (after an action: a reload does not repeat it), with a notice to show (signed
    for this session, see :func:`notice`)."""
    query = {k: v for k, v in {**params, **signed_notice(request, notice)}.items() if v not in (None, "")}
    url = request.scope.get("root_path", "") + path + (f"?{urlencode(query)}" if query else "")
    return RedirectResponse(url, status_code=303)


def epoch(value: str) -> str:
    """A time of a filter as epoch seconds: a number as is, a ``datetime-local`` input (UTC) converted; other
    text passed on for the REST filter to refuse naming the field."""
    try:
        float(value)
        return value
    except ValueError:
        pass
    try:
        return str(dt.datetime.fromisoformat(value).replace(tzinfo=dt.timezone.utc).timestamp())
    except ValueError:
        return value


def filled(params: Mapping[str, str]) -> dict[str, str]:
    """The query parameters that have a value (an empty form field means "any", not the value "")."""
    return {k: v for k, v in params.items() if v != ""}
