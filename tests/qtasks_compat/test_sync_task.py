"""QTasks' sync task tests, ours: a sync app served by ``python app_sync.py``, driven through ``SyncTestCase``
with ``TestConfig.full()`` over the default broker (issue 11, item 1)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from qtasks_compat.compat_server import SERVERS, Server, load_app_module
from qtasks_fast.enums.task_status import TaskStatusEnum
from qtasks_fast.schemas.test import TestConfig
from qtasks_fast.tests import SyncTestCase

app = load_app_module(SERVERS / "app_sync.py").app


@pytest.fixture
def case(sync_server: Server) -> Iterator[SyncTestCase]:
    case = SyncTestCase(app=app)
    case.settings(TestConfig.full())
    yield case
    case.stop()


def test_record_of_a_sent_task(case: SyncTestCase) -> None:
    task = case.add_task("test", 5)
    assert task is not None and task.status == TaskStatusEnum.NEW.value
    record = app.get(uuid=task.uuid)
    assert record is not None and record.uuid == task.uuid and record.task_name == "test"
    assert case.get(task.uuid) is not None


@pytest.mark.parametrize("user_id", [5, 0, 918273])
def test_wait_returns_the_finished_task(case: SyncTestCase, user_id: int) -> None:
    result = case.add_task("test", user_id, timeout=60)
    assert result is not None and result.status == TaskStatusEnum.SUCCESS.value
    assert result.returning == f"user {user_id} recorded"


def test_keyword_arguments_reach_the_task(case: SyncTestCase) -> None:
    result = case.add_task("greet", "ann", punctuation="?", timeout=60)
    assert result is not None and result.returning == "hello ann?"


def test_a_failing_task_ends_in_error(case: SyncTestCase) -> None:
    result = case.add_task("error_task", timeout=60)
    assert result is not None and result.status == TaskStatusEnum.ERROR.value
    assert "ZeroDivisionError" in (result.traceback or "")


@pytest.mark.parametrize("unknown", [lambda: str(uuid.uuid4()), uuid.uuid4])
def test_an_unknown_uuid_has_no_record(sync_server: Server, unknown: object) -> None:
    assert app.get(uuid=unknown()) is None  # type: ignore[operator]


def test_timeout_before_the_end_returns_none(case: SyncTestCase, tmp_path: Path) -> None:
    release = tmp_path / "release"
    try:
        assert case.add_task("hold", str(release), timeout=0.2) is None
    finally:
        release.touch()  # the held task ends; the server stays free for the next tests
