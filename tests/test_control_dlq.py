"""Dead letters and purge through the CLI (``--json``), against a real pool.

A task that kills its worker every time is dead-lettered after max_deliveries;
``dlq list`` shows it with its call and reason, ``dlq requeue --id`` runs it
again under the same uuid (here it succeeds, the cause being gone), ``dlq purge``
deletes; ``purge QUEUE`` drops waiting tasks so they never run. Destructive
commands refuse to run without ``--yes`` when there is no terminal to ask.
"""

from __future__ import annotations

import uuid as _uuid

from apps.control_helpers import cli, cli_json, load_app, wait_for


def test_dead_letter_list_requeue_and_purge(harness, redis_url, app_name):
    m = load_app(app_name, redis_url)
    proc = harness.start(redis_url, processes=1, app="control_app",
                         env={"QTASKS_LEASE_SECONDS": "60", "QTASKS_MAX_DELIVERIES": "2"})
    harness.wait_ready(proc, 1)
    m.r.set(m.key("crash"), "1")
    task = m.app.add_task("crash_if_flag", "phoenix")
    wait_for(lambda: m.app.dlq_list(), 60, "the crashing task to be dead-lettered", interval=0.2)

    letters = cli_json(redis_url, app_name, "dlq", "list")
    assert len(letters) == 1, letters
    dead = letters[0]
    assert dead["uuid"] == str(task.uuid) and dead["task_name"] == "crash_if_flag", dead
    assert dead["args"] == ["phoenix"] and dead["queue"] == "default"
    assert "max_deliveries=2" in dead["reason"], dead
    assert m.app.get(task.uuid).status == "error"

    m.r.delete(m.key("crash"))  # the cause is fixed: a requeue now runs it, under the same uuid
    assert cli_json(redis_url, app_name, "dlq", "requeue", "--id", dead["id"]) == {"requeued": 1}
    done = m.app.wait(task.uuid, 30)
    assert done is not None and done.status == "success" and done.returning == "phoenix", done
    assert cli_json(redis_url, app_name, "dlq", "list") == []
    code, out, err = cli(redis_url, app_name, "dlq", "requeue", "--id", dead["id"])
    assert code == 1 and "dlq list" in err, (code, out, err)

    # an undecodable message is dead-lettered by the worker; purge deletes it (after a --yes)
    client = m.app.storage.conn.sync
    garbage = str(_uuid.uuid4())
    client.xadd(harness.stream_key(), {"u": garbage, "d": b"\xc1 not msgpack"})
    wait_for(lambda: m.app.dlq_list(), 20, "the malformed message to be dead-lettered")
    [bad] = cli_json(redis_url, app_name, "dlq", "list")
    assert bad["uuid"] == garbage and bad["reason"].startswith("malformed message") and "body" in bad, bad
    code, out, err = cli(redis_url, app_name, "dlq", "purge")
    assert code == 2 and "--yes" in err, (code, out, err)
    assert len(m.app.dlq_list()) == 1
    assert cli_json(redis_url, app_name, "dlq", "purge", "--yes") == {"deleted": 1}
    assert cli_json(redis_url, app_name, "dlq", "list") == []
    assert proc.poll() is None


def test_purge_drops_waiting_tasks_so_they_never_run(harness, redis_url, app_name):
    m = load_app(app_name, redis_url)
    waiting = [m.app.add_task("touch", f"p{i}") for i in range(5)]
    delayed = m.app.add_task("touch", "later", countdown=60)
    code, out, err = cli(redis_url, app_name, "purge", "default")
    assert code == 2 and "--yes" in err, (code, out, err)
    assert cli_json(redis_url, app_name, "purge", "default", "--yes") == {"queue": "default", "purged": 6}
    assert all(m.app.get(t.uuid).status == "cancel" for t in waiting + [delayed])

    harness.start(redis_url, processes=1, app="control_app")
    after = m.app.add_task("touch", "after", timeout=30)
    assert after is not None and after.returning == "after"
    assert all(m.r.get(m.key("ran", f"p{i}")) is None for i in range(5))
    assert m.r.get(m.key("ran", "later")) is None
    assert cli_json(redis_url, app_name, "purge", "default", "--yes") == {"queue": "default", "purged": 0}
