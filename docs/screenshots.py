"""Screenshots of the WebView's main pages into docs/img/*.png (the README's "WebView and REST API" shows them).

    python docs/screenshots.py              # needs chromium (apt-get install chromium) and playwright

An app of a few tasks on the in-process memory broker runs a worker in a thread and the WebView under uvicorn
in a thread; chromium (Debian's, /usr/bin/chromium: Playwright's own download is not needed) signs in and
takes each page. Nothing outside this process is touched.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from qtasks_fast import QueueTasks
from qtasks_fast.middlewares import LogCapture
from qtasks_fast.testing import WorkerThread
from qtasks_fast.testing.contract.harness import envelope
from qtasks_fast.testing.web import WebServer
from qtasks_fast.web import create_app

OUT = Path(__file__).resolve().parent / "img"
TOKEN = "screenshots-token-0123456789"
CHROMIUM = "/usr/bin/chromium"


def build() -> QueueTasks:
    app = QueueTasks("shop", broker_url="memory://")
    app.add_middleware(LogCapture)

    @app.task(retry=2)
    def charge_card(order: int, amount: float) -> dict[str, object]:
        logging.getLogger("shop").warning("charging order %d: %.2f EUR", order, amount)
        if order % 7 == 0:
            raise ValueError(f"card declined for order {order}")
        return {"order": order, "charged": amount}

    @app.task
    async def send_receipt(order: int, email: str) -> str:
        logging.getLogger("shop").warning("receipt of order %d to %s", order, email)
        await asyncio.sleep(0.01)
        return "sent"

    @app.task(queue="emails")
    def send_newsletter(issue: int) -> None:
        """No worker serves the queue "emails": these wait, per priority."""

    @app.task(queue="reports")
    async def build_report(day: str) -> str:
        await asyncio.sleep(60)
        return day

    return app


def main() -> int:
    OUT.mkdir(exist_ok=True)
    app = build()
    with WorkerThread(app, worker_id="web-1", concurrency=8, queues=["default"]):  # a worker gone since
        for order in range(1, 43):
            app.add_task("charge_card", order, 10.0 + order)
            app.add_task("send_receipt", order, f"customer{order}@example.com")
        asyncio.run(app.broker.enqueue([envelope("export_legacy", args=(order, "csv")) for order in (3, 4, 5)],
                                       app.storage))  # a name no worker knows: dead-lettered
        time.sleep(2.0)
    for n, priority in enumerate((0, 0, 0, 5, 5, 9)):
        app.add_task("send_newsletter", n, priority=priority)
    with WorkerThread(app, worker_id="shop-1", concurrency=8, queues=["default"]), \
            WorkerThread(app, worker_id="reports-1", queues=["reports"]), \
            WebServer(create_app(app, token=TOKEN)) as url:
        for day in ("2026-12-05", "2026-12-06", "2026-12-07"):
            app.add_task("build_report", day)
        for order in range(43, 49):
            app.add_task("charge_card", order, 5.0, countdown=3600)
        time.sleep(1.0)
        problems: list[str] = []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM)
            page = browser.new_page(viewport={"width": 1360, "height": 600})
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.goto(f"{url}/signin")
            page.fill("input[name=token]", TOKEN)
            page.click("button[type=submit]")
            page.wait_for_selector("#throughput canvas")
            page.screenshot(path=str(OUT / "overview.png"), full_page=True)
            page.goto(f"{url}/tasks?task_name=charge_card&limit=20")
            page.screenshot(path=str(OUT / "tasks.png"), full_page=True)
            page.goto(f"{url}/tasks?status=error")
            page.click("table.tasks tbody tr:first-child a")
            page.wait_for_selector("pre.traceback")
            page.screenshot(path=str(OUT / "task.png"), full_page=True)
            for name in ("queues", "workers", "dead-letters"):
                page.goto(f"{url}/{name}")
                page.screenshot(path=str(OUT / f"{name}.png"), full_page=True)
            browser.close()
    if problems:
        print("\n".join(["the browser reported errors:", *problems]), file=sys.stderr)
        return 1
    print(f"screenshots in {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
