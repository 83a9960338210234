"""What only the embedded SQLite backend must do, beyond the contract suite every backend runs
(qtasks_fast.testing.contract, tests/test_contract.py): separate OS processes sharing one file never claim the
same message, a forked child reopens the connection, and expired records are deleted, not just hidden.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import subprocess
import sys
import time
import uuid as _uuid
from pathlib import Path

import pytest

from qtasks_fast import _corelib as core
from qtasks_fast.abc.broker import Broker, Delivery
from qtasks_fast.abc.storage import Storage
from qtasks_fast.backends.sqlite.broker import SqliteBroker
from qtasks_fast.backends.sqlite.storage import SqliteStorage
from qtasks_fast.schemas import Envelope

ROOT = Path(__file__).resolve().parent.parent
Q = "default"


def env() -> Envelope:
    return Envelope(uuid=str(_uuid.uuid4()), task_name="add", args=[1, 2], queue=Q, created_at=time.time())


async def fetch(broker: Broker) -> list[Delivery]:
    ready: list[Delivery] = []
    bad: list[object] = []
    for queue, flat in await broker.fetch(100, 0.0):
        core.decode_batch(queue, flat, {"add": 1}, 1 << 20, ready, bad)
    return ready


def test_expired_records_are_deleted_not_just_hidden(tmp_path: Path) -> None:
    path = str(tmp_path / "ttl.sqlite3")
    broker, storage = SqliteBroker(path, result_ttl=0.2), SqliteStorage(path, result_ttl=0.2)

    async def run() -> None:
        await broker.start("w-0", "w", [Q], storage)
        e = env()
        await broker.enqueue([e], storage)
        (d,) = await fetch(broker)
        await broker.settle([(d, "success", core.encode(1), "", "")], storage, [])
        assert storage.conn.read("SELECT count(*) FROM records")[0][0] == 1
        await asyncio.sleep(0.3)
        assert await storage.get(e.uuid, [Q]) is None
        assert storage.conn.read("SELECT count(*) FROM records")[0][0] == 0  # deleted on sight

    asyncio.run(run())


# -------------------------------------------------------------------------------- SQLite, many processes
WORKER = r"""
import asyncio, json, os, sys
from qtasks_fast import _corelib as core
from qtasks_fast.backends.sqlite.broker import SqliteBroker
from qtasks_fast.backends.sqlite.storage import SqliteStorage

async def main(path, consumer, out, go, done):
    broker, storage = SqliteBroker(path), SqliteStorage(path)
    await broker.start(consumer, consumer, ["default"], storage)
    open(out + ".ready", "w").close()
    while not os.path.exists(go):
        await asyncio.sleep(0.005)
    seen = []
    while True:
        finished = os.path.exists(done)  # checked first: the producer commits before it writes `done`
        batch = await broker.fetch(25, 0.2)
        if not batch:
            if finished:
                break
            continue
        ready, bad = [], []
        for queue, flat in batch:
            core.decode_batch(queue, flat, {"add": 1}, 1 << 20, ready, bad)
        assert not bad, bad
        seen += [[d.msg_id, d.envelope.uuid, d.deliveries] for d in ready]
        await broker.settle([(d, "success", core.encode(consumer), "", "") for d in ready], storage, [])
        await asyncio.sleep(0.002)  # let the other process in even on a loaded machine
    with open(out, "w") as f:
        json.dump(seen, f)

asyncio.run(main(*sys.argv[1:]))
"""

PRODUCER = r"""
import json, os, sys, time, uuid
from qtasks_fast.backends.sqlite.broker import SqliteBroker
from qtasks_fast.schemas import Envelope
from qtasks_fast.backends.sqlite.storage import SqliteStorage

path, out, go, done = sys.argv[1:]
broker, storage = SqliteBroker(path), SqliteStorage(path)
open(out + ".ready", "w").close()
while not os.path.exists(go):
    time.sleep(0.005)
uuids = []
for _ in range(40):
    envs = [Envelope(uuid=str(uuid.uuid4()), task_name="add", created_at=time.time()) for _ in range(25)]
    broker.enqueue_sync(envs, storage)
    uuids += [e.uuid for e in envs]
with open(out, "w") as f:
    json.dump(uuids, f)
open(done, "w").close()
"""


def test_sqlite_processes_never_claim_the_same_message(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.sqlite3")
    broker, storage = SqliteBroker(path), SqliteStorage(path)
    preloaded = [env() for _ in range(1000)]
    broker.enqueue_sync(preloaded, storage)
    go, done = str(tmp_path / "go"), str(tmp_path / "done")
    run_env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    outs = [str(tmp_path / f"w{i}.json") for i in range(2)]
    prod_out = str(tmp_path / "producer.json")
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, path, f"w-{i}", outs[i], go, done], env=run_env)
             for i in range(2)]
    procs.append(subprocess.Popen([sys.executable, "-c", PRODUCER, path, prod_out, go, done], env=run_env))
    try:
        deadline = time.monotonic() + 60
        while not all(os.path.exists(o + ".ready") for o in [*outs, prod_out]):
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "helpers did not start"
            time.sleep(0.01)
        Path(go).touch()  # all three hit the file at once from here on
        for p in procs:
            assert p.wait(timeout=120) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    seen = [json.loads(Path(o).read_text()) for o in outs]
    ids = [m[0] for part in seen for m in part]
    uuids = [m[1] for part in seen for m in part]
    expected = {e.uuid for e in preloaded} | set(json.loads(Path(prod_out).read_text()))
    assert len(expected) == 2000
    assert len(ids) == len(set(ids)) == 2000  # no message handed to two processes
    assert sorted(uuids) == sorted(expected)  # and none lost
    assert all(m[2] == 1 for part in seen for m in part)
    assert all(len(part) > 0 for part in seen)  # both really competed
    counts = dict(storage.conn.read("SELECT status, count(*) FROM records GROUP BY status"))
    assert counts == {"success": 2000}
    assert storage.conn.read("SELECT count(*) FROM messages")[0][0] == 0


def _enqueue_in_child(broker: SqliteBroker, storage: SqliteStorage, e: Envelope) -> None:
    broker.enqueue_sync([e], storage)


@pytest.mark.skipif(sys.platform == "win32", reason="fork only")
def test_sqlite_connection_is_reopened_after_fork(tmp_path: Path) -> None:
    path = str(tmp_path / "fork.sqlite3")
    broker, storage = SqliteBroker(path), SqliteStorage(path)
    before = env()
    broker.enqueue_sync([before], storage)  # the parent has an open handle now
    parent_db = broker.conn.db
    after = env()
    child = multiprocessing.get_context("fork").Process(target=_enqueue_in_child, args=(broker, storage, after))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    assert broker.conn.db is parent_db  # the parent keeps its own handle
    assert getattr(storage.get_sync(after.uuid, [Q]), "status", None) == "new"
    got = asyncio.run(_fetch_uuids(broker, storage))
    assert got == [before.uuid, after.uuid]


async def _fetch_uuids(broker: Broker, storage: Storage) -> list[str]:
    await broker.start("w-0", "w", [Q], storage)
    return [d.envelope.uuid for d in await fetch(broker) if d.envelope]
