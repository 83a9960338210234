"""QTasks' "spread" pydantic arguments (its PydanticWrapperPlugin), issue 11.

What a user relies on: a QTasks task annotated with a model parameter is called with the model's fields as
keywords (``ship.add_task(id=1, items=["a"])``) or as positionals in field order (``ship.add_task(1, ["a"])``),
and gets the model; the producer's check at ``add_task`` accepts that form and refuses a wrong field with a
one-line error naming it; a worker still folds the spread form sent by a producer that did not check it.
"""

from __future__ import annotations

import time

import pytest
from pydantic import BaseModel

from qtasks_fast import QueueTasks
from qtasks_fast.exceptions import TaskArgumentsError
from qtasks_fast.plugins import AsyncPydanticWrapperPlugin
from qtasks_fast.testing import WorkerThread


class Order(BaseModel):
    id: int
    items: list[str] = []


def build_app() -> tuple[QueueTasks, dict]:
    app = QueueTasks(f"spread{time.monotonic_ns()}", broker_url="memory://")
    app.add_plugin(AsyncPydanticWrapperPlugin(), trigger_names=["task_executor_args_replace",
                                                                "task_executor_after_execute_result_replace"])

    @app.task
    def ship(order: Order) -> Order:
        assert isinstance(order, Order)
        return Order(id=order.id * 10, items=order.items)

    @app.task
    async def ship_to(city: str, order: Order, note: str = "") -> list:
        assert isinstance(order, Order)
        return [city, order.id, order.items, note]

    return app, {"ship": ship, "ship_to": ship_to}


@pytest.mark.parametrize(("args", "kwargs"), [
    ((), {"id": 1, "items": ["a"]}),          # fields as keywords
    ((1, ["a"]), {}),                          # fields as positionals, in field order
    ((1,), {"items": ["a"]}),                  # both
    (({"id": 1, "items": ["a"]},), {}),        # the model's dict, as before
    ((Order(id=1, items=["a"]),), {}),         # the model itself
])
def test_the_task_gets_the_model_from_every_qtasks_form(args: tuple, kwargs: dict) -> None:
    app, t = build_app()
    with WorkerThread(app, broker_url="memory://"):
        done = app.wait(t["ship"].add_task(*args, **kwargs).uuid, 10)
    assert done is not None and done.status == "success", done
    assert done.returning == {"id": 10, "items": ["a"]}  # a model result is stored as its data


def test_parameters_before_the_model_keep_their_positionals() -> None:
    app, t = build_app()
    with WorkerThread(app, broker_url="memory://"):
        done = app.wait(t["ship_to"].add_task("Oslo", 7, ["b"], note="fragile").uuid, 10)
    assert done is not None and done.returning == ["Oslo", 7, ["b"], "fragile"], done


def test_a_wrong_field_is_refused_at_add_task_naming_it() -> None:
    app, t = build_app()
    with pytest.raises(TaskArgumentsError) as bad_name:
        t["ship"].add_task(id=1, itemz=["a"])
    assert "'itemz'" in str(bad_name.value) and "id, items" in str(bad_name.value)
    with pytest.raises(TaskArgumentsError) as bad_value:
        t["ship"].add_task(id="one")
    assert "id:" in str(bad_value.value) and "'order'" in str(bad_value.value)
    for exc in (bad_name.value, bad_value.value):
        assert "\n" not in str(exc)


def test_the_worker_folds_a_spread_call_the_producer_did_not_check() -> None:
    app, t = build_app()
    app.config.validate_args = False  # a producer that sends what it was given, as written
    with WorkerThread(app, broker_url="memory://"):
        sent = t["ship"].add_task(id=2, items=["c"])
        done = app.wait(sent.uuid, 10)
    assert sent.kwargs == {"id": 2, "items": ["c"]}  # travelled spread
    assert done is not None and done.status == "success" and done.returning == {"id": 20, "items": ["c"]}, done


def test_the_plugins_handlers_fold_and_dump() -> None:
    app, t = build_app()
    plugin = AsyncPydanticWrapperPlugin()
    assert plugin.replace_args(t["ship"], [3], {"items": ["x"]}) == {"args": [{"id": 3, "items": ["x"]}], "kw": {}}
    assert plugin.replace_result(Order(id=1)) == {"result": {"id": 1, "items": []}}
    assert plugin.replace_result(5) is None
