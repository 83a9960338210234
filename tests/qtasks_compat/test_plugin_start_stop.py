"""A QTasks plugin's own ``start``/``stop`` (issue 11): QTasks' sync starter calls ``plugin.start()`` with no
arguments, so a plugin written for it has ``def start(self)``; the worker calls it as that, off its event loop."""

from __future__ import annotations

import threading
from typing import Any

from qtasks_fast import BasePlugin, QueueTasks
from qtasks_fast.testing import WorkerThread


class QTasksStyle(BasePlugin):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []

    def start(self) -> None:  # type: ignore[override]
        self.calls.append(("start", threading.current_thread().name))

    def stop(self) -> None:  # type: ignore[override]
        self.calls.append(("stop", threading.current_thread().name))

    def trigger(self, name: str, **kwargs: Any) -> None:
        return None


class Ours(BasePlugin):
    def __init__(self) -> None:
        super().__init__()
        self.workers: list[Any] = []

    async def start(self, **kwargs: Any) -> None:
        self.workers.append(kwargs["worker"])


def test_plain_start_and_stop_without_arguments_are_called(app_name: str) -> None:
    app = QueueTasks(app_name, broker_url="memory://")
    qtasks_style, ours = QTasksStyle(), Ours()
    app.add_plugin(qtasks_style, ["worker_start"])
    app.add_plugin(ours, ["worker_start"])

    @app.task
    def noop() -> int:
        return 1

    with WorkerThread(app, worker_id="plain"):
        assert app.add_task("noop", timeout=10) is not None
    assert [c[0] for c in qtasks_style.calls] == ["start", "stop"]
    assert all(name != "qtasks-worker-plain" for _, name in qtasks_style.calls)  # not on the worker's loop thread
    assert len(ours.workers) == 1 and ours.workers[0].processes == 1  # ours still get worker=
