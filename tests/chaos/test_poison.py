"""Poison messages mixed with good ones, on Redis (a private redis-server) and on SQLite.

Raw entries that no producer of ours would write are put straight into the queue between batches of
good tasks, as a foreign producer or an attacker with access to the broker could: arguments nested
5000 levels deep (the decoder raises ``RecursionError``), garbage bytes, envelopes with wrong field
types, a uuid that is a path (``../../x``). A pool of two worker processes must run every good task,
dead-letter each poison message with a reason, and never lose a worker over it: no "exited with code"
in the supervisor's log.
"""

from __future__ import annotations

import time
import uuid as _uuid
from pathlib import Path
from typing import Any

import msgspec
import pytest
from apps.testkit import APPS, load_app_copy

from chaos.conftest import Tally, count_runs, scale, settle_tally
from qtasks_fast.backends.redis.control import queue_prefix

pytestmark = pytest.mark.chaos


def deep_args(depth: int) -> bytes:
    """An envelope of task ``work`` whose one argument is nested ``depth`` lists deep."""
    head = msgspec.msgpack.encode({"u": str(_uuid.uuid4()), "n": "work"})
    return bytes([0x83]) + head[1:] + b"\xa1a\x91" + b"\x91" * depth + b"\xa1x"


def poisons() -> list[tuple[str, str, bytes]]:
    """``(kind, stream uuid field, body)`` of one round of poison messages."""
    u = str(_uuid.uuid4())
    return [
        ("deep", u, deep_args(5000)),
        ("garbage", str(_uuid.uuid4()), b"\xc1\xff\x00 not msgpack at all \x92"),
        ("wrong-types", str(_uuid.uuid4()), msgspec.msgpack.encode({"u": str(_uuid.uuid4()), "n": 12, "a": "x"})),
        ("not-a-map", str(_uuid.uuid4()), msgspec.msgpack.encode([1, 2, 3])),
        ("path-uuid", "../../x", msgspec.msgpack.encode({"u": "../../x", "n": "work", "a": ["p"]})),
    ]


@pytest.mark.parametrize("backend", ["redis", "sqlite"])
def test_poison_messages_are_dead_lettered_and_the_good_ones_run(
        backend: str, harness: Any, runs_dir: Path, chaos_tally: Tally, tmp_path: Path,
        request: pytest.FixtureRequest) -> None:
    if backend == "redis":
        url = request.getfixturevalue("private_redis").url
    else:
        url = f"sqlite:///{tmp_path}/chaos.sqlite3"
    app = load_app_copy(APPS / "chaos_app.py", f"chaos_poison_{harness.app_name}", harness.app_name, url).app
    proc = harness.start(url, processes=2, app="chaos_app", env={"CHAOS_RUNS_DIR": str(runs_dir)})
    harness.wait_ready(proc, 2)

    def inject(body: bytes, uuid: str) -> None:
        if backend == "redis":
            client = app.storage.conn.sync
            client.xadd(f"{queue_prefix(harness.app_name, 'default')}:s:0", {"u": uuid, "d": body})
        else:
            app.broker.enqueue_raw("default", body, 0, uuid)

    rounds, per_round = int(scale(3, 10)), int(scale(100, 1000))
    tags: dict[str, str] = {}
    injected: list[str] = []
    for r in range(rounds):
        calls = [("work", (f"r{r}-{i}",), {}) for i in range(per_round)]
        half = per_round // 2
        for t, (_, (tag,), _) in zip(app.add_tasks(calls[:half]), calls[:half], strict=True):
            tags[str(t.uuid)] = tag
        for kind, uuid, body in poisons():  # in the middle of a stream of good tasks
            inject(body, uuid)
            injected.append(kind)
        for t, (_, (tag,), _) in zip(app.add_tasks(calls[half:]), calls[half:], strict=True):
            tags[str(t.uuid)] = tag

    deadline = time.monotonic() + float(scale(60, 300))
    statuses: dict[str, str | None] = {}
    while True:
        pending = [u for u in tags if statuses.get(u) not in ("success", "error", "cancel")]
        for u in pending:
            task = app.get(u)
            statuses[u] = task.status if task is not None else None
        dead = app.dlq_list(count=1000)
        if (all(s == "success" for s in statuses.values()) and len(dead) >= len(injected)) \
                or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    settle_tally(chaos_tally, statuses, count_runs(runs_dir), tags)
    log = harness.log(proc)
    restarts = log.count("exited with code")
    reasons = [d.reason for d in dead]
    chaos_tally.notes.update(poison=len(injected), dead_lettered=len(dead), worker_restarts=restarts)

    assert restarts == 0, log[-5000:]
    assert proc.poll() is None, log[-5000:]
    assert chaos_tally.lost == 0 and chaos_tally.stranded == 0, (chaos_tally.line(), log[-3000:])
    assert all(s == "success" for s in statuses.values()), chaos_tally.line()
    assert len(dead) == len(injected), (reasons, log[-3000:])
    assert all(reasons), reasons
    assert sum("RecursionError" in r for r in reasons) == injected.count("deep"), reasons
    assert sum("is not a canonical UUID" in r for r in reasons) == injected.count("path-uuid"), reasons
    assert sum(r.startswith("malformed message") for r in reasons) == len(injected), reasons


@pytest.mark.parametrize("backend", ["redis", "sqlite"])
def test_a_task_that_kills_its_worker_takes_no_batch_mate_to_the_dead_letters(
        backend: str, harness: Any, runs_dir: Path, chaos_tally: Tally, tmp_path: Path,
        request: pytest.FixtureRequest) -> None:
    """A message that kills its worker process on every run, fetched in one batch with healthy tasks that
    are still running when it strikes: each crash charges them a delivery, but their last attempts are
    handed out alone, so they all succeed and only the culprit is dead-lettered (max_deliveries=3)."""
    if backend == "redis":
        url = request.getfixturevalue("private_redis").url
    else:
        url = f"sqlite:///{tmp_path}/chaos.sqlite3"
    env = {"QTASKS_MAX_DELIVERIES": "3"}
    app = load_app_copy(APPS / "poison_app.py", f"poison_{harness.app_name}", harness.app_name, url, **env).app
    n = int(scale(40, 200))
    calls = [("work", (f"g{i}", 0.3), {}) for i in range(n)]
    sent = app.add_tasks([*calls[:n // 2], ("die", (), {}), *calls[n // 2:]])  # one batch, the culprit inside
    culprit = str(sent[n // 2].uuid)
    tags = {str(t.uuid): c[1][0] for t, c in zip([*sent[:n // 2], *sent[n // 2 + 1:]], calls, strict=True)}
    # DEBUG: the supervisor logs a crash loop's first death as an error and the repeats at debug level
    proc = harness.start(url, "--log-level", "DEBUG", processes=1, app="poison_app",
                         env={"CHAOS_RUNS_DIR": str(runs_dir), **env})

    deadline = time.monotonic() + float(scale(90, 300))
    statuses: dict[str, str | None] = {}
    while True:
        for u in [*tags, culprit]:
            if statuses.get(u) not in ("success", "error", "cancel"):
                task = app.get(u)
                statuses[u] = task.status if task is not None else None
        if all(s in ("success", "error", "cancel") for s in statuses.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    dead = app.dlq_list(count=1000)
    log = harness.log(proc)
    settle_tally(chaos_tally, statuses, count_runs(runs_dir), tags)
    deaths = sum("(pid " in line and "restarting" in line for line in log.splitlines())
    chaos_tally.notes.update(worker_deaths=deaths, dead_lettered=len(dead),
                             healthy_dead_lettered=sum(d.uuid != culprit for d in dead))

    assert chaos_tally.lost == 0 and chaos_tally.stranded == 0, (chaos_tally.line(), log[-4000:])
    bad = {u: s for u, s in statuses.items() if u in tags and s != "success"}
    assert not bad, (chaos_tally.line(), [d.reason for d in dead], log[-4000:])
    assert [d.uuid for d in dead] == [culprit], [(d.uuid, d.reason) for d in dead]
    assert "delivered 3 times" in dead[0].reason, dead[0].reason
    assert statuses[culprit] == "error"
