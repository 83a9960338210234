"""The CLI end to end: a supervised pool of real worker processes against a real Redis.

What a user relies on: ``qtasks-fast -A app run --processes 2`` runs every kind of
task (sync, async, generator, failing) with the right result in each record;
a wrong ``-A`` or an unreachable broker fails fast with exit code 2 and a
message that says what is wrong; a password in the broker URL works (AUTH)
and never reaches a log line.
"""

from __future__ import annotations

import random
import subprocess

from conftest import AUTH_PASSWORD, cli_env, free_port, start_cli

N_EACH = 2500  # x 4 kinds = 10,000 tasks


def expected(kind: str, i: int) -> object:
    return {"add": i + 7, "amul": i * 3, "gen": [v * 2 for v in range(i % 7)]}[kind]


def test_two_processes_drain_10k_mixed_tasks(harness, redis_url):
    m = harness.producer(redis_url)
    calls = [(kind, i) for kind in ("add", "amul", "gen", "fail") for i in range(N_EACH)]
    random.Random(1).shuffle(calls)
    sig = {"add": lambda i: m.add.s(i, 7), "amul": lambda i: m.amul.s(i, 3), "gen": lambda i: m.gen.s(i % 7),
           "fail": lambda i: m.fail.s(i)}
    proc = harness.start(redis_url, processes=2)
    uuids: list[str] = []
    for start in range(0, len(calls), 1000):
        tasks = m.app.add_tasks([sig[k](i) for k, i in calls[start:start + 1000]])
        uuids += [str(t.uuid) for t in tasks]
    client = m.app.storage.conn.sync
    harness.wait_final(client, uuids, timeout=90, proc=proc)

    records = harness.records(m.app, uuids)
    workers = set()
    for (kind, i), u in zip(calls, uuids, strict=True):
        r = records[u]
        assert r.task_name == kind
        workers.add(r.worker_id)
        if kind == "fail":
            assert r.status == "error", (kind, i, r)
            assert r.returning is None
            assert f"ValueError: failing on purpose with {i}" in r.traceback, r.traceback
        else:
            assert r.status == "success", (kind, i, r)
            assert r.returning == expected(kind, i), (kind, i, r)
            assert r.traceback is None
    assert workers == {"W-0", "W-1"}, f"both worker processes should have run tasks, got {workers}"
    # nothing left behind in the stream: every entry was acked and deleted
    assert client.xlen(harness.stream_key()) == 0
    assert client.xpending(harness.stream_key(), harness.app_name)["pending"] == 0
    assert client.xlen(harness.dlq_key()) == 0
    assert harness.children(proc) and proc.poll() is None
    assert stop_and_code(proc) == 0


def stop_and_code(proc: subprocess.Popen[bytes]) -> int:
    proc.terminate()
    return proc.wait(40)


def run_cli_once(harness, args: list[str], broker_url: str | None, timeout: float = 30) -> tuple[int, str]:
    log = harness.tmp_path / "once.log"
    proc = start_cli(args, cli_env(broker_url, harness.app_name), log=log)
    try:
        code = proc.wait(timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return code, log.read_text(errors="replace")


def test_app_import_errors_exit_2_with_a_readable_message(harness, redis_url):
    cases = [
        ("no_such_app_module_qtf", "cannot import app module 'no_such_app_module_qtf'"),
        ("broken_app", "No module named 'nonexistent_dependency_qtf'"),
        ("mixed_app:add", "mixed_app:add is a TaskFunc, not a QueueTasks app"),
    ]
    for spec, message in cases:
        code, out = run_cli_once(harness, ["-A", spec, "run", "--processes", "2"], redis_url)
        assert code == 2, (spec, code, out)
        assert message in out, (spec, out)
        assert "Traceback" not in out, (spec, out)
        assert "started worker" not in out, (spec, out)


def test_a_pool_started_with_an_unreachable_broker_waits_for_it_naming_the_url(harness):
    port = free_port()  # nothing listens there
    url = f"redis://default:hunter2-{port}@127.0.0.1:{port}/0"
    proc = harness.start(None, "--broker", url, processes=2)
    out = harness.wait_log(proc, "the broker is not available at start; the pool waits for it")
    assert f"cannot reach Redis at redis://default:***@127.0.0.1:{port}/0" in out, out  # named, but redacted
    assert f"hunter2-{port}" not in out, out
    assert "Traceback" not in out and "started worker" not in out, out
    assert stop_and_code(proc) == 0  # SIGTERM while it waits: a clean stop


def test_password_in_url_works_and_never_reaches_the_logs(harness, private_redis_auth):
    url = private_redis_auth.auth_url()
    assert AUTH_PASSWORD in url

    # a wrong password is a broker the CLI cannot use: exit 2, and neither password is printed
    bad = url.replace(AUTH_PASSWORD, "wrong-" + AUTH_PASSWORD[::-1])
    code, out = run_cli_once(harness, ["-A", "mixed_app", "run", "--broker", bad], None)
    assert code == 2, out
    assert "redis://default:***@" in out, out
    assert AUTH_PASSWORD not in out and AUTH_PASSWORD[::-1] not in out, out

    m = harness.producer(url)
    proc = harness.start(None, "--broker", url, "--log-level", "DEBUG", processes=2)
    harness.wait_ready(proc)
    first = m.app.add_tasks([m.add.s(i, 1) for i in range(200)] + [m.fail.s(i) for i in range(20)])
    assert m.app.wait(first[0].uuid, 30).returning == 1
    private_redis_auth.restart()  # reconnecting must authenticate again (and log nothing secret)
    second = m.app.add_tasks([m.amul.s(i, 2) for i in range(200)])
    uuids = [str(t.uuid) for t in first + second]
    harness.wait_final(m.app.storage.conn.sync, uuids, timeout=60, proc=proc)
    records = harness.records(m.app, uuids)
    assert [records[str(t.uuid)].returning for t in first[:200]] == [i + 1 for i in range(200)]
    assert all(records[str(t.uuid)].status == "error" for t in first[200:])
    assert [records[str(t.uuid)].returning for t in second] == [i * 2 for i in range(200)]
    assert stop_and_code(proc) == 0

    log = harness.log(proc)
    assert "task add[" in log  # DEBUG lines were written, so the check below looked at real output
    assert AUTH_PASSWORD not in log, [line for line in log.splitlines() if AUTH_PASSWORD in line]
    assert AUTH_PASSWORD not in repr(m.app.broker) + repr(m.app.storage) + repr(m.app)
