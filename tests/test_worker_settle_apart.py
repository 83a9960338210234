"""One outcome the backend cannot store must not re-run the other tasks of its settle batch (issue 15: a NUL in
one error message made PostgreSQL refuse the batch, the worker crash-looped and every task of it ran 5 times)."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from qtasks_fast import QueueTasks
from qtasks_fast.testing import WorkerThread


def test_a_refused_outcome_is_stored_as_an_error_and_the_others_once(app_name: str, monkeypatch: Any) -> None:
    app = QueueTasks(app_name, broker_url="memory://")
    runs: Counter[int] = Counter()
    gate = threading.Event()

    @app.task
    def work(x: int) -> int:
        gate.wait(10)  # all of them finish together: one settle batch
        runs[x] += 1
        if x == 0:
            raise ValueError("unstorable")
        return x

    settle = type(app.broker).settle

    async def picky(self: Any, outcomes: Any, storage: Any, retries: Any) -> None:
        if any("unstorable" in o[3] for o in outcomes):
            raise RuntimeError("the backend cannot hold this value")  # not an outage: the worker used to stop
        await settle(self, outcomes, storage, retries)

    monkeypatch.setattr(type(app.broker), "settle", picky)
    try:
        sent = [work.add_task(x) for x in range(4)]
        with WorkerThread(app):
            gate.set()
            done = [app.wait(t.uuid, 10) for t in sent]
        assert [d.status for d in done] == ["error", "success", "success", "success"]
        assert "could not store this task's outcome (RuntimeError: the backend cannot hold this value)" in (
            done[0].traceback)
        assert runs == {0: 1, 1: 1, 2: 1, 3: 1}
    finally:
        app.close()
