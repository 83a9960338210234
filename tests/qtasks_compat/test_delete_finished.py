"""``config.delete_finished_tasks`` (QTasks): a fleet's start deletes the records of finished tasks first;
queued tasks keep theirs and still run (issue 11, item 1)."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

from qtasks_compat.compat_server import Server, load_app_module
from qtasks_fast import QueueTasks
from qtasks_fast.abc import Storage
from qtasks_fast.backends.memory.broker import InMemoryBroker
from qtasks_fast.backends.memory.storage import InMemoryStorage
from qtasks_fast.control import delete_finished
from qtasks_fast.enums.task_status import TaskStatusEnum
from qtasks_fast.exceptions import ConfigError
from qtasks_fast.portal import portal
from qtasks_fast.testing import WorkerThread

APP = """
from qtasks_fast import QueueTasks
from qtasks_fast.abc import Storage
from qtasks_fast.backends.memory.broker import InMemoryBroker
from qtasks_fast.exceptions import ConfigError
from qtasks_fast.backends.memory.storage import InMemoryStorage

app = QueueTasks(name="{name}")
app.config.delete_finished_tasks = {flag}


@app.task(name="double")
def double(n: int) -> int:
    return 2 * n


@app.task(name="fail")
def fail() -> None:
    raise KeyError("no such row")


if __name__ == "__main__":
    app.run_forever()
"""


def test_each_storage_deletes_finished_records_only(url: str) -> None:
    app = QueueTasks(f"delete-finished-{uuid.uuid4().hex[:8]}", broker_url=url)

    @app.task
    def double(n: int) -> int:
        return 2 * n

    @app.task
    def fail() -> None:
        raise KeyError("no such row")

    with WorkerThread(app, concurrency=4):
        done = [double.add_task(n, timeout=30) for n in (1, 2)] + [fail.add_task(timeout=30)]
        assert [t.status if t else None for t in done] == ["success", "success", "error"]
    queued = double.add_task(21)  # no worker runs now: it stays new
    assert queued is not None
    assert portal().run(delete_finished(app)) == 3
    assert all(app.get(t.uuid) is None for t in done if t is not None)
    kept = app.get(queued.uuid)
    assert kept is not None and kept.status == TaskStatusEnum.NEW.value
    with WorkerThread(app, concurrency=4):
        finished = app.wait(queued.uuid, timeout=30)
    assert finished is not None and finished.returning == 42
    app.close()


@pytest.mark.parametrize("flag", [True, False])
@pytest.mark.parametrize("how", ["run_forever", "qtasks-fast run"])
def test_a_fleet_start_deletes_records_finished_before_it(tmp_path: Path, flag: bool, how: str) -> None:
    script = tmp_path / "shop.py"
    script.write_text(APP.format(name=f"shop{uuid.uuid4().hex[:6]}", flag=flag))
    app = load_app_module(script).app
    with WorkerThread(app):  # an earlier fleet, on the same embedded database
        old = app.add_task("double", 4, timeout=30)
        failed = app.add_task("fail", timeout=30)
    assert old is not None and failed is not None and failed.status == "error"
    waiting = app.add_task("double", 5)  # sent while no worker runs
    assert waiting is not None
    cmd = None if how == "run_forever" else [sys.executable, "-m", "qtasks_fast", "-A", "shop:app", "run",
                                              "--processes", "2"]
    server = Server(script, tmp_path / "server.log", cmd)
    try:
        server.wait_serving()
        done = app.wait(waiting.uuid, timeout=30)
        assert done is not None and done.returning == 10
        assert (app.get(old.uuid) is None) is flag
        assert (app.get(failed.uuid) is None) is flag
    finally:
        assert server.stop() == 0, server.output()
        app.close()


def test_a_storage_that_cannot_delete_is_refused_in_one_line() -> None:
    class KeepsEverything(InMemoryStorage):
        delete_finished = Storage.delete_finished  # a custom storage written before the operation existed

    broker = InMemoryBroker(app_name="keeps")
    app = QueueTasks("keeps", broker=broker, storage=KeepsEverything(state=broker.state, app_name="keeps"))
    app.config.delete_finished_tasks = True
    with pytest.raises(ConfigError, match="KeepsEverything cannot delete finished records: unset it") as err:
        portal().run(delete_finished(app))
    assert "\n" not in str(err.value)
