"""``GET /api/v1/events`` (issue 13): server-sent events whose ids are the backend feed's, so a client that
reconnects with ``Last-Event-ID`` gets exactly what it missed, on every backend."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import httpx
import pytest
from apps.web_app import build
from apps.webkit import client

from qtasks_fast import QueueTasks
from qtasks_fast.testing import WorkerThread


def frames(text: str) -> list[tuple[str, dict[str, str]]]:
    """(id, data) of each ``event: task`` frame of an event stream."""
    out = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":"))
        if fields.get("event") == "task":
            out.append((fields["id"], json.loads(fields["data"])))
    return out


async def read(c: httpx.AsyncClient, last: str | None = None, **params: str) -> list[tuple[str, dict[str, str]]]:
    r = await c.get(
        "/api/v1/events", params={"follow": "false", **params}, headers={"last-event-id": last} if last else None
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream"), r.text
    return frames(r.text)


async def read_until(c: httpx.AsyncClient, done: Callable[[list[tuple[str, dict[str, str]]]], bool],
                     last: str | None = None, **params: str) -> list[tuple[str, dict[str, str]]]:
    """``read`` again until ``done`` holds (5 s at most): PostgreSQL's feed shows an event once no transaction that
    began before it is still open, and other clients of a shared server may hold one for a moment."""
    deadline = time.monotonic() + 5
    while True:
        got = await read(c, last, **params)
        if done(got) or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.05)


async def test_a_reconnect_with_last_event_id_resumes_without_gap_or_repeat(url: str, app_name: str) -> None:
    app: QueueTasks = build(app_name, url)
    async with client(app) as c:
        made = [(await c.post("/api/v1/tasks", json={"name": "add", "args": [i, 1]})).json()["uuid"] for i in range(3)]
        everything = await read_until(c, lambda got: len(got) >= len(made), after="")
        assert [(e["uuid"], e["status"]) for _, e in everything] == [(u, "new") for u in made]
        assert all(i == e["id"] for i, e in everything)
        first_id = everything[0][0]
        assert await read(c, first_id) == everything[1:]
        assert await read(c, first_id, after=everything[1][0]) == everything[1:]  # the header wins
        assert await read(c, everything[-1][0]) == []
        with WorkerThread(app):
            for u in made:
                assert (await c.get(f"/api/v1/tasks/{u}", params={"wait": 10})).json()["status"] == "success"
        missed = await read_until(c, lambda got: sum(e["status"] == "success" for _, e in got) >= len(made),
                                  everything[-1][0])
        assert {(e["uuid"], e["status"]) for _, e in missed} >= {(u, "success") for u in made}
        assert await read(c, after="") == everything + missed  # the two reads together: the whole feed
        only_other = await read(c, after="", queue="other")
        assert only_other == []
        r = await c.get("/api/v1/events", params={"after": "", "follow": "false", "summary": "true"})
        (counts,) = [b for b in r.text.split("\n\n") if "event: counts" in b]
        fields = dict(line.split(": ", 1) for line in counts.splitlines())
        assert await read(c, fields["id"]) == []  # its id: where the event stream was (resume after it)
        data = json.loads(fields["data"])
        # a full state: the tasks finished per status in the current minute (what the Overview's chart shows)
        minute = data["minute"]
        assert data == {
            "minute": minute,
            **{
                s: sum(e["status"] == s and int(float(e["at"])) // 60 * 60 == minute for _, e in missed)
                for s in ("success", "error", "cancel")
            },
        }
        assert int(time.time()) // 60 * 60 - 60 <= minute <= time.time()  # this minute (the last if it just ended)


@pytest.mark.parametrize("url", ["memory://"])
async def test_a_bad_event_id_or_queue_is_refused_before_the_stream_starts(url: str, app_name: str) -> None:
    async with client(build(app_name, url)) as c:
        assert (await c.get("/api/v1/events", headers={"last-event-id": "bogus"})).status_code == 422
        assert (await c.get("/api/v1/events", params={"queue": "nope"})).status_code == 404
