"""The WebView in a real browser (issue 13): Debian's chromium driven by Playwright, the app served by uvicorn
in a thread on a free loopback port, a worker in a thread, the shared Redis under an app name of its own.

Sign in, filter by status and name, open a task and see its logs (live while it runs), cancel a queued task,
restart a failed one, bulk-cancel with a confirmation stating the count, and watch the Overview's counter move
while a worker runs tasks, without a reload. Every page must load without a browser error (a CSP violation is
one). Chromium comes from apt (``.ci/run`` installs it); Playwright's own download is not used.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from apps.web_app import build
from apps.webkit import BEARER, TOKEN
from playwright.sync_api import Browser, Page, expect, sync_playwright

from qtasks_fast import QueueTasks
from qtasks_fast.testing import WorkerThread
from qtasks_fast.testing.web import WebServer
from qtasks_fast.web import create_app

CHROMIUM = "/usr/bin/chromium"
#: holds the task ``held`` while the test looks at its page
GATE = threading.Event()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not shutil.which(CHROMIUM):
        pytest.fail(f"no {CHROMIUM}: apt-get install chromium (.ci/run does it)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def app(redis_url: str, app_name: str) -> QueueTasks:
    app = build(app_name, redis_url)

    @app.task
    async def held() -> str:
        """Logs a line, waits for the test to open the gate, logs another: its page follows them live."""
        logging.getLogger("web_app").warning("before the gate")
        await asyncio.to_thread(GATE.wait, 30)
        logging.getLogger("web_app").warning("after the gate")
        return "done"

    return app


@pytest.fixture
def site(app: QueueTasks) -> Iterator[str]:
    with WebServer(create_app(app, token=TOKEN)) as url:
        yield url


@pytest.fixture
def page(browser: Browser, site: str) -> Iterator[Page]:
    context = browser.new_context(base_url=site)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.goto("/signin")
    page.fill("input[name=token]", TOKEN)
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Overview")
    yield page
    context.close()
    assert errors == [], errors  # no script error, no CSP violation


def uuids(page: Page) -> list[str]:
    return [str(u) for u in page.locator("table.tasks tbody tr[data-uuid]").evaluate_all(
        "rows => rows.map(r => r.dataset.uuid)")]


def test_sign_in_is_required_and_a_wrong_token_is_told(browser: Browser, site: str) -> None:
    page = browser.new_page()
    page.goto(f"{site}/tasks?status=error")
    assert "/signin" in page.url
    page.fill("input[name=token]", "wrong")
    page.click("button[type=submit]")
    expect(page.locator(".error")).to_contain_text("wrong token")
    page.fill("input[name=token]", TOKEN)
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Tasks")  # back where it was going, filter kept
    assert page.url.endswith("/tasks?status=error")
    page.close()


def test_filter_by_status_and_name_and_open_a_task_with_its_logs(app: QueueTasks, page: Page) -> None:
    with WorkerThread(app, queues=["default"]):
        ok = [app.add_task("add", n, 1, timeout=10) for n in range(3)]
        bad = app.add_task("fail", "broken", timeout=10)
    assert bad is not None and all(ok)
    page.click("nav >> text=Tasks")
    page.select_option("select[name=status]", "error")
    page.click("text=Filter")
    assert "status=error" in page.url
    assert uuids(page) == [str(bad.uuid)]
    page.select_option("select[name=status]", "")
    page.fill("input[name=task_name]", "add")
    page.click("text=Filter")
    assert "task_name=add" in page.url and "status=" not in page.url
    assert sorted(uuids(page)) == sorted(str(t.uuid) for t in ok if t)
    first = ok[0]
    assert first is not None
    page.click(f"a[href='/tasks/{first.uuid}']")
    expect(page.locator("#task-logs")).to_contain_text("adding 0 and 1")
    expect(page.locator("#task-result")).to_have_text("1")


def test_a_running_task_s_logs_and_status_follow_live(app: QueueTasks, page: Page) -> None:
    GATE.clear()
    try:
        with WorkerThread(app, queues=["default"]):
            task = app.add_task("held")
            assert task is not None
            page.goto(f"/tasks/{task.uuid}")
            expect(page.locator("#task-logs")).to_contain_text("before the gate", timeout=10_000)
            expect(page.locator("#task-status")).to_have_text("process")  # the line came while it runs
            GATE.set()
            expect(page.locator("#task-status")).to_have_text("success", timeout=10_000)
            expect(page.locator("#task-logs")).to_contain_text("after the gate")
    finally:
        GATE.set()


def test_cancel_a_queued_task_and_restart_a_failed_one(app: QueueTasks, page: Page) -> None:
    queued = app.add_task("elsewhere")  # queue "other": no worker serves it
    assert queued is not None
    page.goto(f"/tasks/{queued.uuid}")
    page.click("button:has-text('Cancel')")
    expect(page.locator(".notice")).to_contain_text("the task was queued")
    expect(page.locator("#task-status")).to_have_text("cancel")
    with WorkerThread(app, queues=["default"]):
        failed = app.add_task("fail", "again", timeout=10)
        assert failed is not None
        page.goto(f"/tasks/{failed.uuid}")
        page.click("button:has-text('Restart')")
        expect(page.locator(".notice")).to_contain_text(f"restarted {failed.uuid}")
        assert str(failed.uuid) not in page.url.split("?")[0]  # the new task's page
        expect(page.locator(f"a[href='/tasks/{failed.uuid}']")).to_be_visible()  # "restart of"
        expect(page.locator("#task-status")).to_have_text("error", timeout=10_000)  # it ran again, live
    page.click("nav >> text=Audit log")
    expect(page.locator("tbody")).to_contain_text("restart")
    expect(page.locator("tbody")).to_contain_text(str(queued.uuid))


def test_bulk_cancel_states_the_count_before_it_acts(app: QueueTasks, page: Page) -> None:
    for _ in range(4):
        app.add_task("elsewhere")
    page.goto("/tasks?queue=other&status=new")
    page.select_option("select[name=action]", "cancel")
    page.click("text=Count and confirm")
    expect(page.locator(".confirm")).to_contain_text("Cancel 4 tasks?")
    page.click("button:has-text('Cancel 4 tasks')")
    expect(page.locator(".notice")).to_contain_text("bulk cancel of 4 tasks: 4 queued")
    assert "queue=other" in page.url and uuids(page) == []


def test_the_overview_counter_moves_live_while_a_worker_runs_tasks(app: QueueTasks, page: Page) -> None:
    page.evaluate("window.notReloaded = true")
    counter = page.locator("[data-count=success]")
    expect(counter).to_have_text("0")
    with WorkerThread(app, queues=["default"]):
        for n in range(5):
            app.add_task("add", n, n)
        expect(counter).to_have_text("5", timeout=10_000)
    assert page.evaluate("window.notReloaded") is True  # it moved without a reload
    expect(page.locator("#live")).to_have_class("live on")
    expect(page.locator("#throughput canvas")).to_have_count(1)  # the chart drew


def test_pages_render_in_the_browser(app: QueueTasks, page: Page) -> None:
    seen: dict[str, Any] = {}
    for name, heading in (("queues", "Queues"), ("workers", "Workers"), ("dead-letters", "Dead letters"),
                          ("schedules", "Schedules"), ("audit", "Audit log")):
        page.click(f"nav >> text={heading}")
        expect(page.locator("h1")).to_have_text(heading)
        seen[name] = page.url
    assert all(url.endswith(name) for name, url in seen.items())


def set_hidden(page: Page, hidden: bool) -> None:
    """What the browser does when the tab goes to the background (or comes back)."""
    page.evaluate("h => { Object.defineProperty(document, 'hidden', {value: h, configurable: true}); "
                  "document.dispatchEvent(new Event('visibilitychange')); }", hidden)


def test_updates_pause_while_the_tab_is_hidden_and_catch_up_when_it_shows(app: QueueTasks, page: Page) -> None:
    counter = page.locator("[data-count=success]")
    expect(page.locator("#live")).to_have_class("live on")
    set_hidden(page, True)
    expect(page.locator("#live")).to_have_class("live paused")
    with WorkerThread(app, queues=["default"]):
        assert all(app.add_task("add", n, n, timeout=10) for n in range(3))
    page.wait_for_timeout(1500)  # longer than a refresh takes when shown (the test above)
    expect(counter).to_have_text("0")  # nothing fetched while hidden
    set_hidden(page, False)
    expect(counter).to_have_text("3")
    expect(page.locator("#live")).to_have_class("live on")  # the stream is open again


def test_a_filtered_tab_refreshes_only_for_its_tasks_and_at_most_once_per_gap(app: QueueTasks, page: Page) -> None:
    page.goto("/tasks?task_name=add")
    expect(page.locator("#live")).to_have_class("live on")
    page.wait_for_timeout(1000)  # the refresh of the stream's opening is done
    fetched: list[float] = []
    page.on("request", lambda r: fetched.append(time.monotonic()) if r.resource_type == "xhr" and "/tasks?" in r.url
            else None)
    with WorkerThread(app, queues=["default"]):
        assert all(app.add_task("sleeper", 0, timeout=10) for _ in range(5))  # another task name
        page.wait_for_timeout(1500)
        assert fetched == []  # nothing the tab shows changed: no refresh
        start = time.monotonic()
        for n in range(30):
            app.add_task("add", n, n)
        expect(page.locator("table.tasks tbody tr[data-uuid]")).to_have_count(30, timeout=10_000)
        expect(page.locator("table.tasks tbody .badge", has_text="new")).to_have_count(0, timeout=10_000)
        took = time.monotonic() - start
    page.wait_for_timeout(1000)
    gaps = [b - a for a, b in zip(fetched, fetched[1:])]
    assert fetched and len(fetched) <= took / 0.8 + 3, (len(fetched), took)  # a burst is ~one refresh per gap
    assert all(g >= 0.7 for g in gaps), gaps


def test_a_tab_filtered_on_a_status_sees_its_rows_leave_it_and_a_task_page_its_cancel(
    app: QueueTasks, page: Page, site: str
) -> None:
    streams: list[str] = []
    page.on("request", lambda r: streams.append(r.url) if "/api/v1/events" in r.url else None)
    queued = [app.add_task("add", n, n) for n in range(3)]
    assert all(queued)
    page.goto("/tasks?status=new")
    expect(page.locator("table.tasks tbody tr[data-uuid]")).to_have_count(3)
    expect(page.locator("#live")).to_have_class("live on")
    # the watch stream names the filter and its page: the server reads that page (a row leaving it is a change)
    assert any("watch=true" in u and "status=new" in u and "limit=50" in u for u in streams), streams
    with WorkerThread(app, queues=["default"]):
        expect(page.locator("table.tasks tbody tr[data-uuid]")).to_have_count(0, timeout=10_000)
    late = app.add_task("add", 9, 9)  # a new task matches the filter: it appears
    expect(page.locator("table.tasks tbody tr[data-uuid]")).to_have_count(1, timeout=5_000)
    assert late is not None
    page.goto("/tasks?task_name=add&limit=2")  # paged back: the stream names the page it shows
    page.locator("a[rel=next]").first.click()
    expect(page.locator("table.tasks tbody tr[data-uuid]")).to_have_count(2)
    expect(page.locator("#live")).to_have_class("live on")
    assert any("watch=true" in u and "limit=2" in u and "cursor=" in u for u in streams), streams
    page.goto(f"/tasks/{late.uuid}")  # a task's page follows its one task
    expect(page.locator("#task-status")).to_have_text("new")
    page.wait_for_timeout(500)
    import httpx  # from outside the page: the REST API, as another client would

    answer = httpx.post(f"{site}/api/v1/tasks/{late.uuid}/cancel", json={}, headers=BEARER)
    assert answer.status_code == 200, answer.text
    expect(page.locator("#task-status")).to_have_text("cancel", timeout=2_000)
