"""The fleet pages: Overview (throughput chart, counts, queue depths, live workers), Queues (with purge),
Dead letters (requeue or purge the selected), Workers, Schedules and the Audit log.

Destructive actions (a purge) ask first on a page that states how many messages they drop.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from qtasks_fast import service
from qtasks_fast.web.pages_base import back, caller, failed, render

#: dead letters listed per page
DEAD_PAGE = 200


async def overview(request: Request) -> Response:
    app = request.app.state.qtasks
    try:
        counts = await service.count_tasks(app, service.checked_filter({}))
        queues = await service.queues(app)
        workers = await service.workers(app, include_lost=False)
    except service.ServiceError as exc:
        return failed(request, exc)
    return render(request, "overview.html", counts=counts, queues=queues, workers=workers,
                  total=sum(counts.values()))


async def queues(request: Request) -> Response:
    try:
        found = await service.queues(request.app.state.qtasks)
    except service.ServiceError as exc:
        return failed(request, exc)
    return render(request, "queues.html", queues=found)


async def purge(request: Request) -> Response:
    """``POST /queues/{queue}/purge``: a page stating what it drops, then (``confirm``) the purge."""
    queue = request.path_params["queue"]
    app = request.app.state.qtasks
    form = await request.form()
    try:
        if not form.get("confirm"):
            found = {q.depth.queue: q for q in await service.queues(app)}
            if queue not in found:
                raise service.NotFound(f"no queue {queue!r} in app {app.name!r}")
            waiting = sum(found[queue].depth.waiting_by_priority.values())
            return render(request, "confirm.html", title=f"Purge queue {queue}?",
                          action=f"/queues/{quote(queue, safe='')}/purge",
                          text=f"Drop the {waiting} waiting messages of queue {queue} (their tasks become cancel)?",
                          fields={}, button=f"Purge {waiting} messages", back_url="/queues")
        n = await service.purge(app, caller(request), queue)
    except service.ServiceError as exc:
        return failed(request, exc)
    return back(request, "/queues", f"purged {n} messages of queue {queue}")


async def dead_letters(request: Request) -> Response:
    queue = request.query_params.get("queue") or None
    app = request.app.state.qtasks
    try:
        found = await service.dead_letters(app, queue, DEAD_PAGE)
    except service.ServiceError as exc:
        return failed(request, exc)
    return render(request, "dead_letters.html", letters=found, queue=queue or "", queues=app.queues,
                  limit=DEAD_PAGE)


async def dead_action(request: Request) -> Response:
    """``POST /dead-letters``: requeue or purge the checked dead letters (a purge asks first)."""
    form = await request.form()
    action, queue = str(form.get("action", "")), str(form.get("queue", "")) or None
    ids = [str(i) for i in form.getlist("id")]
    if not ids:
        return back(request, "/dead-letters", "select dead letters first (the boxes of the rows)", queue=queue)
    try:
        if action == "purge" and not form.get("confirm"):
            return render(request, "confirm.html", title="Purge dead letters?", action="/dead-letters",
                          text=f"Delete {len(ids)} dead letters for good?", button=f"Delete {len(ids)} dead letters",
                          fields={"action": "purge", "queue": queue or ""}, ids=ids, back_url="/dead-letters")
        n = await service.dead_letter_action(request.app.state.qtasks, caller(request), action, queue, ids)
    except service.ServiceError as exc:
        return failed(request, exc)
    done = "requeued" if action == "requeue" else "purged"
    return back(request, "/dead-letters", f"{done} {n} of {len(ids)} dead letters", queue=queue)


async def workers(request: Request) -> Response:
    try:
        found = await service.workers(request.app.state.qtasks, include_lost=True)
    except service.ServiceError as exc:
        return failed(request, exc)
    return render(request, "workers.html", workers=found)


async def schedules(request: Request) -> Response:
    return render(request, "schedules.html", schedules=service.schedules(request.app.state.qtasks))


async def audit(request: Request) -> Response:
    try:
        found = await service.audit_entries(request.app.state.qtasks, 200)
    except service.ServiceError as exc:
        return failed(request, exc)
    return render(request, "audit.html", entries=found)


def routes() -> list[Any]:
    return [Route("/", overview, name="index"), Route("/queues", queues, name="queues"),
            Route("/queues/{queue:path}/purge", purge, methods=["POST"], name="purge"),
            Route("/dead-letters", dead_letters, name="dead_letters"),
            Route("/dead-letters", dead_action, methods=["POST"], name="dead_action"),
            Route("/workers", workers, name="workers"), Route("/schedules", schedules, name="schedules"),
            Route("/audit", audit, name="audit")]
