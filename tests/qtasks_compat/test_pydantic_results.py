"""A task returning a pydantic model stores the model's data, as under QTasks (issue 11, item 4).

What a user relies on: QTasks' worker wraps results through its pydantic wrapper plugin, so a QTasks task may
``return Order(...)`` and the caller reads a dict. Here the same task must succeed and store
``model_dump(mode="json")`` whichever way the worker runs it (async, thread, process, generator, through middlewares);
a result that is neither encodable nor a model still fails with the message saying so.
"""

from __future__ import annotations

import datetime
import importlib
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from qtasks_fast import QueueTasks
from qtasks_fast.middleware import Middleware
from qtasks_fast.testing import WorkerThread


class Line(BaseModel):
    sku: str
    qty: int


class Order(BaseModel):
    id: int
    lines: list[Line]
    at: datetime.datetime


AT = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)


def build_app() -> QueueTasks:
    app = QueueTasks(f"pydres{time.monotonic_ns()}", broker_url="memory://")

    @app.task
    async def order_async(n: int) -> Order:
        return Order(id=n, lines=[Line(sku="a", qty=n)], at=AT)

    @app.task(executor="thread")
    def order_thread(n: int) -> dict:
        return {"order": Order(id=n, lines=[], at=AT), "n": n}

    @app.task(generate_handler=None)
    def lines(n: int) -> Iterator[Line]:
        for i in range(n):
            yield Line(sku=f"s{i}", qty=i)

    @app.task
    def opaque() -> Any:
        return object()

    return app


def run(app: QueueTasks, calls: list[tuple[str, tuple]]) -> list[Any]:
    out = []
    with WorkerThread(app, broker_url="memory://"):
        for name, args in calls:
            rec = app.wait(app.tasks[name].add_task(*args).uuid, 10)
            assert rec is not None
            out.append(rec)
    return out


CALLS = [("order_async", (3,)), ("order_thread", (4,)), ("lines", (2,)), ("opaque", ())]


def check(recs: list[Any]) -> None:
    a, t, g, o = recs
    assert a.status == "success" and a.returning == {
        "id": 3, "lines": [{"sku": "a", "qty": 3}], "at": "2026-01-02T03:04:05Z"}, a
    assert t.status == "success" and t.returning == {"order": {"id": 4, "lines": [], "at": "2026-01-02T03:04:05Z"},
                                                     "n": 4}, t
    assert g.status == "success" and g.returning == [{"sku": "s0", "qty": 0}, {"sku": "s1", "qty": 1}], g
    assert o.status == "error" and "result of type object is not serializable to msgpack" in o.traceback, o


def test_a_returned_model_is_stored_as_its_data() -> None:
    check(run(build_app(), CALLS))


class Noop(Middleware):
    """Any middleware sends tasks down the worker's hooked path."""

    async def before_execute(self, ctx: Any) -> None:
        return None


def test_a_returned_model_is_stored_as_its_data_through_middlewares() -> None:
    app = build_app()
    app.add_middleware(Noop())
    check(run(app, CALLS))


PROCESS_MODULE = '''
from pydantic import BaseModel
from qtasks_fast import QueueTasks

app = QueueTasks("{name}", broker_url="memory://")


class Point(BaseModel):
    x: int
    y: int


@app.task(executor="process")
def point(n: int) -> Point:
    return Point(x=n, y=-n)
'''


def test_a_model_returned_from_a_process_task_is_stored_as_its_data(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"pyd_proc_{uuid.uuid4().hex[:8]}"  # a module of the user's: the process child imports it by name
    (tmp_path / f"{name}.py").write_text(PROCESS_MODULE.format(name=name))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        app = importlib.import_module(name).app
        with WorkerThread(app, broker_url="memory://"):
            rec = app.add_task("point", 5, timeout=30)
        assert rec is not None and rec.status == "success" and rec.returning == {"x": 5, "y": -5}, rec
    finally:
        sys.modules.pop(name, None)
