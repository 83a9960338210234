"""The REST API (issue 13) in process on the memory backend: every endpoint answers what a client relies on,
and bad input gets 404/422 naming the problem, never a 500 or a traceback."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from apps.web_app import build
from apps.webkit import TOKEN, client

from qtasks_fast import QueueTasks
from qtasks_fast.testing import WorkerThread
from qtasks_fast.testing.contract.harness import envelope

UNKNOWN = str(uuid.UUID(int=1))


@pytest.fixture
def app(app_name: str) -> QueueTasks:
    return build(app_name, "memory://")


@pytest.fixture
def worker(app: QueueTasks) -> Iterator[WorkerThread]:
    with WorkerThread(app, worker_id="webw") as w:
        yield w


async def test_submit_wait_then_read_the_task_every_way(app: QueueTasks, worker: WorkerThread) -> None:
    async with client(app) as c:
        r = await c.post("/api/v1/tasks", json={"name": "add", "args": [1, 2], "wait": 10})
        assert r.status_code == 200, r.text
        task = r.json()
        assert task["status"] == "success" and task["returning"] == 3
        uid = task["uuid"]
        assert (await c.get(f"/api/v1/tasks/{uid}")).json()["returning"] == 3
        detail = (await c.get(f"/api/v1/tasks/{uid}/detail")).json()
        assert detail["task"]["uuid"] == uid and detail["finished_at"] >= detail["started_at"]
        assert any("adding 1 and 2" in line for line in detail["logs"])
        assert any("adding 1 and 2" in line for line in (await c.get(f"/api/v1/tasks/{uid}/logs")).json())
        page = (await c.get("/api/v1/tasks", params={"task_name": "add", "status": "success"})).json()
        assert [t["uuid"] for t in page["tasks"]] == [uid] and page["cursor"] is None
        assert (await c.get("/api/v1/tasks", params={"status": "error"})).json()["tasks"] == []
        counts = (await c.get("/api/v1/tasks/counts", params={"task_name": "add"})).json()
        assert counts == {"new": 0, "process": 0, "success": 1, "error": 0, "cancel": 0}


async def test_get_with_wait_returns_the_final_record(app: QueueTasks, worker: WorkerThread) -> None:
    async with client(app) as c:
        uid = (await c.post("/api/v1/tasks", json={"name": "sleeper", "args": [0.3]})).json()["uuid"]
        r = await c.get(f"/api/v1/tasks/{uid}", params={"wait": 10})
        assert r.json()["status"] == "success" and r.json()["returning"] == "woke"


async def test_a_list_pages_newest_first_with_its_cursor(app: QueueTasks) -> None:
    async with client(app) as c:
        made = [(await c.post("/api/v1/tasks", json={"name": "add", "args": [i, i]})).json()["uuid"]
                for i in range(5)]
        seen, cursor = [], None
        while True:
            page = (await c.get("/api/v1/tasks", params={"limit": 2, **({"cursor": cursor} if cursor else {})})).json()
            seen += [t["uuid"] for t in page["tasks"]]
            cursor = page["cursor"]
            if cursor is None:
                break
        assert len(seen) == 5 and set(seen) == set(made)  # every task once (order within a ms: by uuid)
        assert seen[0] == made[-1] or seen.index(made[-1]) < seen.index(made[0])


async def test_unknown_task_name_is_404_with_the_registered_names(app: QueueTasks) -> None:
    async with client(app) as c:
        r = await c.post("/api/v1/tasks", json={"name": "ad", "args": [1, 2]})
    assert r.status_code == 404
    assert r.json()["registered"] == ["add", "elsewhere", "fail", "sleeper"] and "'ad'" in r.json()["error"]


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/api/v1/tasks/{u}"), ("GET", "/api/v1/tasks/{u}/detail"), ("GET", "/api/v1/tasks/{u}/logs"),
    ("POST", "/api/v1/tasks/{u}/cancel"), ("POST", "/api/v1/tasks/{u}/restart")])
async def test_an_unknown_uuid_is_404(app: QueueTasks, method: str, path: str) -> None:
    async with client(app) as c:
        r = await c.request(method, path.format(u=UNKNOWN), json={} if method == "POST" else None)
    assert r.status_code == 404 and UNKNOWN in r.json()["error"]


BAD = [
    ("POST", "/api/v1/tasks", {"json": {"name": "add", "priority": "high"}}, "priority"),
    ("POST", "/api/v1/tasks", {"json": {"name": "add", "args": {"a": 1}}}, "args"),
    ("POST", "/api/v1/tasks", {"json": {"args": [1]}}, "name"),
    ("POST", "/api/v1/tasks", {"json": {"name": "add", "args": [1, 2], "priority": 99}}, "priority"),
    ("POST", "/api/v1/tasks", {"json": {"name": "add", "args": [1, 2], "wait": 1e9}}, "wait"),
    ("POST", "/api/v1/tasks", {"json": {"name": "add", "args": ["x"]}}, "args"),
    ("POST", "/api/v1/tasks", {"json": {"name": "add", "args": [1, 2], "eta": 1e300}}, "eta"),
    ("POST", "/api/v1/tasks", {"json": {"name": "add", "args": [10**26, 1]}}, "args"),  # beyond 64 bits
    ("POST", "/api/v1/tasks", {"json": {"name": "add", "args": [1, 2], "kwargs": {"x": -(10**30)}}}, "kwargs"),
    ("POST", "/api/v1/tasks", {"content": b'{"name":"add","args":[' + b"[" * 3000 + b"]" * 3000 + b",1]}",
                               "headers": {"content-type": "application/json"}}, "args"),  # valid, too deep
    ("POST", "/api/v1/tasks", {"content": b'{"name":"add","kwargs":{"a":' + b"[" * 3000 + b"]" * 3000 + b"}}",
                               "headers": {"content-type": "application/json"}}, "kwargs"),
    ("POST", "/api/v1/tasks", {"json": {"name": "add", "args": [1, 2], "unique": ""}}, "unique"),
    ("POST", "/api/v1/tasks", {"content": b'{"name":"add","args":[1,2],"countdown":1e400}',
                               "headers": {"content-type": "application/json"}}, "countdown"),  # beyond a double
    ("POST", "/api/v1/dead-letters/purge", {}, "ids"),
    ("POST", "/api/v1/tasks", {"content": b"{not json", "headers": {"content-type": "application/json"}}, "body"),
    ("GET", "/api/v1/tasks", {"params": {"limit": 0}}, "limit"),
    ("GET", "/api/v1/tasks", {"params": {"limit": "ten"}}, "limit"),
    ("GET", "/api/v1/tasks", {"params": {"status": "done"}}, "status"),
    ("GET", "/api/v1/tasks", {"params": {"created_after": "yesterday"}}, "created_after"),
    ("GET", "/api/v1/tasks", {"params": {"finished_before": "nan"}}, "finished_before"),
    ("GET", "/api/v1/tasks", {"params": {"cursor": "garbage"}}, "cursor"),
    ("GET", "/api/v1/tasks/counts", {"params": {"created_before": "x"}}, "created_before"),
    ("GET", "/api/v1/tasks/not-a-uuid", {}, "uuid"),
    ("GET", f"/api/v1/tasks/{UNKNOWN}", {"params": {"wait": -1}}, "wait"),
    ("POST", "/api/v1/tasks/bulk", {"json": {"action": "delete"}}, "action"),
    ("POST", "/api/v1/tasks/bulk", {"json": {"action": "cancel"}}, "confirm"),
    ("POST", "/api/v1/tasks/bulk/count", {"json": {"action": "cancel", "cap": 0}}, "cap"),
    ("POST", "/api/v1/tasks/bulk", {"json": {"action": "cancel", "confirm": -1}}, "confirm"),
    ("POST", "/api/v1/tasks/bulk/count", {"json": {"action": "cancel", "filter": {"status": "x"}}},
     "filter.status"),
    ("GET", "/api/v1/dead-letters", {"params": {"limit": 0}}, "limit"),
    ("POST", "/api/v1/dead-letters/requeue", {"json": {"ids": "1-0"}}, "ids"),
    ("GET", "/api/v1/throughput", {"params": {"minutes": 0}}, "minutes"),
    ("GET", "/api/v1/audit", {"params": {"limit": 5000}}, "limit"),
    ("GET", "/api/v1/workers", {"params": {"include_lost": "maybe"}}, "include_lost"),
    ("GET", "/api/v1/events", {"params": {"after": "not-an-id", "follow": "false"}}, "after"),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "field"), BAD, ids=[f"{b[1]}:{b[3]}" for b in BAD])
async def test_malformed_input_is_422_naming_the_field(app: QueueTasks, method: str, path: str,
                                                       kwargs: dict[str, Any], field: str) -> None:
    async with client(app) as c:
        r = await c.request(method, path, **kwargs)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field and r.json()["error"]
    assert "Traceback" not in r.text


async def test_an_unknown_queue_is_404(app: QueueTasks) -> None:
    async with client(app) as c:
        for r in (await c.post("/api/v1/queues/nope/purge"), await c.get("/api/v1/dead-letters?queue=nope"),
                  await c.get("/api/v1/throughput?queue=nope")):
            assert r.status_code == 404 and "'nope'" in r.json()["error"], r.text


async def test_cancel_a_queued_task_and_restart_a_failed_one(app: QueueTasks) -> None:
    async with client(app) as c:
        queued = (await c.post("/api/v1/tasks", json={"name": "sleeper", "args": [5]})).json()["uuid"]
        r = await c.post(f"/api/v1/tasks/{queued}/cancel", json={"reason": "not needed"})
        assert r.json() == {"uuid": queued, "result": "queued"}
        assert (await c.get(f"/api/v1/tasks/{queued}")).json()["status"] == "cancel"
        with WorkerThread(app):
            failed = (await c.post("/api/v1/tasks", json={"name": "fail", "args": ["boom"], "wait": 10})).json()
            assert failed["status"] == "error" and "ValueError: boom" in failed["traceback"]
            again = (await c.post(f"/api/v1/tasks/{failed['uuid']}/restart")).json()
            assert again["uuid"] != failed["uuid"] and again["restart_of"] == failed["uuid"]
            assert (await c.get(f"/api/v1/tasks/{again['uuid']}", params={"wait": 10})).json()["status"] == "error"
        assert (await c.get(f"/api/v1/tasks/{failed['uuid']}/detail")).json()["restarts"] == [again["uuid"]]
        audit = (await c.get("/api/v1/audit")).json()
        assert [(a["action"], a["target"], a["who"]) for a in audit[:2]] == [
            ("restart", failed["uuid"], "api"), ("submit", "fail", "api")]
        assert ("cancel", queued, "queued") in [(a["action"], a["target"], a["outcome"]) for a in audit]


async def test_bulk_counts_first_then_acts_on_the_counted_tasks_only(app: QueueTasks) -> None:
    async with client(app) as c:
        for _ in range(5):
            await c.post("/api/v1/tasks", json={"name": "sleeper", "args": [5]})
        await c.post("/api/v1/tasks", json={"name": "add", "args": [1, 1]})
        listed = [t["uuid"] for t in (await c.get("/api/v1/tasks?task_name=sleeper")).json()["tasks"]]
        flt = {"task_name": "sleeper", "status": "new"}
        dry = (await c.post("/api/v1/tasks/bulk/count", json={"action": "cancel", "filter": flt, "cap": 3})).json()
        assert dry == {"action": "cancel", "matched": 3, "capped": True, "dry_run": True, "done": {},
                       "uuids": listed[:3]}
        assert (await c.post("/api/v1/tasks/bulk/count", json={"action": "cancel", "filter": flt})
                ).json()["matched"] == 5
        assert (await c.post("/api/v1/tasks/bulk/count", json={"action": "cancel", "cap": 2.0})
                ).json()["matched"] == 2  # 2.0 is an integer in JSON
        late = (await c.post("/api/v1/tasks", json={"name": "sleeper", "args": [5]})).json()["uuid"]
        done = (await c.post("/api/v1/tasks/bulk", json={"action": "cancel", "filter": flt, "cap": 3,
                                                          "confirm": 2, "uuids": dry["uuids"][:2]})).json()
        assert done["done"] == {"queued": 2} and done["matched"] == 2
        statuses = [(await c.get(f"/api/v1/tasks/{u}")).json()["status"] for u in [late, *listed]]
        assert statuses == ["new", "cancel", "cancel", "new", "new", "new"]  # the late one was never counted
        counts = (await c.get("/api/v1/tasks/counts")).json()
        assert counts["new"] == 5 and counts["cancel"] == 2
        again = (await c.post("/api/v1/tasks/bulk/count", json={"action": "restart", "filter": {"status": "cancel"},
                                                                 "cap": 10})).json()
        restarted = (await c.post("/api/v1/tasks/bulk", json={"action": "restart", "filter": {"status": "cancel"},
                                                               "confirm": 2, "uuids": again["uuids"]})).json()
        assert restarted["done"] == {"restarted": 2}
        for body, field in [({"confirm": 2}, "uuids"), ({"confirm": 1, "uuids": ["nope"]}, "uuids[0]")]:
            r = await c.post("/api/v1/tasks/bulk", json={"action": "cancel", **body})
            assert r.status_code == 422 and r.json()["field"] == field, r.text


async def test_integral_floats_fill_integer_fields(app: QueueTasks, worker: WorkerThread) -> None:
    """JSON has one number type: 3.0 is an integer to JSON Schema (and what a JavaScript client may send), so an
    integer field takes it (schemathesis found the 422); 3.5 is refused naming the field."""
    async with client(app) as c:
        await c.post("/api/v1/tasks", json={"name": "sleeper", "args": [5]})
        ok = await c.post("/api/v1/tasks/bulk/count", json={"action": "cancel", "cap": 3.0})
        assert ok.status_code == 200 and ok.json()["matched"] == 1, ok.text
        bad = await c.post("/api/v1/tasks/bulk/count", json={"action": "cancel", "cap": 3.5})
        assert bad.status_code == 422 and bad.json()["field"] == "cap"
        r = await c.post("/api/v1/tasks", json={"name": "add", "args": [1, 2], "wait": 10.0, "priority": 0.0})
        assert r.status_code == 200 and r.json()["returning"] == 3, r.text


async def test_dead_letters_list_requeue_and_purge(app: QueueTasks) -> None:
    ghosts = [envelope("ghost"), envelope("ghost", args=("x",))]
    async with client(app) as c:
        await app.broker.enqueue(ghosts, app.storage)
        with WorkerThread(app):  # an unknown task name is dead-lettered by the worker
            for _ in range(100):
                dead = (await c.get("/api/v1/dead-letters")).json()
                if len(dead) == 2:
                    break
                await asyncio.sleep(0.05)
        assert sorted(d["uuid"] for d in dead) == sorted(g.uuid for g in ghosts)
        assert {d["task_name"] for d in dead} == {"ghost"} and all(d["reason"] for d in dead)
        assert sorted((d["args"] for d in dead), key=len) == [["x"], [1, 2]]
        queue = (await c.get("/api/v1/queues")).json()
        assert [(q["depth"]["queue"], q["depth"]["dead"]) for q in queue] == [("default", 2), ("other", 0)]
        n = (await c.post("/api/v1/dead-letters/requeue", json={"ids": [dead[0]["id"]]})).json()
        assert n == {"count": 1}
        purged = await c.post("/api/v1/dead-letters/purge", json={"queue": "default", "ids": None})
        assert purged.json() == {"count": 1}
        assert (await c.get("/api/v1/dead-letters")).json() == []
        assert (await c.post("/api/v1/queues/default/purge")).json() == {"count": 1}  # the requeued one


async def test_fleet_views_health_and_metrics(app: QueueTasks) -> None:
    async with client(app) as c:
        down = await c.get("/health")
        assert down.status_code == 503 and down.json()["reason"] == "no live worker"
        with WorkerThread(app, worker_id="webw"):
            await c.post("/api/v1/tasks", json={"name": "add", "args": [2, 2], "wait": 10})
            up = await c.get("/health")
            assert up.status_code == 200 and up.json() == {"ok": True, "broker": True, "workers": 1, "reason": ""}
            workers = (await c.get("/api/v1/workers")).json()
            assert [(w["id"], w["lost"]) for w in workers] == [("webw-0", False)]
            metrics = (await c.get("/metrics")).text
            assert 'qtasks_tasks{status="success",task_name="add"} 1.0' in metrics
            assert "qtasks_workers_up 1.0" in metrics and 'qtasks_queue_waiting{queue="other"} 0.0' in metrics
            points = (await c.get("/api/v1/throughput", params={"minutes": 2})).json()
            assert len(points) == 2 and sum(p["success"] for p in points) == 1
        assert (await c.get("/api/v1/schedules")).json() == []


async def test_metrics_have_a_fleet_wide_runtime_histogram_by_task_name(app: QueueTasks) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    async with client(app) as c:
        with WorkerThread(app):
            for body in ({"name": "sleeper", "args": [0.3]}, {"name": "add", "args": [1, 2]},
                         {"name": "fail", "args": ["boom"]}):
                await c.post("/api/v1/tasks", json={**body, "wait": 10})
        text = (await c.get("/metrics")).text
    families = [f for f in text_string_to_metric_families(text) if f.name.startswith("qtasks_task_runtime_seconds")]
    assert families[0].type == "histogram" and "newest" in families[0].documentation  # its source, explained
    samples = {(s.name, s.labels["task_name"], s.labels.get("le")): s.value for f in families for s in f.samples}
    for name in ("sleeper", "add", "fail"):  # success and error runs, each by its name
        assert samples[("qtasks_task_runtime_seconds_gcount", name, None)] == 1.0
    assert samples[("qtasks_task_runtime_seconds_bucket", "sleeper", "0.25")] == 0.0  # it slept 0.3 s
    assert samples[("qtasks_task_runtime_seconds_bucket", "sleeper", "+Inf")] == 1.0
    assert samples[("qtasks_task_runtime_seconds_gsum", "sleeper", None)] >= 0.3


async def test_schedules_list_periodic_tasks_with_their_next_run(app: QueueTasks) -> None:
    @app.periodic(every=60)
    def tick() -> None: ...

    async with client(app) as c:
        found = (await c.get("/api/v1/schedules")).json()
    assert [(s["name"], s["task_name"]) for s in found] == [("tick", "tick")]
    assert found[0]["next_run"] > time.strftime("%Y-%m-%dT%H:%M", time.gmtime(time.time() - 60))


async def test_the_openapi_document_lists_every_route_of_the_issue(app: QueueTasks) -> None:
    async with client(app, bearer=False) as c:  # public: it holds no data
        doc = (await c.get("/api/v1/openapi.json")).json()
    assert doc["openapi"].startswith("3.") and doc["servers"] == [{"url": "/api/v1"}]
    routes = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert routes >= {("POST", "/tasks"), ("GET", "/tasks"), ("GET", "/tasks/{uuid}"), ("GET", "/tasks/{uuid}/logs"),
                      ("POST", "/tasks/{uuid}/cancel"), ("POST", "/tasks/{uuid}/restart"), ("POST", "/tasks/bulk"),
                      ("POST", "/tasks/bulk/count"),
                      ("GET", "/queues"), ("GET", "/dead-letters"), ("POST", "/dead-letters/requeue"),
                      ("POST", "/dead-letters/purge"), ("GET", "/workers"), ("GET", "/schedules"),
                      ("GET", "/events")}
    submit = doc["paths"]["/tasks"]["post"]
    assert set(submit["responses"]) == {"200", "401", "403", "404", "422", "429", "503"}


async def test_the_document_gives_the_priorities_the_server_accepts(app: QueueTasks) -> None:
    """A submitted priority must be one of the app's levels (422 outside): the document says so, so a client
    generated from it (or schemathesis) does not call a refused value valid."""
    levels = app.config.priority_levels
    async with client(app) as c:
        doc = (await c.get("/api/v1/openapi.json")).json()
        ref = doc["paths"]["/tasks"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        prop = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"]["priority"]
        (bounds,) = [alt for alt in prop["anyOf"] if alt.get("type") == "integer"]
        assert (bounds["minimum"], bounds["maximum"]) == (0, levels - 1)
        for priority, status in ((levels, 422), (levels - 1, 200), (-1, 422), (0, 200)):
            r = await c.post("/api/v1/tasks", json={"name": "add", "args": [1, 2], "priority": priority})
            assert r.status_code == status, (priority, r.text)


async def test_an_unreachable_broker_is_503_without_its_password(app_name: str) -> None:
    app = build(app_name, "redis://:s3cret-pw@127.0.0.1:1/0")
    async with client(app) as c:
        for path in ("/api/v1/tasks", "/api/v1/queues", "/api/v1/workers", "/health", "/api/v1/audit"):
            r = await c.get(path)
            assert r.status_code == 503, (path, r.text)
            assert "s3cret-pw" not in r.text and TOKEN not in r.text and "Traceback" not in r.text
            assert r.json().get("error") or r.json().get("reason")
        r = await c.post("/api/v1/tasks", json={"name": "add", "args": [1, 2]})
        assert r.status_code == 503 and "s3cret-pw" not in r.text
