"""web: the REST API at scale, and SSE fan-out while the fleet drains.

The query suite's 1,000,000 finished records in a private Redis, served by ``create_app`` under uvicorn on
loopback, then timed HTTP calls of ``GET /api/v1/tasks`` with filters, and of the WebView's Tasks page (the HTML
a browser gets: filtered by name and status, by a creation-time range, by status alone, and the uuid search's
redirect to the task's page).

Why through HTTP and uvicorn (a server thread in this process; the client on the main thread's loop): the
target (p95 < 150 ms) is what a dashboard or another service sees, parsing, JSON encoding and the server
included. The records are loaded as the query suite does (``qtasks_fast.benchmarks.query.load``: enqueue,
fetch, settle, so the indexes are production's). Each case: 5 untimed warm-up calls, then ``--query-samples``
timed ones with a random task name, status and 2-hour window. ``--quick`` stores 20,000 records.

Fan-out: ``--n`` noop tasks drained by one worker process, alternately alone and with ``qtasks-fast web``
serving 100 SSE clients (10 with ``--quick``) of the app, both in processes of their own; ``--repeats`` pairs,
medians compared (the target: within noise, a ratio near 1). Three kinds of clients: streams of counts, what 100
browser tabs of the WebView open (:data:`TABS`: counts for the dashboards and the unfiltered Tasks table, watch
streams for a filtered table and a task's page) and streams of every event (the API's, for other programs: a
cost per event and client, reported as the web process's CPU per frame delivered). On a machine whose cores the
worker shares with the web server, the ratio measures their competition for CPU as much as anything, so each run
also reports the CPU seconds the web process (and the clients' process) used per second of drain (``/proc``).
"""

from __future__ import annotations

import asyncio
import random
import secrets
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from qtasks_fast.benchmarks import query
from qtasks_fast.benchmarks.common import Ctx, PrivateRedis

TARGET_MS = 150.0
APP = "benchweb"


def serve(url: str, token: str) -> tuple[Any, threading.Thread, int]:
    """uvicorn serving ``create_app`` of an app on ``url`` in a thread; (server, thread, port)."""
    import uvicorn

    from qtasks_fast import QueueTasks
    from qtasks_fast.web import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(create_app(QueueTasks(APP, broker_url=url), token=token),
                                           host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="bench-web", daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    return server, thread, port


async def timed(samples: int, call: Callable[[], Awaitable[Any]]) -> dict[str, float]:
    for _ in range(5):
        await call()
    times = []
    for _ in range(samples):
        t = time.perf_counter()
        await call()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    at = lambda q: round(times[min(len(times) - 1, int(len(times) * q))], 2)  # noqa: E731
    return {"p50": round(statistics.median(times), 2), "p95": at(0.95), "p99": at(0.99), "max": round(times[-1], 2)}


async def measure(ctx: Ctx, port: int, token: str, samples: int, rnd: random.Random) -> list[dict[str, Any]]:
    import httpx

    now = time.time()

    def window() -> dict[str, Any]:
        start = now - rnd.random() * (query.SPREAD - 7200)
        return {"task_name": rnd.choice(query.NAMES), "status": rnd.choice(["success", "error"]),
                "created_after": start - 7200, "created_before": start, "limit": 50}

    def utc(epoch: float) -> str:  # what the page's datetime-local inputs send (UTC)
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch))

    def page_window(**extra: Any) -> dict[str, Any]:
        f = window()
        return {"created_after": utc(f["created_after"]), "created_before": utc(f["created_before"]), **extra}

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/api/v1",
                                 headers={"authorization": f"Bearer {token}"}, timeout=30) as c:
        async def get(path: str, params: dict[str, Any] | None = None) -> Any:
            r = await c.get(path, params=params)
            r.raise_for_status()
            return r.json()

        async def page(params: dict[str, Any]) -> str:
            """The WebView's Tasks page as a browser gets it (HTML; a uuid search: its redirect, then the task's
            page), the filters as its form sends them."""
            r = await c.get(f"http://127.0.0.1:{port}/tasks", params=params, headers={"accept": "text/html"},
                            follow_redirects=True)
            r.raise_for_status()
            if "<table" not in r.text and "task-live" not in r.text:
                raise RuntimeError(f"not the page: {r.text[:200]}")
            return r.text

        async def page2() -> None:
            f = window()
            first = await get("/tasks", f)
            if first["cursor"]:
                await get("/tasks", {**f, "cursor": first["cursor"]})

        sample = (await get("/tasks", {"limit": 1000}))["tasks"]
        cases: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
            ("GET /tasks: name + status + 2 h created window", lambda: get("/tasks", window())),
            ("GET /tasks page 1 and page 2 (cursor), same filter", page2),
            ("GET /tasks/counts: name + 2 h window", lambda: get("/tasks/counts", {
                "task_name": rnd.choice(query.NAMES), "created_after": now - 7200 - rnd.random() * 3600})),
            ("GET /tasks: status only (merges the 8 names)", lambda: get("/tasks", {
                "status": rnd.choice(["success", "error", "cancel"]), "limit": 50})),
            ("GET /tasks: no filter", lambda: get("/tasks", {"limit": 50})),
            ("GET /tasks/{uuid}/detail", lambda: get(f"/tasks/{rnd.choice(sample)['uuid']}/detail")),
            ("Tasks page (HTML): name + status + 2 h created window", lambda: page(page_window(
                task_name=rnd.choice(query.NAMES), status=rnd.choice(["success", "error"])))),
            ("Tasks page (HTML): 2 h created window only", lambda: page(page_window())),
            ("Tasks page (HTML): status only", lambda: page({"status": rnd.choice(["success", "error", "cancel"])})),
            ("Tasks page (HTML): uuid search (redirect + task page)", lambda: page({
                "uuid": rnd.choice(sample)["uuid"]})),
        ]
        rows = []
        for label, call in cases:
            ctx.step(f"web: {label}")
            stats = await timed(samples, call)
            verdict = "PASS" if stats["p95"] < TARGET_MS else "MISS"
            rows.append({"case": label, "samples": samples, **{f"{k} ms": v for k, v in stats.items()},
                         "target": f"< {TARGET_MS:.0f} ms p95", "verdict": verdict})
    return rows


def run(ctx: Ctx) -> dict[str, Any]:
    records = 20_000 if ctx.quick else int(getattr(ctx.args, "query_records", None) or 1_000_000)
    samples = 20 if ctx.quick else int(getattr(ctx.args, "query_samples", None) or 200)
    ctx.begin("web", records // query.CHUNK + 8 + 4 * ctx.repeats)
    private = PrivateRedis(Path(tempfile.mkdtemp(prefix="qtasks-bench-web-")))
    url = private.start()
    token = secrets.token_urlsafe(24)
    try:
        rnd = random.Random(13)
        rate = asyncio.run(query.load(ctx, url, APP, records, rnd))
        asyncio.run(query.trim(url, APP))
        server, thread, port = serve(url, token)
        try:
            rows = asyncio.run(measure(ctx, port, token, samples, rnd))
        finally:
            server.should_exit = True
            thread.join(10)
        fans = [fan_out(ctx, 10 if ctx.quick else 100, kind) for kind in ("summary", "tabs", "every")]
        ctx.end()
        notes = [f"{records:,} finished records (the query suite's mix) stored at {rate:,.0f} records/s in a private "
                 "redis-server; uvicorn serving create_app in a thread of the measuring process, httpx on loopback "
                 "(one connection, calls one after another), the machine's other load included"]
        notes += [f"{fan['case']}: {fan['alone tasks/s']:,} vs {fan['with SSE tasks/s']:,} tasks/s (ratio "
                  f"{fan['ratio']}; runs {fan['runs alone']} vs {fan['runs with SSE']}; each client had read at "
                  f"least {fan['events per client (fewest)']} events (summary streams: frames of counts) per run "
                  "when stopped; the web process used "
                  f"{fan['web CPU s per s of drain']} CPU s and the clients' process "
                  f"{fan['clients CPU s per s of drain']} per second of drain); qtasks-fast web and the "
                  "clients in processes of their own, Redis the run's (--redis-url)" for fan in fans]
        return {"rows": rows, "notes": notes, "fan_out": fans,
                "params": {"records": records, "samples": samples, "n": ctx.n, "repeats": ctx.repeats}}
    finally:
        private.stop()


#: what 100 open tabs of the WebView follow (``fan_out(kind="tabs")``), per 100 clients: the pages people leave open
#: are the dashboards (Overview, Queues, Workers: counts) and the Tasks table; some tabs filter it (on a task
#: name that every event of this drain matches; on a status no event of it matches, naming its 50 rows), some
#: are one task's page. ``None``: a stream of counts; else the watch stream's filter ("rows": that many uuids)
TABS: tuple[tuple[str, int, dict[str, Any] | None], ...] = (
    ("Overview, Queues, Workers", 40, None),
    ("Tasks, unfiltered", 20, None),
    ("Tasks?task_name=noop", 10, {"task_name": "noop"}),
    ("Tasks?status=error, 50 rows", 10, {"status": "error", "rows": 50}),
    ("a task's page", 20, {"rows": 1}),
)


def streams(kind: str, clients: int, main_pages: bool = False) -> list[str]:
    """The query of each client's stream: ``summary`` (counts), ``every`` (every event: the API's stream) or
    ``tabs`` (:data:`TABS`; with ``main_pages`` what those pages opened before watch streams: every event for
    any Tasks or task page, so that a base server is measured with what its own pages asked)."""
    import uuid as uuids

    if kind != "tabs":
        return ["?summary=true" if kind == "summary" else ""] * clients
    out: list[str] = []
    for page, share, watch in TABS:
        for _ in range(max(1, round(share * clients / 100))):
            if watch is None:
                out.append("?summary=true" if not main_pages or page.startswith("Overview") else "")
            elif main_pages:
                out.append("")
            else:
                fields = {k: v for k, v in watch.items() if k != "rows"}
                rows = ",".join(str(uuids.uuid4()) for _ in range(watch.get("rows", 0)))
                out.append("?" + urlencode({"watch": "true", **fields, **({"uuid": rows} if rows else {})}))
    return out


def fan_out(ctx: Ctx, clients: int, kind: str = "every", web_tree: Path | None = None,
            main_pages: bool = False) -> dict[str, Any]:
    """Drain rate of noop tasks through one worker process alone, and with ``qtasks-fast web`` serving
    ``clients`` SSE streams of the app (another process; ``kind``: :func:`streams`), alternating; the median of
    each and their ratio. ``web_tree``: the web server runs that checkout's package
    (``qtasks_fast.benchmarks.web_ab``)."""
    import json
    import signal
    import subprocess

    from qtasks_fast.benchmarks.apps import make_app
    from qtasks_fast.benchmarks.common import WorkerPool, app_keys, bench_env, median, spawn_module, unique
    from qtasks_fast.benchmarks.drain import run_once, warm_up

    name, token = unique("web"), secrets.token_urlsafe(24)
    env = bench_env(QTASKS_BENCH_APP=name, QTASKS_BROKER_URL=ctx.url, QTASKS_WEB_TOKEN=token)
    app = make_app(name, ctx.url)
    rates: dict[str, list[float]] = {"alone": [], "sse": []}
    cpu: dict[str, list[float]] = {"web": [], "clients": []}
    events: list[int] = []
    frames: list[int] = []
    per_frame: list[float] = []
    with app_keys(ctx, name), WorkerPool(ctx, name, 1) as pool:
        warm_up(ctx, app, pool)
        for _ in range(ctx.repeats):
            ctx.step("web: drain without the web app")
            rates["alone"].append(run_once(ctx, app, pool, ctx.n, ("noop", (), {}))["rate"])
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = int(s.getsockname()[1])
            server = spawn_module("qtasks_fast", ["-A", "qtasks_fast.benchmarks.apps:app", "web", "--port", str(port)],
                                  env=env, stderr_to=ctx.logs / "web-server.log", tree=web_tree)
            try:
                for _ in range(200):
                    try:
                        socket.create_connection(("127.0.0.1", port), 0.1).close()
                        break
                    except OSError:
                        time.sleep(0.05)
                args = [a for q in streams(kind, clients, main_pages)
                        for a in (f"http://127.0.0.1:{port}/api/v1/events{q}", "1")]
                readers = spawn_module("qtasks_fast.benchmarks.sse_clients", args, env=env,
                                       stderr_to=ctx.logs / "sse-clients.log")
                assert readers.stdout is not None
                if readers.stdout.readline().strip() != b"connected":
                    raise RuntimeError("the SSE clients did not connect (see logs/sse-clients.log)")
                ctx.step(f"web: drain with {clients} SSE clients")
                used = cpu_seconds(server.pid), cpu_seconds(readers.pid)
                rates["sse"].append(run_once(ctx, app, pool, ctx.n, ("noop", (), {}))["rate"])
                drained = ctx.n / rates["sse"][-1]  # the drain's seconds
                web_used = cpu_seconds(server.pid) - used[0]
                cpu["web"].append(web_used / drained)
                cpu["clients"].append((cpu_seconds(readers.pid) - used[1]) / drained)
                time.sleep(1.5)  # the last events reach the clients
                readers.send_signal(signal.SIGTERM)
                out, _ = readers.communicate(timeout=30)
                got = json.loads(out.decode().strip().splitlines()[-1])
                events.append(min(got))
                frames.append(sum(got))
                per_frame.append(web_used / max(1, sum(got)) * 1e6)
            finally:
                server.send_signal(signal.SIGTERM)
                try:
                    server.wait(20)
                except subprocess.TimeoutExpired:
                    server.kill()
    alone, sse = median(rates["alone"]), median(rates["sse"])
    what = {"summary": "summary (counts) streams", "every": "SSE clients of every event",
            "tabs": "browser tabs' streams (" + ", ".join(f"{share}% {page}" for page, share, _ in TABS)
            + (": what main's pages opened" if main_pages else "") + ")"}[kind]
    return {"case": f"drain of {ctx.n:,} noop tasks, 1 worker process: alone vs {clients} {what}",
            "alone tasks/s": round(alone), "with SSE tasks/s": round(sse), "ratio": round(sse / alone, 3),
            "runs alone": [round(r) for r in rates["alone"]], "runs with SSE": [round(r) for r in rates["sse"]],
            "events per client (fewest)": events, "frames delivered": frames,
            "web CPU s per s of drain": round(median(cpu["web"]), 3),
            "clients CPU s per s of drain": round(median(cpu["clients"]), 3),
            "runs web CPU": [round(c, 3) for c in cpu["web"]],
            "web CPU us per frame delivered": [round(c, 2) for c in per_frame]}


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used so far (Linux ``/proc``): what serving the streams
    costs the cores the workers share, whatever the drain rate's noise."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
