"""QTasks' priorities outside our levels 0..9 (its example's default 21, negatives): accepted, run at the nearest
end level so QTasks' order (lower first) holds, said once per task and value; not an int: refused in one line."""

from __future__ import annotations

import logging
import uuid

import pytest

from qtasks_fast import QueueTasks
from qtasks_fast.testing import WorkerThread


def new_app() -> QueueTasks:
    return QueueTasks(name=f"pr{uuid.uuid4().hex[:8]}", broker_url="memory://")


def test_qtasks_example_default_priority_21_serves_every_task(monkeypatch: pytest.MonkeyPatch) -> None:
    """Review 11 finding 2: with QTASKS_TASK_DEFAULT_PRIORITY=21 every add_task raised."""
    monkeypatch.setenv("QTASKS_TASK_DEFAULT_PRIORITY", "21")
    app = new_app()

    @app.task
    def double(i: int) -> int:
        return i * 2

    assert app.config.task_default_priority == 21
    with WorkerThread(app):
        done = app.add_task("double", 4, timeout=10)
    assert done is not None and done.status == "success" and done.returning == 8
    assert done.priority == 9


def test_past_either_end_keeps_qtasks_order() -> None:
    """Negative first, above the top last: what QTasks' sorted set does with -3, 5 and 100."""
    app = new_app()
    ran: list[str] = []

    @app.task
    def mark(tag: str) -> None:
        ran.append(tag)

    for tag, priority in [("late", 100), ("mid", 5), ("early", -3)]:
        app.add_task("mark", tag, priority=priority)
    with WorkerThread(app, concurrency=1):
        app.add_task("mark", "last", priority=100, timeout=10)
    assert ran == ["early", "mid", "late", "last"]


def test_the_mapping_is_said_once_per_task_and_value(caplog: pytest.LogCaptureFixture) -> None:
    app = new_app()

    @app.task
    def t() -> None: ...

    with caplog.at_level(logging.WARNING, logger="qtasks_fast"):
        for _ in range(3):
            assert t.add_task(priority=21).priority == 9
        assert t.add_task(priority=-3).priority == 0
        assert app.add_tasks([t.s()] * 2)[0].priority == 0  # bulk: in range, nothing said
    said = [r.getMessage() for r in caplog.records if "runs at level" in r.getMessage()]
    assert said == [
        "priority 21 of task 't' runs at level 9: levels here are 0..9 (lower first) and a priority past an end "
        "shares that end; config.priority_levels = 22 keeps it distinct",
        "priority -3 of task 't' runs at level 0: levels here are 0..9 (lower first) and a priority past an end "
        "shares that end",
    ]


def test_a_priority_that_is_not_an_int_is_refused_where_it_is_written() -> None:
    app = new_app()
    with pytest.raises(TypeError, match="task 'bad': priority must be an int \\(lower runs first\\), not 'high'"):

        @app.task(name="bad", priority="high")
        def bad() -> None: ...
