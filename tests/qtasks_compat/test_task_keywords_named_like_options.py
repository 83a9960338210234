"""A task parameter named ``unique``, ``countdown``, ``eta`` or ``connection`` gets the caller's keyword, as in QTasks
(whose ``add_task`` reserves only ``priority`` and ``timeout``); our options stay reachable through the signature
form, and a task that declares no such parameter keeps them as options."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest

from qtasks_fast import QueueTasks
from qtasks_fast import asyncio as qasyncio
from qtasks_fast.testing import WorkerThread


def new_app() -> QueueTasks:
    return QueueTasks(name=f"kw{uuid.uuid4().hex[:8]}", broker_url="memory://")


def register_send(app: Any) -> Any:
    @app.task
    def send(msg: str, connection: Any = None, unique: Any = None, countdown: Any = None, eta: Any = None) -> Any:
        return {"msg": msg, "connection": connection, "unique": unique, "countdown": countdown, "eta": eta}

    return send


@pytest.mark.parametrize("keyword", [{"unique": "u1"}, {"countdown": 1}, {"connection": "smtp"}, {"eta": "2030-01-01"}])
def test_the_task_gets_a_keyword_it_declares(keyword: dict[str, Any]) -> None:
    """Review 11 finding 1: ``unique``/``countdown`` were taken as options (the task got None, the call was
    deduplicated or delayed); ``connection`` and ``eta`` raised."""
    app = new_app()
    send = register_send(app)
    with WorkerThread(app):
        by_app = app.add_task("send", "hi", timeout=10, **keyword)
        by_task = send.add_task("hi", timeout=10, **keyword)
    for done in (by_app, by_task):
        assert done is not None and done.status == "success", done
        assert done.returning == {
            "msg": "hi",
            "connection": None,
            "unique": None,
            "countdown": None,
            "eta": None,
            **keyword,
        }


def test_the_same_unique_keyword_twice_runs_twice() -> None:
    """Taken as the option, the second call would be a no-op returning the first's record."""
    app = new_app()
    register_send(app)
    first = app.add_task("send", "a", unique="same")
    second = app.add_task("send", "b", unique="same")
    assert first is not None and second is not None and first.uuid != second.uuid
    assert second.kwargs == {"unique": "same"}


def test_the_option_is_reachable_with_the_signature_form() -> None:
    app = new_app()
    send = register_send(app)
    first = app.add_task(send.s("a", unique="task's"), unique="opt-key")
    second = app.add_task(send.s("b"), unique="opt-key")
    assert first is not None and second is not None and second.uuid == first.uuid  # deduplicated by the option


def test_a_task_without_such_a_parameter_keeps_the_option() -> None:
    app = new_app()

    @app.task
    def plain(x: int) -> int:
        return x

    first = app.add_task("plain", 1, unique="k")
    second = app.add_task("plain", 2, unique="k")
    assert first is not None and second is not None and second.uuid == first.uuid


def test_registration_says_once_which_options_the_task_shadows(caplog: pytest.LogCaptureFixture) -> None:
    app = new_app()
    with caplog.at_level(logging.WARNING, logger="qtasks_fast"):
        register_send(app)
    said = [r.getMessage() for r in caplog.records if "go to its parameters" in r.getMessage()]
    assert said == [
        "task 'send': add_task's connection=, countdown=, eta=, unique= go to its parameters of those "
        "names, as in QTasks; to pass our option instead, put the task's arguments in a signature: "
        "add_task(task.s(...), connection=...)"
    ]


async def test_the_async_client_passes_it_too() -> None:
    app = qasyncio.QueueTasks(name=f"kwa{uuid.uuid4().hex[:8]}", broker_url="memory://")
    register_send(app)
    task = await app.add_task("send", "hi", countdown=30)
    assert task is not None and task.kwargs == {"countdown": 30}
