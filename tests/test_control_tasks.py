"""Task control against real worker processes: cancel, restart, status — through the app and the CLI.

What a user relies on: a cancelled queued task never runs, even once workers
come; a running async task stops when cancelled; a restart runs the same call
again under a new uuid that names the original; the CLI says "not found" with
exit code 1 and prints JSON a script can read.
"""

from __future__ import annotations

import uuid as _uuid

from apps.control_helpers import cli, cli_json, load_app, wait_for

from qtasks_fast.middleware import Middleware
from qtasks_fast.schemas import META_RESTART_OF


def test_cancelled_queued_task_never_runs_while_the_pool_drains_the_rest(harness, redis_url, app_name):
    m = load_app(app_name, redis_url)
    doomed = m.app.add_task("touch", "doomed")
    kept = [m.app.add_task("touch", f"kept{i}") for i in range(20)]
    assert m.app.cancel(doomed.uuid, "not needed any more") == "queued"
    assert m.app.get(doomed.uuid).status == "cancel"

    proc = harness.start(redis_url, processes=1, app="control_app")
    for t in kept:
        done = m.app.wait(t.uuid, 30)
        assert done is not None and done.status == "success", done
    assert m.r.get(m.key("ran", "doomed")) is None, "a cancelled task ran"
    assert m.r.get(m.key("ran", "kept19")) == b"1"
    assert m.app.get(doomed.uuid).status == "cancel"

    # the CLI sees the same: status, and a cancel that comes too late changes nothing
    record = cli_json(redis_url, app_name, "status", str(doomed.uuid))
    assert record["status"] == "cancel" and record["task_name"] == "touch", record
    assert cli_json(redis_url, app_name, "cancel", str(kept[0].uuid)) == {"uuid": str(kept[0].uuid),
                                                                          "result": "finished"}
    assert m.app.get(kept[0].uuid).status == "success"
    unknown = str(_uuid.uuid4())
    code, out, err = cli(redis_url, app_name, "cancel", unknown)
    assert code == 1 and unknown in err, (code, out, err)
    code, out, err = cli(redis_url, app_name, "status", unknown)
    assert code == 1 and "unknown or expired" in err, (code, out, err)
    assert proc.poll() is None


def test_cancel_of_a_running_async_task_stops_it(harness, redis_url, app_name):
    m = load_app(app_name, redis_url)
    proc = harness.start(redis_url, processes=1, app="control_app")
    harness.wait_ready(proc, 1)
    task = m.app.add_task("sleeper", 30.0)
    wait_for(lambda: m.r.get(m.key("started")), 20, "the sleeper to start")
    code, out, err = cli(redis_url, app_name, "cancel", str(task.uuid), "--reason", "operator said so", "--json")
    assert code == 0 and '"result":"running"' in out, (code, out, err)
    final = m.app.wait(task.uuid, 15)
    assert final is not None and final.status == "cancel", (final, harness.log(proc)[-3000:])
    assert m.r.get(m.key("slept")) is None
    after = m.app.add_task("add", 1, 2, timeout=20)  # the worker is still serving
    assert after is not None and after.returning == 3


def test_restart_runs_the_same_call_again_under_a_new_uuid_that_names_the_original(harness, redis_url, app_name):
    m = load_app(app_name, redis_url)
    seen: list[dict] = []

    class Recorder(Middleware):
        def before_enqueue(self, app, envelope):  # type: ignore[no-untyped-def]
            seen.append(dict(envelope.meta))
            return envelope

    m.app.add_middleware(Recorder)
    proc = harness.start(redis_url, processes=1, app="control_app")
    first = m.app.add_task("add", 2, 3, timeout=30)
    assert first is not None and first.returning == 5

    again = m.app.restart(first.uuid)
    assert again.uuid != first.uuid and again.task_name == "add" and again.args == (2, 3), again
    assert seen[-1] == {META_RESTART_OF: str(first.uuid)}  # went through the middlewares, with the link
    done = m.app.wait(again.uuid, 30)
    assert done is not None and done.status == "success" and done.returning == 5, done
    assert done.restart_of == first.uuid and again.restart_of == first.uuid  # the link is on the record
    assert m.app.get(first.uuid).status == "success" and m.app.get(first.uuid).restart_of is None

    # from the shell: the new record as JSON; an unknown uuid is exit code 1 with a hint
    printed = cli_json(redis_url, app_name, "restart", str(first.uuid))
    assert printed["uuid"] not in (str(first.uuid), str(again.uuid)) and printed["status"] == "new", printed
    assert printed["restart_of"] == str(first.uuid), printed
    done = m.app.wait(printed["uuid"], 30)
    assert done is not None and done.returning == 5
    code, out, err = cli(redis_url, app_name, "restart", str(_uuid.uuid4()))
    assert code == 1 and "enqueue the call again" in err, (code, out, err)
    assert proc.poll() is None


def test_inspect_lists_tasks_options_and_config(redis_url, app_name):
    data = cli_json(redis_url, app_name, "inspect")
    assert data["app"] == app_name and data["queues"] == ["default"]
    assert set(data["tasks"]) == {"touch", "add", "fail", "sleeper", "crash_if_flag"}
    assert data["tasks"]["sleeper"]["kind"] == "async"
    assert data["tasks"]["crash_if_flag"]["executor"] == "inline"
    assert data["config"]["max_deliveries"] == 5 and data["periodic"] == []
    code, out, err = cli(redis_url, app_name, "inspect")
    assert code == 0 and "crash_if_flag" in out, (out, err)
