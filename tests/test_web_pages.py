"""The WebView's pages in process (issue 13): every page renders under the strict CSP (no inline script, style or
handler; every link under the mount point), the Tasks filters live in the URL (shareable, cursor pages, a bad
filter named), a task's detail shows its call, result, traceback and logs, the actions (cancel, restart, bulk
with a counted confirmation, purge, dead letters) work from plain forms and are written to the audit log, and
read-only shows and allows none of them. The browser tests are tests/test_web_browser.py."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator

import httpx
import pytest
from apps.web_app import build
from apps.webkit import client, sign_in

from qtasks_fast import QueueTasks
from qtasks_fast.testing import WorkerThread
from qtasks_fast.testing.contract.harness import envelope

HTML = {"accept": "text/html"}
PAGES = ["/", "/tasks", "/queues", "/dead-letters", "/workers", "/schedules", "/audit"]


@pytest.fixture
def app(app_name: str) -> QueueTasks:
    return build(app_name, "memory://")


@pytest.fixture
def ran(app: QueueTasks) -> Iterator[dict[str, str]]:
    """Three finished tasks (add 2+3, add 1+1, fail 'boom') and one queued in 'other' (no worker serves it)."""
    with WorkerThread(app, queues=["default"]):
        done = {"add": app.add_task("add", 2, 3, timeout=5), "add2": app.add_task("add", 1, 1, timeout=5),
                "fail": app.add_task("fail", "boom", timeout=5)}
    queued = app.add_task("elsewhere")
    yield {k: str(t.uuid) for k, t in {**done, "queued": queued}.items() if t is not None}


async def signed_in(c: httpx.AsyncClient, root: str = "") -> str:
    return await sign_in(c, root)


def rows(html: str) -> list[str]:
    return re.findall(r'<tr data-uuid="([^"]+)"', html)


async def test_every_page_renders_without_inline_script_or_style_and_links_under_the_root(
        app: QueueTasks, ran: dict[str, str]) -> None:
    root = "/ops"
    async with client(app, bearer=False, root_path=root) as c:
        await signed_in(c, root)
        for path in [*PAGES, f"/tasks/{ran['fail']}"]:
            r = await c.get(root + path, headers=HTML)
            assert r.status_code == 200, (path, r.text)
            html = r.text
            assert not re.search(r"<script(?![^>]*\bsrc=)", html), path  # every script is a file (CSP: 'self')
            assert not re.search(r"\sstyle=|\son[a-z]+=|javascript:", html), path
            for url in re.findall(r'(?:href|src|action|hx-get|sse-connect|data-src)="([^"]*)"', html):
                assert url.startswith((root + "/", "?", "#")), (path, url)
            assert 'aria-current="page"' in html or path.startswith("/tasks/"), path  # the nav marks the page


async def test_tasks_filters_are_in_the_url_and_a_bad_one_is_named(app: QueueTasks, ran: dict[str, str]) -> None:
    async with client(app, bearer=False) as c:
        await signed_in(c)
        short = await c.get("/tasks?status=error&task_name=&queue=", headers=HTML)  # empty fields: any
        assert short.status_code == 303 and short.headers["location"] == "/tasks?status=error"  # to share
        assert rows((await c.get(short.headers["location"], headers=HTML)).text) == [ran["fail"]]
        named = (await c.get("/tasks?task_name=add", headers=HTML)).text
        assert set(rows(named)) == {ran["add"], ran["add2"]}
        assert '<span class="muted" data-count="success">2</span>' in named  # the status tabs count the filter
        by_error = (await c.get("/tasks?error_contains=BOOM", headers=HTML)).text
        assert rows(by_error) == [ran["fail"]] and "data-count" not in by_error  # not indexed: no count walk
        assert (await c.get("/tasks?queue=other&status=new", headers=HTML)).text.count("<tr data-uuid") == 1
        later = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() + 3600))  # a datetime-local input, UTC
        assert rows((await c.get(f"/tasks?created_after={later}", headers=HTML)).text) == []
        assert len(rows((await c.get(f"/tasks?created_before={later}", headers=HTML)).text)) == 4
        bad = await c.get("/tasks?status=lost", headers=HTML)
        assert bad.status_code == 422 and "status" in bad.text and "Traceback" not in bad.text
        found = await c.get(f"/tasks?uuid={ran['add']}", headers=HTML)
        assert found.status_code == 303 and found.headers["location"] == f"/tasks/{ran['add']}"


async def test_tasks_are_paged_newest_first_by_cursor(app: QueueTasks, ran: dict[str, str]) -> None:
    async with client(app, bearer=False) as c:
        await signed_in(c)
        seen: list[str] = []
        url = "/tasks?limit=1"
        while url:
            html = (await c.get(url, headers=HTML)).text
            seen += rows(html)
            more = re.search(r'href="(\?[^"]*cursor=[^"]*)" rel="next"', html)
            url = "/tasks" + more.group(1).replace("&amp;", "&") if more else ""
        assert seen[0] == ran["queued"] and sorted(seen) == sorted(ran.values())


async def test_a_task_shows_its_call_result_traceback_and_logs(app: QueueTasks, ran: dict[str, str]) -> None:
    async with client(app, bearer=False) as c:
        await signed_in(c)
        ok = (await c.get(f"/tasks/{ran['add']}", headers=HTML)).text
        assert "[2, 3]" in ok and '<pre id="task-result">5</pre>' in ok and "adding 2 and 3" in ok
        failed = (await c.get(f"/tasks/{ran['fail']}", headers=HTML)).text
        assert 'class="traceback"' in failed and "ValueError: boom" in failed
        unknown = await c.get("/tasks/00000000-0000-0000-0000-000000000009", headers=HTML)
        assert unknown.status_code == 404 and "no task" in unknown.text
        assert (await c.get("/tasks/not-a-uuid", headers=HTML)).status_code == 422


async def test_cancel_and_restart_from_the_page_are_audited(app: QueueTasks, ran: dict[str, str]) -> None:
    async with client(app, bearer=False) as c:
        csrf = await signed_in(c)
        page = (await c.get(f"/tasks/{ran['queued']}", headers=HTML)).text
        assert f'action="/tasks/{ran["queued"]}/cancel"' in page
        assert re.findall(r'name="csrf_token" value="([^"]*)"', page) == [csrf] * 3  # its forms carry the token
        r = await c.post(f"/tasks/{ran['queued']}/cancel", data={"csrf_token": csrf})
        assert r.status_code == 303 and "the+task+was+queued" in r.headers["location"]
        assert (await c.get(r.headers["location"], headers=HTML)).text.count("s-cancel") >= 1
        assert (await c.post(f"/tasks/{ran['fail']}/cancel", data={})).status_code == 403  # no CSRF token
        r = await c.post(f"/tasks/{ran['fail']}/restart", data={"csrf_token": csrf})
        new = r.headers["location"].split("?")[0].rsplit("/", 1)[1]
        assert new != ran["fail"] and app.get(new).restart_of is not None  # type: ignore[union-attr]
        assert f'href="/tasks/{ran["fail"]}"' in (await c.get(f"/tasks/{new}", headers=HTML)).text  # restart of
        audit = (await c.get("/audit", headers=HTML)).text
        assert "cancel" in audit and "restart" in audit and "web:" in audit


async def test_bulk_action_states_the_count_then_touches_that_many(app: QueueTasks) -> None:
    for _ in range(3):
        app.add_task("elsewhere")
    async with client(app, bearer=False) as c:
        csrf = await signed_in(c)
        ask = await c.post("/tasks/bulk", data={"csrf_token": csrf, "action": "cancel", "queue": "other",
                                                "status": "new", "task_name": ""})
        assert "Cancel 3 tasks?" in ask.text and 'name="confirm" value="3"' in ask.text
        counted = re.search(r'name="uuids" value="([^"]*)"', ask.text)
        assert counted is not None and len(counted.group(1).split()) == 3
        late = app.add_task("elsewhere")  # a 4th after the count: not touched
        done = await c.post("/tasks/bulk", data={"csrf_token": csrf, "action": "cancel", "queue": "other",
                                                 "status": "new", "confirm": "3", "uuids": counted.group(1)})
        assert done.status_code == 303 and "bulk+cancel+of+3+tasks" in done.headers["location"]
        assert "queue=other" in done.headers["location"]  # back to the same filter
        counts = (await c.get("/api/v1/tasks/counts?queue=other",
                              headers={"x-csrf-token": csrf})).json()
        assert counts["cancel"] == 3 and counts["new"] == 1
        assert app.get(str(late.uuid)).status == "new"  # type: ignore[union-attr]


async def test_purge_asks_with_the_count_and_dead_letters_are_requeued_or_purged(app: QueueTasks) -> None:
    for _ in range(2):
        app.add_task("elsewhere")
    async with client(app, bearer=False) as c:
        csrf = await signed_in(c)
        ask = await c.post("/queues/other/purge", data={"csrf_token": csrf})
        assert "Drop the 2 waiting messages of queue other" in ask.text
        done = await c.post("/queues/other/purge", data={"csrf_token": csrf, "confirm": "yes"})
        assert "purged+2+messages" in done.headers["location"]
        await app.broker.enqueue([envelope("ghost"), envelope("ghost", args=("x",))], app.storage)
        with WorkerThread(app, queues=["default"]):  # an unknown name: dead-lettered
            for _ in range(100):
                ids = re.findall(r'name="id" value="([^"]+)"', (await c.get("/dead-letters", headers=HTML)).text)
                if len(ids) == 2:
                    break
                await asyncio.sleep(0.05)
        assert len(ids) == 2
        requeued = await c.post("/dead-letters", data={"csrf_token": csrf, "action": "requeue", "id": ids[0]})
        assert "requeued+1+of+1" in requeued.headers["location"]
        ask = await c.post("/dead-letters", data={"csrf_token": csrf, "action": "purge", "id": ids[1]})
        assert "Delete 1 dead letters for good?" in ask.text
        purged = await c.post("/dead-letters", data={"csrf_token": csrf, "action": "purge", "id": ids[1],
                                                     "confirm": "yes"})
        assert "purged+1+of+1" in purged.headers["location"]
        assert re.findall(r'name="id" value="', (await c.get("/dead-letters", headers=HTML)).text) == []


async def test_a_dead_letter_s_payload_shows_its_text_escaped_as_html(app: QueueTasks) -> None:
    """A reader sees ``é🎉`` and ``<b>``, not ``\\u00e9`` or ``\\u003c`` (tojson), and the markup is inert."""
    await app.broker.enqueue([envelope("ghost", args=("<b>payload</b>", "é🎉"))], app.storage)
    async with client(app, bearer=False) as c:
        await signed_in(c)
        with WorkerThread(app, queues=["default"]):  # an unknown name: dead-lettered
            for _ in range(100):
                html = (await c.get("/dead-letters", headers=HTML)).text
                if 'name="id"' in html:
                    break
                await asyncio.sleep(0.05)
    assert "[&#34;&lt;b&gt;payload&lt;/b&gt;&#34;, &#34;é🎉&#34;]" in html, html
    assert "<b>payload" not in html and "\\u" not in html


async def test_read_only_shows_no_action_and_refuses_them(app: QueueTasks, ran: dict[str, str]) -> None:
    async with client(app, bearer=False, read_only=True) as c:
        csrf = await signed_in(c)
        for path in [*PAGES, f"/tasks/{ran['queued']}", f"/tasks/{ran['fail']}"]:
            html = (await c.get(path, headers=HTML)).text
            assert "read-only" in html
            assert not re.search(r'<form method="post" action="/(tasks|queues|dead-letters)', html), path
        r = await c.post(f"/tasks/{ran['queued']}/cancel", data={"csrf_token": csrf})
        assert r.status_code == 403 and "read-only" in r.text
        assert app.get(ran["queued"]).status == "new"  # type: ignore[union-attr]
        bulk = await c.post("/tasks/bulk", data={"csrf_token": csrf, "action": "cancel", "confirm": "1"})
        assert bulk.status_code == 403


async def test_schedules_show_each_periodic_task_and_its_next_run(app: QueueTasks) -> None:
    @app.periodic(cron="0 3 * * *")
    def nightly() -> None: ...

    async with client(app, bearer=False) as c:
        await signed_in(c)
        html = (await c.get("/schedules", headers=HTML)).text
        assert "nightly" in html and "0 3 * * *" in html
        assert re.search(r"\d{4}-\d\d-\d\d 03:00:00", html), html  # its next run, UTC
