"""QTasks' async task tests, ours: an async app served by ``python app_async.py``, driven through
``AsyncTestCase`` with ``TestConfig.full()`` over the default broker (issue 11, item 1)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from qtasks_compat.compat_server import SERVERS, Server, load_app_module
from qtasks_fast.enums.task_status import TaskStatusEnum
from qtasks_fast.schemas.test import TestConfig
from qtasks_fast.tests import AsyncTestCase

app = load_app_module(SERVERS / "app_async.py").app


@pytest.fixture
async def case(async_server: Server) -> AsyncIterator[AsyncTestCase]:
    case = AsyncTestCase(app=app)
    case.settings(TestConfig.full())
    yield case
    await case.stop()
    await app.close()


async def test_record_of_a_sent_task(case: AsyncTestCase) -> None:
    task = await case.add_task("test", 5)
    assert task is not None and task.status == TaskStatusEnum.NEW.value
    record = await app.get(uuid=task.uuid)
    assert record is not None and record.uuid == task.uuid and record.task_name == "test"
    assert await case.get(task.uuid) is not None


@pytest.mark.parametrize("user_id", [5, -3, 40960])
async def test_wait_returns_the_finished_task(case: AsyncTestCase, user_id: int) -> None:
    result = await case.add_task("test", user_id, timeout=60)
    assert result is not None and result.status == TaskStatusEnum.SUCCESS.value
    assert result.returning == f"user {user_id} recorded"


async def test_keyword_arguments_reach_the_task(case: AsyncTestCase) -> None:
    result = await case.add_task("greet", name="bo", timeout=60)
    assert result is not None and result.returning == "hello bo!"


async def test_a_failing_task_ends_in_error(case: AsyncTestCase) -> None:
    result = await case.add_task("error_task", timeout=60)
    assert result is not None and result.status == TaskStatusEnum.ERROR.value
    assert "ZeroDivisionError" in (result.traceback or "")


@pytest.mark.parametrize("unknown", [lambda: str(uuid.uuid4()), uuid.uuid4])
async def test_an_unknown_uuid_has_no_record(async_server: Server, unknown: object) -> None:
    assert await app.get(uuid=unknown()) is None  # type: ignore[operator]
    await app.close()


async def test_timeout_before_the_end_returns_none(case: AsyncTestCase, tmp_path: Path) -> None:
    release = tmp_path / "release"
    try:
        assert await case.add_task("hold", str(release), timeout=0.2) is None
    finally:
        release.touch()
