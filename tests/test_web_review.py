"""The WebView/REST review leftovers of issue 13: an unknown queue answers the same 404 everywhere, a notice on a
page is the server's (a crafted link cannot show one), links built from names are URL-encoded, and the event
stream's ``limit`` is bounded, refused naming the field, and documented."""

from __future__ import annotations

import html
import re
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from apps.web_app import build
from apps.webkit import client, sign_in

from qtasks_fast import QueueTasks
from qtasks_fast.service import Caller, NotFound, bulk, checked_filter, count_tasks, list_tasks

ODD = "a b&c#d/é?x=1"
HTML = {"accept": "text/html"}


@pytest.fixture
def app(app_name: str) -> QueueTasks:
    return build(app_name, "memory://")


async def test_an_unknown_queue_is_404_naming_the_queues_on_every_endpoint_and_page(app: QueueTasks) -> None:
    async with client(app) as c:
        calls = [
            c.get("/api/v1/tasks", params={"queue": "nosuch"}),
            c.get("/api/v1/tasks/counts", params={"queue": "nosuch"}),
            c.post("/api/v1/tasks/bulk/count", json={"action": "cancel", "filter": {"queue": "nosuch"}}),
            c.post(
                "/api/v1/tasks/bulk",
                json={
                    "action": "cancel",
                    "filter": {"queue": "nosuch"},
                    "confirm": 1,
                    "uuids": ["00000000-0000-0000-0000-000000000001"],
                },
            ),
            c.get("/api/v1/dead-letters", params={"queue": "nosuch"}),
            c.post("/api/v1/queues/nosuch/purge"),
            c.get("/api/v1/throughput", params={"queue": "nosuch"}),
            c.get("/api/v1/events", params={"queue": "nosuch", "follow": "false"}),
        ]
        for call in calls:
            r = await call
            assert r.status_code == 404, (r.request.url, r.text)
            assert "no queue 'nosuch'" in r.json()["error"] and "default, other" in r.json()["error"], r.text
        for page in ("/tasks?queue=nosuch", "/dead-letters?queue=nosuch"):
            r = await c.get(page, headers=HTML)
            assert r.status_code == 404 and "no queue &#39;nosuch&#39;" in r.text, (page, r.status_code)
        assert (await c.get("/api/v1/tasks", params={"queue": "other"})).status_code == 200  # a known one
    for found in (
        list_tasks(app, checked_filter({"queue": "nosuch"})),  # the service (gRPC's too)
        count_tasks(app, checked_filter({"queue": "nosuch"})),
        bulk(app, Caller(who="t"), "cancel", checked_filter({"queue": "nosuch"}), dry_run=True),
    ):
        with pytest.raises(NotFound, match="no queue 'nosuch'"):
            await found


async def test_a_notice_shows_only_when_the_server_wrote_it_for_this_session(app: QueueTasks) -> None:
    async with client(app, bearer=False) as c:
        csrf = await sign_in(c)
        spoof = "Your session expired: sign in again at https://evil.example"
        for path in ("/", "/tasks", "/queues", "/workers"):
            r = await c.get(path, params={"notice": spoof}, headers=HTML)
            assert r.status_code == 200 and 'class="notice"' not in r.text, path
        forged = await c.get(
            "/tasks", params={"notice": spoof, "ns": "0" * 32, "status": ""}, headers=HTML, follow_redirects=True
        )  # the empty field's redirect must not sign it either
        assert forged.status_code == 200 and 'class="notice"' not in forged.text
        uid = (
            await c.post("/api/v1/tasks", json={"name": "add", "args": [1, 2]}, headers={"x-csrf-token": csrf})
        ).json()["uuid"]
        done = await c.post(f"/tasks/{uid}/cancel", data={"csrf_token": csrf})
        assert done.status_code == 303
        page = await c.get(done.headers["location"], headers=HTML)
        assert re.search(r'class="notice"[^>]*>cancel: the task was queued<', page.text), page.text
        query = parse_qs(urlsplit(done.headers["location"]).query)
        assert (
            'class="notice"'
            not in (await c.get(f"/tasks/{uid}", params={"notice": spoof, "ns": query["ns"][0]}, headers=HTML)).text
        )  # a signature of another text
    async with client(app, bearer=False) as other:  # another browser: the same signed link shows nothing
        await sign_in(other)
        page = await other.get(done.headers["location"], headers=HTML)
        assert page.status_code == 200 and 'class="notice"' not in page.text


async def test_links_built_from_names_are_url_encoded(app_name: str) -> None:
    app = build(app_name, "memory://")

    @app.task(queue=ODD, name=ODD)
    def odd() -> None:
        return None

    async with client(app) as c:
        await c.post("/api/v1/tasks", json={"name": ODD})
        overview = (await c.get("/", headers=HTML)).text
        queues = (await c.get("/queues", headers=HTML)).text
        listed = await c.get("/api/v1/tasks", params={"queue": ODD})
        assert listed.status_code == 200 and len(listed.json()["tasks"]) == 1
        for text in (overview, queues):
            links = [html.unescape(h) for h in re.findall(r'(?:href|action)="([^"]*)"', text) if "a%20b" in h]
            assert links, text
            for link in links:
                parts = urlsplit(link)
                assert not parts.fragment and "é" not in link and " " not in link, link
                if parts.query:
                    assert parse_qs(parts.query)["queue"] == [ODD], link
                else:
                    assert unquote(parts.path) == f"/queues/{ODD}/purge", link
        page = await c.get(
            f"/tasks?queue={ODD.replace('&', '%26').replace('#', '%23').replace('?', '%3F')}", headers=HTML
        )
        assert page.status_code == 200 and page.text.count('href="/tasks/') >= 1
        confirm = await c.post(f"/queues/{_quote(ODD)}/purge", data={})
        assert confirm.status_code == 200 and "Drop the 1 waiting messages" in confirm.text, confirm.text


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


async def test_the_event_stream_limit_is_bounded_and_documented(app: QueueTasks) -> None:
    async with client(app) as c:
        for bad in ("0", "1001", "-5", "lots"):
            r = await c.get("/api/v1/events", params={"limit": bad, "follow": "false"})
            assert r.status_code == 422 and r.json()["field"] == "limit", (bad, r.text)
        assert (await c.get("/api/v1/events", params={"limit": "1000", "follow": "false"})).status_code == 200
        doc = (await c.get("/api/v1/openapi.json")).json()["paths"]["/events"]["get"]
    limit = next(p for p in doc["parameters"] if p["name"] == "limit")
    assert limit["schema"] == {"type": "integer", "minimum": 1, "maximum": 1000}
    assert {"401", "404", "422"} <= set(doc["responses"])


async def test_the_uuid_search_goes_to_that_task_s_page_and_nowhere_else(app: QueueTasks) -> None:
    async with client(app) as c:
        for typed in ("../api/v1/workers", "../../signin?next=/x", "a/b#c"):
            r = await c.get("/tasks", params={"uuid": typed}, headers=HTML)
            assert r.status_code == 303 and r.headers["location"].startswith("/tasks/"), r.headers
            assert "/" not in r.headers["location"][len("/tasks/") :], r.headers["location"]
            page = await c.get(r.headers["location"], headers=HTML)
            assert page.status_code in (404, 405, 422) and "task-live" not in page.text, (typed, page.status_code)


async def test_a_queue_named_with_a_slash_is_purged_through_the_api(app_name: str) -> None:
    app = build(app_name, "memory://")

    @app.task(queue="team/a")
    def slashy() -> None:
        return None

    async with client(app) as c:
        await c.post("/api/v1/tasks", json={"name": "slashy"})
        r = await c.post("/api/v1/queues/team%2Fa/purge")
        assert r.status_code == 200 and r.json() == {"count": 1}, r.text
        assert (await c.post("/api/v1/queues/team%2Fb/purge")).json()["error"].startswith("no queue 'team/b'")


async def test_pages_of_counts_follow_the_summary_stream_and_task_pages_a_watch_stream(app: QueueTasks) -> None:
    async with client(app, bearer=False) as c:
        csrf = await sign_in(c)
        uid = (
            await c.post("/api/v1/tasks", json={"name": "add", "args": [1, 2]}, headers={"x-csrf-token": csrf})
        ).json()["uuid"]
        for path, stream in (
            ("/", "/api/v1/events?summary=true"),
            ("/queues", "/api/v1/events?summary=true"),
            ("/workers", "/api/v1/events?summary=true"),
            ("/tasks", "/api/v1/events?summary=true"),  # unfiltered: any change shows
            ("/tasks?task_name=add", "/api/v1/events?watch=true"),  # live.js adds the filter of [data-watch]
            # a filter a watch does not take: its page is not what a poll of the rest reads (a time range, like a
            # cursor, moves it back): it follows counts
            ("/tasks?task_name=add&created_before=1000", "/api/v1/events?summary=true"),
            ("/tasks?status=error&error_contains=boom", "/api/v1/events?summary=true"),
            (f"/tasks/{uid}", "/api/v1/events?watch=true"),
        ):
            text = (await c.get(path, headers=HTML)).text
            assert re.search(r'sse-connect="([^"]*)"', text).group(1) == stream, path  # type: ignore[union-attr]
