"""The Tasks pages: the filtered list (filters in the URL, so a view can be shared; cursor pagination, newest
first), a task's detail with its logs, and the actions on one task or on every task a filter matches.

Actions are plain forms (a CSRF field, no script needed) answered by a redirect, so a reload never repeats one.
A bulk action takes two steps: the first counts what the filter matches (at most the cap) and asks "cancel 412
tasks?"; the second passes that count as ``confirm`` and the counted uuids (a hidden field), so only those are
touched (see :func:`qtasks_fast.service.bulk`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from qtasks_fast import service
from qtasks_fast.abc.query import TaskFilter
from qtasks_fast.querylib import STATUSES
from qtasks_fast.web import api
from qtasks_fast.web import pages_base as base
from qtasks_fast.web.endpoints import parse
from qtasks_fast.web.pages_base import back, caller, epoch, failed, filled, render

FILTERS = TaskFilter.__struct_fields__
TIMES = ("created_after", "created_before", "finished_after", "finished_before")
#: tasks per page of the list
PAGE = 50


def _query(params: dict[str, str]) -> dict[str, str]:
    """The filter of a form or URL as the REST API's query: empty fields dropped, UTC times as epoch seconds."""
    return {k: epoch(v) if k in TIMES else v for k, v in filled(params).items()}


def _indexed(q: api.FilterQuery) -> bool:
    """Whether the status tabs show counts: for the filters a backend indexes (name, queue, status, creation
    time); a worker, error text or finish time would make a backend (Redis) walk every match per status."""
    return q.worker_id is None and q.error_contains is None and q.finished_after is None and q.finished_before is None


def _shown(field: str, value: str) -> str:
    """A filter's value as its form input shows it: a time in epoch seconds (a shared URL) as UTC date and time."""
    if field in TIMES and value:
        try:
            return dt.datetime.fromtimestamp(float(value), dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        except (ValueError, OverflowError, OSError):
            return value
    return value


async def tasks(request: Request) -> Response:
    params = filled(dict(request.query_params))
    if params.get("uuid"):  # the search box: straight to the task
        return back(request, f"/tasks/{quote(params['uuid'].strip(), safe='')}")  # one segment, whatever typed
    if len(params) < len(request.query_params):  # the form's empty fields: the short URL, to share (a notice
        return back(request, "/tasks", base.notice(request), **{  # passed on only when it was the server's)
            k: v for k, v in params.items() if k not in (base.NOTICE, base.NOTICE_SIG)})
    app = request.app.state.qtasks
    shown = {k: _shown(k, params.get(k, "")) for k in (*FILTERS, "limit")}
    try:
        asked = {k: v for k, v in params.items() if k not in (base.NOTICE, base.NOTICE_SIG)}
        q = parse(api.TaskQuery, _query(asked), "query")
        page = await service.list_tasks(app, q.filter(), q.limit, q.cursor)
        counts = await service.count_tasks(app, q.filter()) if _indexed(q) else {}
    except service.ServiceError as exc:
        return render(request, "tasks.html", base.ERROR_STATUS.get(type(exc), 400), page=None,
                      error=str(exc), f=shown, counts={}, statuses=STATUSES, names=service.registered_names(app),
                      queues=app.queues, next_url="", status_url={})
    keep = {k: v for k, v in params.items() if k in (*FILTERS, "limit")}
    next_url = f"?{urlencode({**keep, 'cursor': page.cursor})}" if page.cursor else ""
    status_url = {s: "?" + urlencode({**{k: v for k, v in keep.items() if k != "status"}, **({"status": s} if s
                                                                                             else {})})
                  for s in ("", *STATUSES)}
    return render(request, "tasks.html", page=page, f=shown, counts=counts, statuses=STATUSES, error="",
                  names=service.registered_names(app), queues=app.queues, next_url=next_url,
                  status_url=status_url, paged="cursor" in params, filter_fields=keep,
                  shown_page={"limit": q.limit, "cursor": q.cursor or ""})  # what a watch of the table polls


async def task(request: Request) -> Response:
    uuid = request.path_params["uuid"]
    try:
        found = await service.detail(request.app.state.qtasks, uuid)
    except service.ServiceError as exc:
        return failed(request, exc)
    return render(request, "task.html", d=found, t=found.task, running=found.task.status in ("new", "process"))


async def act(request: Request) -> Response:
    """``POST /tasks/{uuid}/cancel`` or ``/restart``: do it, then back to the task (a restart: to the new one)."""
    uuid, action = request.path_params["uuid"], request.path_params["action"]
    app = request.app.state.qtasks
    if action not in ("cancel", "restart"):
        return failed(request, service.NotFound(f"no action {action!r}: a task can be cancelled or restarted"))
    try:
        if action == "cancel":
            result = await service.cancel(app, caller(request), uuid)
            return back(request, f"/tasks/{uuid}", f"cancel: the task was {result}")
        new = await service.restart(app, caller(request), uuid)
    except service.ServiceError as exc:
        return failed(request, exc)
    return back(request, f"/tasks/{new.uuid}", f"restarted {uuid} as this task")


async def bulk(request: Request) -> Response:
    """The two steps of a bulk action over the filter the form carries (see the module docstring)."""
    form = {k: str(v) for k, v in (await request.form()).items()}
    filter_fields = {k: v for k, v in filled(form).items() if k in FILTERS}
    app = request.app.state.qtasks
    try:
        action, cap = form.get("action", ""), parse(api.BulkCount, {"action": form.get("action"), "cap": form.get(
            "cap") or 1000}, "form").cap
        filter = parse(api.FilterQuery, _query(filter_fields), "query").filter()
        if not form.get("confirm"):
            counted = await service.bulk(app, caller(request), action, filter, cap=cap, dry_run=True)
            return render(request, "bulk_confirm.html", action=action, cap=cap, counted=counted,
                          filter_fields=filter_fields, back_url="?" + urlencode(filter_fields))
        done = await service.bulk(app, caller(request), action, filter, cap=cap, confirm=int(form["confirm"]),
                                  uuids=form.get("uuids", "").split())
    except (service.ServiceError, ValueError) as exc:
        return failed(request, exc if isinstance(exc, service.ServiceError) else service.BadRequest(
            "confirm", "confirm must be the count the confirmation showed"))
    outcome = ", ".join(f"{v} {k}" for k, v in sorted(done.done.items())) or "nothing to do"
    return back(request, "/tasks", f"bulk {action} of {done.matched} tasks: {outcome}", **filter_fields)


def routes() -> list[Any]:
    return [Route("/tasks", tasks, name="tasks"), Route("/tasks/bulk", bulk, methods=["POST"], name="bulk"),
            Route("/tasks/{uuid}", task, name="task"),
            Route("/tasks/{uuid}/{action:str}", act, methods=["POST"], name="task_action")]
