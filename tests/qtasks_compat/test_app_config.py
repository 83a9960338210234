"""``QueueTasks`` and ``app.config`` as in QTasks (issue 11): what a QTasks app sets or calls keeps its meaning here.

What a user relies on: QTasks' config names (``max_tasks_process``, ``task_default_priority``,
``task_default_decode``, ``running_older_tasks``, ``result_statuses_end``, ``environ_prefix``, ``subscribe``)
work, mapped to what they mean here; a misspelt or unsupported field raises instead of being kept and
ignored; ``QueueTasks(worker=...)`` other than QTasks' worker component (and a ``log=`` that is no ``Logger``)
is refused, not dropped;
``app.ping()`` says whether a worker of the app is live (``server=False``: whether the broker answers), sync
and async alike.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from conftest import free_port

from qtasks_fast import GlobalConfig, QueueTasks
from qtasks_fast.asyncio import QueueTasks as AsyncQueueTasks
from qtasks_fast.testing import WorkerThread


def new_app(**kw: Any) -> QueueTasks:
    return QueueTasks(name=f"cfg{uuid.uuid4().hex[:8]}", broker_url="memory://", **kw)


def test_unknown_field_raises_with_the_closest_name() -> None:
    app = new_app()
    with pytest.raises(AttributeError, match="no field 'concurency'.*did you mean 'concurrency'"):
        app.config.concurency = 8  # type: ignore[attr-defined]
    with pytest.raises(AttributeError, match="no field 'totally_new'"):
        app.config.totally_new = 1  # type: ignore[attr-defined]
    assert not hasattr(app.config, "totally_new")


def test_max_tasks_process_is_concurrency_and_keeps_its_source(monkeypatch: pytest.MonkeyPatch) -> None:
    app = new_app()
    app.config.max_tasks_process = 7
    assert app.config.concurrency == 7 and app.config.source("concurrency") == "code"
    monkeypatch.setenv("QTASKS_CONCURRENCY", "3")
    operated = new_app()
    operated.config.max_tasks_process = 9  # the operator's environment stays in force, as for concurrency
    assert operated.config.max_tasks_process == 3 and operated.config.source("concurrency") == "env QTASKS_CONCURRENCY"


def test_running_older_tasks_and_statuses_end_are_fixed_and_say_so() -> None:
    config = new_app().config
    assert config.running_older_tasks is True
    config.running_older_tasks = True
    with pytest.raises(ValueError, match="running_older_tasks=False cannot be honoured"):
        config.running_older_tasks = False
    assert config.result_statuses_end == ["success", "error", "cancel"]
    config.result_statuses_end = ["cancel", "success", "error"]
    with pytest.raises(ValueError, match="result_statuses_end is fixed"):
        config.result_statuses_end = ["success"]


def test_subscribe_reports_each_code_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QTASKS_THREADS", "2")
    config = GlobalConfig()
    seen: list[tuple[str, Any]] = []
    config.subscribe(lambda cfg, key, value: seen.append((key, value)) if cfg is config else None)
    config.result_ttl = 5.0
    config.max_tasks_process = 11
    config.threads = 8  # held by the environment: not changed, not reported
    config.running_older_tasks = True
    assert seen == [("result_ttl", 5.0), ("concurrency", 11), ("max_tasks_process", 11),
                    ("running_older_tasks", True)]
    assert config.threads == 2


def test_subscribe_reports_a_qtasks_name_under_that_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """A QTasks subscriber tests the field it was told about (``if field == "max_tasks_process"``); one
    the environment holds is not changed, so not reported under either name."""
    config = GlobalConfig()
    sizes: list[int] = []
    config.subscribe(lambda cfg, key, value: sizes.append(value) if key == "max_tasks_process" else None)
    config.max_tasks_process = 3
    assert sizes == [3]
    monkeypatch.setenv("QTASKS_CONCURRENCY", "7")
    held = GlobalConfig()
    seen: list[str] = []
    held.subscribe(lambda cfg, key, value: seen.append(key))
    held.max_tasks_process = 3
    assert seen == [] and held.max_tasks_process == 7


def test_environ_prefix_names_the_variables_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MYAPP_CONCURRENCY", "5")
    monkeypatch.setenv("MYAPP_TASK_DEFAULT_PRIORITY", "4")
    monkeypatch.setenv("QTASKS_CONCURRENCY", "9")
    config = GlobalConfig(environ_prefix="MYAPP_")
    assert config.concurrency == 5 and config.source("concurrency") == "env MYAPP_CONCURRENCY"
    assert config.task_default_priority == 4
    assert GlobalConfig().concurrency == 9


def test_default_priority_and_decode_apply_to_tasks_without_their_own() -> None:
    app = new_app()

    @app.task
    def plain(x: int) -> int:
        return x + 1

    @app.task(priority=1, decode=str)
    def own(x: int) -> int:
        return x

    app.config.task_default_priority = 6  # set after @app.task: still applies to the task without priority=
    app.config.task_default_decode = lambda value: value * 10
    assert plain.add_task(1).priority == 6 and own.add_task(1).priority == 1
    with WorkerThread(app):
        done = plain.add_task(2, timeout=10)
        mine = own.add_task(4, timeout=10)
    assert done is not None and done.returning == 30
    assert mine is not None and mine.returning == "4"


@pytest.mark.parametrize(("kw", "says"), [({"worker": object()}, "is not supported"),
                                          ({"log": object()}, "takes a qtasks_fast.logs.Logger")])
def test_a_worker_component_and_a_log_that_is_no_logger_are_refused_loudly(kw: dict[str, Any], says: str) -> None:
    with pytest.raises(TypeError, match=f"QueueTasks\\({next(iter(kw))}=.*{says}"):
        new_app(**kw)


def test_ping_says_whether_a_worker_is_live() -> None:
    app = new_app()
    assert app.ping(server=False) is True
    assert app.ping() is False
    with WorkerThread(app):
        deadline = time.monotonic() + 10  # the worker registers as it starts serving, just after the thread starts
        while not app.ping() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert app.ping() is True
    dead = QueueTasks(name="ping_dead", broker_url=f"redis://127.0.0.1:{free_port()}/0")
    dead.config.connect_timeout = 1.0
    assert dead.ping(server=False) is False and dead.ping() is False


def test_async_ping() -> None:
    app = AsyncQueueTasks(name=f"cfg{uuid.uuid4().hex[:8]}", broker_url="memory://")
    assert asyncio.run(app.ping(server=False)) is True
    assert asyncio.run(app.ping()) is False
