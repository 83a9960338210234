"""QTasks-style middleware classes (``qtasks.middlewares.TaskMiddleware``) run unchanged under qtasks_fast."""

from __future__ import annotations

from typing import Any

from qtasks_fast import QueueTasks
from qtasks_fast.middlewares import TaskMiddleware
from qtasks_fast.testing import WorkerThread

seen: list[Any] = []


class AddTenant(TaskMiddleware):
    """QTasks' contract: built per call with the executor, then called (async here); returns the executor."""

    def __init__(self, task_executor: Any) -> None:
        super().__init__(task_executor)

    async def __call__(self) -> Any:
        ex = self.task_executor
        seen.append(("before", ex.task_func.name, list(ex._args), ex.task_broker.uuid is not None))
        ex._kwargs["tenant"] = "acme"
        return ex


class Rounding(TaskMiddleware):
    """A sync middleware after the call that replaces the result and returns nothing."""

    def __call__(self) -> None:
        seen.append(("after", self.task_executor._result))
        self.task_executor._result = round(self.task_executor._result, 1)


class Doubling(TaskMiddleware):
    def __call__(self) -> Any:
        self.task_executor._result *= 2
        return self.task_executor


class Exploding(TaskMiddleware):
    def __call__(self) -> None:
        raise LookupError("audit store down")


def test_qtasks_middlewares_change_arguments_and_result_in_list_order(app_name: str) -> None:
    app = QueueTasks(app_name, broker_url="memory://")
    seen.clear()

    @app.task(middlewares_before=[AddTenant], middlewares_after=[Rounding, Doubling], echo=True)
    def price(self: Any, amount: float, tenant: str = "none") -> float:
        assert tenant == "acme", tenant
        return amount / 3

    @app.task(middlewares_after=[Exploding])
    def audited() -> int:
        return 1

    @app.task
    def plain(x: int) -> int:
        return x

    with WorkerThread(app):
        done = price.add_task(10.0, timeout=10)
        failed = audited.add_task(timeout=10)
        untouched = plain.add_task(5, timeout=10)
    assert done is not None and done.status == "success" and done.returning == 6.6  # round(3.33, 1) * 2
    assert seen[0] == ("before", "price", [10.0], True) and seen[1][0] == "after" and abs(seen[1][1] - 10 / 3) < 1e-9
    assert failed is not None and failed.status == "error" and "audit store down" in (failed.traceback or "")
    assert untouched is not None and untouched.returning == 5 and app.tasks["plain"].worker_hooks() is None


def test_add_middleware_puts_a_qtasks_middleware_on_every_task(app_name: str) -> None:
    app = QueueTasks(app_name, broker_url="memory://")
    app.add_middleware(Doubling, position="after")

    @app.task
    async def three() -> int:
        return 3

    with WorkerThread(app):
        done = three.add_task(timeout=10)
    assert done is not None and done.returning == 6


class BumpQuantity(TaskMiddleware):
    """Reads and changes an argument the caller passed by name, as QTasks hands it: in ``_kwargs``."""

    def __call__(self) -> Any:
        ex = self.task_executor
        seen.append(("bump", list(ex._args), dict(ex._kwargs)))
        ex._kwargs["quantity"] += 1
        return ex


def test_a_keyword_argument_stays_a_keyword_for_middlewares_and_the_record(app_name: str) -> None:
    """``add_task(quantity=5)`` of a typed task: the record keeps ``kwargs={"quantity": 5}`` (QTasks' record) and a
    QTasks middleware finds it in ``_kwargs``; converted by the hints, never moved into ``args``."""
    seen.clear()
    app = QueueTasks(app_name, broker_url="memory://")

    @app.task(middlewares_before=[BumpQuantity])
    def order(item: str, quantity: int = 1) -> str:
        return f"{quantity} x {item}"

    sent = order.add_task("tea", quantity="5")
    assert (sent.args, sent.kwargs) == (("tea",), {"quantity": 5})
    with WorkerThread(app):
        done = app.wait(sent.uuid, 10)
    assert done is not None and done.status == "success" and done.returning == "6 x tea", done
    assert done.kwargs == {"quantity": 5}
    assert seen == [("bump", ["tea"], {"quantity": 5})]
