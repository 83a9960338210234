"""Messages a worker cannot run: each ends as a readable error and the queue keeps flowing.

An unknown task name, bytes that are not an envelope, an entry with foreign
fields and a payload over ``max_payload`` are dead-lettered (with the reason,
and the record, if any, set to ``error``); arguments that do not fit the task's
signature fail the task with a message naming the argument. Good tasks
enqueued after each of them still run.
"""

from __future__ import annotations

import time
import uuid as _uuid

import msgspec
import pytest

from qtasks_fast import PayloadTooLarge, QueueTasks
from qtasks_fast.schemas import Envelope


def dead_letters(client, harness, n: int, timeout: float = 20) -> list[dict[bytes, bytes]]:
    """Wait until the dead-letter stream holds ``n`` entries; return their fields, oldest first."""
    deadline = time.monotonic() + timeout
    while True:
        entries = client.xrange(harness.dlq_key())
        if len(entries) >= n or time.monotonic() > deadline:
            assert len(entries) == n, entries
            return [fields for _, fields in entries]
        time.sleep(0.05)


def assert_queue_flows(harness, app: QueueTasks, client, tag: str) -> None:
    """Good tasks enqueued now all succeed, and nothing is left in the stream or pending."""
    good = app.add_tasks([("add", (i, 1000), {}) for i in range(200)])
    uuids = [str(t.uuid) for t in good]
    harness.wait_final(client, uuids, timeout=20)
    records = harness.records(app, uuids)
    assert [records[u].returning for u in uuids] == [i + 1000 for i in range(200)], tag
    assert client.xpending(harness.stream_key(), harness.app_name)["pending"] == 0, tag
    assert client.xlen(harness.stream_key()) == 0, tag


def test_unknown_task_and_wrong_arguments_from_a_name_only_producer(harness, redis_url):
    proc = harness.start(redis_url, processes=1)
    harness.wait_ready(proc, 1)
    app = QueueTasks(harness.app_name, broker_url=redis_url)  # registers no task: nothing is checked here
    client = app.storage.conn.sync

    # add_task refuses a name no published table lists (test_task_table); a producer that does not check
    # (another language, an older version) still sends one: the worker dead-letters it
    unknown, _ = app.build("nosuch", [1], {})
    app.send_sync([unknown])
    r = app.wait(unknown.uuid, 20)
    assert r is not None and r.status == "error", r
    assert "unknown task 'nosuch'" in r.traceback and "no worker handler" in r.traceback, r.traceback
    [dl] = dead_letters(client, harness, 1)
    assert dl[b"u"].decode() == str(unknown.uuid)
    assert dl[b"reason"].decode().startswith("unknown task 'nosuch'")
    assert msgspec.msgpack.decode(dl[b"d"], type=Envelope).task_name == "nosuch"  # the message is kept
    assert_queue_flows(harness, app, client, "after an unknown task")

    wrong_type = app.add_task("add", "x", 2)
    missing = app.add_task("add", 1)
    unexpected = app.add_task("add", 1, 2, c=3)
    for t, text in [(wrong_type, "Expected `int`, got `str` - at `$.a`"),
                    (missing, "missing a required argument: 'b'"),
                    (unexpected, "unexpected keyword argument 'c'")]:
        r = app.wait(t.uuid, 20)
        assert r is not None and r.status == "error", r
        assert "task 'add'" in r.traceback and text in r.traceback, r.traceback
        assert "Traceback" not in r.traceback  # a message, not a stack dump
    assert client.xlen(harness.dlq_key()) == 1  # wrong arguments fail the task; they are not dead letters
    assert_queue_flows(harness, app, client, "after wrong arguments")
    assert proc.poll() is None


def test_malformed_stream_entries_are_dead_lettered(harness, redis_url):
    proc = harness.start(redis_url, processes=1)
    harness.wait_ready(proc, 1)
    app = QueueTasks(harness.app_name, broker_url=redis_url)
    client = app.storage.conn.sync

    garbage_uuid = str(_uuid.uuid4())
    client.xadd(harness.stream_key(0), {"u": garbage_uuid, "d": b"\xc1\x00not msgpack\xff"})
    client.xadd(harness.stream_key(0), {"foo": "bar", "baz": "1"})  # not our fields at all
    wrong_shape = str(_uuid.uuid4())  # msgpack, but not an envelope
    client.xadd(harness.stream_key(3), {"u": wrong_shape, "d": msgspec.msgpack.encode({"x": 1})})
    dls = dead_letters(client, harness, 3)
    assert all(d[b"reason"].startswith(b"malformed message") for d in dls), dls
    assert sorted(d[b"u"].decode() for d in dls) == sorted(["", garbage_uuid, wrong_shape])
    assert {d[b"prio"] for d in dls} == {b"0", b"3"}
    assert client.xlen(harness.stream_key(3)) == 0
    assert_queue_flows(harness, app, client, "after malformed entries")
    assert proc.poll() is None


def test_stream_fields_in_another_order_or_with_extras_still_run(harness, redis_url):
    """``u`` and ``d`` are found by name: field order and extra fields do not make a message malformed."""
    proc = harness.start(redis_url, "--concurrency", "2", processes=1)
    harness.wait_ready(proc, 1)
    m = harness.producer(redis_url)
    client = m.app.storage.conn.sync
    # keep the only two slots busy, so that the entries below are read by the non-blocking fetch
    busy = m.app.add_tasks([m.slow.s(0.5, "busy"), m.slow.s(0.5, "busy")])
    envs = [Envelope(uuid=str(_uuid.uuid4()), task_name="add", args=[i, 1]) for i in range(20)]
    for i, env in enumerate(envs):
        blob = msgspec.msgpack.encode(env)
        fields = {"d": blob, "u": env.uuid} if i % 2 else {"u": env.uuid, "d": blob, "trace": "abc"}
        client.xadd(harness.stream_key(), fields)
    for t in busy:
        assert m.app.wait(t.uuid, 20).returning == "busy"
    dls = client.xrange(harness.dlq_key())
    assert not dls, dls
    deadline = time.monotonic() + 20
    while harness.finished(client) < 22:
        assert time.monotonic() < deadline, (client.xrange(harness.dlq_key()), harness.log(proc)[-3000:])
        time.sleep(0.05)
    assert client.xlen(harness.dlq_key()) == 0
    assert client.xpending(harness.stream_key(), harness.app_name)["pending"] == 0


def test_payload_over_max_payload(harness, redis_url):
    limit = 2000
    proc = harness.start(redis_url, processes=1, env={"QTASKS_MAX_PAYLOAD": str(limit)})
    harness.wait_ready(proc, 1)
    strict = harness.producer(redis_url, QTASKS_MAX_PAYLOAD=str(limit))
    client = strict.app.storage.conn.sync

    with pytest.raises(PayloadTooLarge, match=f"over the {limit} byte limit"):
        strict.slow.add_task(0, "x" * 5000)
    with pytest.raises(PayloadTooLarge):
        strict.app.add_tasks([strict.add.s(1, 2), strict.slow.s(0, "x" * 5000)])
    assert client.xlen(harness.stream_key()) == 0, "a refused batch must enqueue nothing"

    # a producer with a bigger limit (misconfigured) gets it through; the worker refuses to run it
    lax = harness.producer(redis_url, QTASKS_MAX_PAYLOAD=str(10 * limit))
    big = lax.slow.add_task(0, "y" * 5000)
    r = strict.app.wait(big.uuid, 20)
    assert r is not None and r.status == "error", r
    assert f"exceeds the {limit} byte limit (max_payload)" in r.traceback, r.traceback

    # and the same for raw bytes injected into the stream
    env = Envelope(uuid=str(_uuid.uuid4()), task_name="slow", args=[0, "z" * 5000])
    client.xadd(harness.stream_key(), {"u": env.uuid, "d": msgspec.msgpack.encode(env)})
    dls = dead_letters(client, harness, 2)
    assert [d[b"u"].decode() for d in dls] == [str(big.uuid), env.uuid]
    assert all(b"byte limit (max_payload)" in d[b"reason"] for d in dls), dls
    assert_queue_flows(harness, strict.app, client, "after oversized payloads")
    assert proc.poll() is None
