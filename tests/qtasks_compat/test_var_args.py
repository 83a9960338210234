"""Typed ``*args``/``**kwargs`` parameters of a task (issue 11): ``def total(first: int, *rest: int)`` is sent
with or without extras, as in QTasks, and a wrong-typed extra is refused at ``add_task`` in one line naming it.

What a user relies on: a QTasks task with a variadic parameter keeps working with only the import changed;
extras are converted like named arguments (``"3"`` -> ``3`` for an ``int``) and reach the function in the worker.
"""

from __future__ import annotations

import pytest

from qtasks_fast import QueueTasks
from qtasks_fast.exceptions import TaskArgumentsError
from qtasks_fast.testing import WorkerThread


def make_app(name: str) -> tuple[QueueTasks, object]:
    app = QueueTasks(name, broker_url="memory://")

    @app.task
    def total(first: int, *rest: int, **weights: int) -> list[int]:
        return [first + sum(rest), sum(weights.values()), len(rest)]

    return app, total


def test_variadic_parameters_may_be_empty_or_given_and_reach_the_function(app_name: str) -> None:
    app, total = make_app(app_name)
    with WorkerThread(app):
        none = app.add_task("total", 1, timeout=20)
        some = app.add_task("total", 1, 2, "3", timeout=20)
        named = app.add_task("total", 1, 2, a=4, b="5", timeout=20)
    assert none is not None and none.status == "success" and none.returning == [1, 0, 0], none
    assert some is not None and some.status == "success" and some.returning == [6, 0, 2], some
    assert named is not None and named.status == "success" and named.returning == [3, 9, 1], named


def test_a_wrong_typed_extra_is_refused_naming_it(app_name: str) -> None:
    app, _ = make_app(app_name)
    with pytest.raises(TaskArgumentsError, match=r"task 'total': invalid arguments: .*`\$\.rest\[1\]`") as err:
        app.add_task("total", 1, 2, "two")
    assert "\n" not in str(err.value)
    with pytest.raises(TaskArgumentsError, match=r"`\$\.weights\['b'\]` \(keyword argument b=\)") as err:
        app.add_task("total", 1, a=1, b="heavy")
    assert "\n" not in str(err.value)
    with pytest.raises(TaskArgumentsError, match="first"):
        app.add_task("total", "one")
