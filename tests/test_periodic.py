"""Periodic tasks under real supervisors: each tick is enqueued exactly once fleet-wide.

Two ``qtasks-fast run`` supervisors (different --worker-id, as on two hosts)
both schedule ``beat`` every second; each tick must be enqueued once and run
once. One supervisor is restarted midway and the other is stopped afterwards,
so the restarted one is shown to schedule on its own. A third pool started with
``QTASKS_SCHEDULER=0`` (``--no-scheduler``) schedules nothing.
"""

from __future__ import annotations

import datetime as _dt
import re

from apps.control_helpers import load_app, wait_for
from conftest import stop_cli

TICK = re.compile(r"periodic beat: enqueued beat\[([0-9a-f-]{36})\] for the tick at (\S+)")
ENV = {"CONTROL_PERIODIC": "1"}


def test_two_supervisors_enqueue_each_tick_once_and_survive_a_restart(harness, redis_url, app_name):
    m = load_app(app_name, redis_url)

    def start(worker_id: str, **env: str):  # type: ignore[no-untyped-def]
        proc = harness.start(redis_url, "--log-level", "DEBUG", processes=1, worker_id=worker_id,
                             app="control_app", env={**ENV, **env})
        harness.wait_ready(proc, 1)
        return proc

    def ticks() -> list[tuple[float, str]]:
        out = []
        for proc, _ in harness.procs:
            for uuid, at in TICK.findall(harness.log(proc)):
                out.append((_dt.datetime.fromisoformat(at).timestamp(), uuid))
        return sorted(out)

    def more_ticks(n: int, what: str) -> None:
        have = len(ticks())
        wait_for(lambda: len(ticks()) >= have + n, 30, f"{n} more ticks {what}", interval=0.1)

    a, b = start("A"), start("B")
    quiet = start("C", QTASKS_SCHEDULER="0")  # a pool that only runs tasks
    assert "scheduler: 1 periodic task(s): beat (every 1s)" in harness.log(a)
    more_ticks(4, "with two supervisors")
    assert stop_cli(a) == 0
    more_ticks(2, "with B alone")
    a2 = start("A")
    more_ticks(2, "after A came back")
    assert stop_cli(b) == 0
    more_ticks(2, "with the restarted A alone")

    seen = ticks()
    uuids = [u for _, u in seen]
    wait_for(lambda: all(m.r.hget(m.key("beats"), u) for u in uuids), 30, "every enqueued beat to run")
    assert stop_cli(a2) == 0
    assert stop_cli(quiet) == 0
    assert "scheduler" not in harness.log(quiet) and "periodic beat" not in harness.log(quiet)
    logs = "".join(harness.log(p) for p, _ in harness.procs)

    times = [round(t) for t, _ in seen]
    assert len(set(times)) == len(times), f"a tick was enqueued twice: {times}"
    assert len(set(uuids)) == len(uuids)
    missing = sorted(set(range(times[0], times[-1] + 1)) - set(times))
    assert not missing or "skipped" in logs, f"ticks {missing} were never enqueued, and no scheduler said why"
    beats = {k.decode(): int(v) for k, v in m.r.hgetall(m.key("beats")).items()}
    assert all(beats[u] == 1 for u in uuids), {u: beats[u] for u in uuids if beats[u] != 1}
    # both schedulers tried the same ticks: the claim, not luck, kept them single
    assert "already taken by another scheduler" in logs
    # the restarted A scheduled alone once B was gone
    assert TICK.search(harness.log(a2)), harness.log(a2)[-3000:]
