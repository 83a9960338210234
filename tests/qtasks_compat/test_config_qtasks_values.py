"""QTasks' config lines that its examples write run unchanged (issue 11): ``result_time_interval`` is accepted and
kept, and the log levels read back as QTasks' ``logging`` numbers.

What a user relies on: QTasks' async example sets ``app.config.result_time_interval = 0.1``; here a wait ends
when the result is stored (pushed, no polling), so the value is a bound already met: it is stored, read back,
reported to ``subscribe`` and validated (a positive number of seconds), never slept on. ``logs_default_level_*``
read ``20`` where QTasks reads ``logging.INFO``, whether set as a name or a number; ``qtasks-fast info`` still
shows the name an operator sets.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import pytest

from qtasks_fast import GlobalConfig, QueueTasks
from qtasks_fast.cli_info import settings
from qtasks_fast.config import BadSetting
from qtasks_fast.testing import WorkerThread


def new_app() -> QueueTasks:
    return QueueTasks(name=f"qv{uuid.uuid4().hex[:8]}", broker_url="memory://")


def test_qtasks_async_example_config_lines_run_and_a_wait_is_not_held_by_the_interval() -> None:
    app = new_app()
    seen: list[tuple[str, Any]] = []
    app.config.subscribe(lambda cfg, key, value: seen.append((key, value)))
    # QTasks' examples/async/based_async_app.py, as written there
    app.config.logs_default_level_server = logging.INFO
    app.config.running_older_tasks = True
    app.config.result_time_interval = 0.1
    assert app.config.result_time_interval == 0.1
    assert ("result_time_interval", 0.1) in seen

    @app.task
    def test_num(number: int) -> int:
        return number

    app.config.result_time_interval = 30  # a wait never sleeps on it: results are pushed
    with WorkerThread(app):
        test_num.add_task(0, timeout=20)  # the worker is up
        start = time.monotonic()
        done = test_num.add_task(5, timeout=20)
    assert done is not None and done.status == "success" and done.returning == 5, done
    assert time.monotonic() - start < 5


@pytest.mark.parametrize("bad", [0, -1, "fast", True, None])
def test_result_time_interval_must_be_positive_seconds(bad: object) -> None:
    config = new_app().config
    with pytest.raises(ValueError, match=r"config.result_time_interval must be a number of seconds above 0") as err:
        config.result_time_interval = bad  # type: ignore[assignment]
    assert "\n" not in str(err.value) and config.result_time_interval == 1.0
    with pytest.raises(ValueError, match="result_time_interval"):
        GlobalConfig(result_time_interval=bad)  # type: ignore[arg-type]


def test_result_time_interval_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QTASKS_RESULT_TIME_INTERVAL", "0.25")
    assert GlobalConfig().result_time_interval == 0.25
    monkeypatch.setenv("QTASKS_RESULT_TIME_INTERVAL", "0")
    with pytest.raises(BadSetting, match="QTASKS_RESULT_TIME_INTERVAL='0' must be above 0"):
        GlobalConfig()


def test_log_levels_read_as_logging_numbers_as_in_qtasks(monkeypatch: pytest.MonkeyPatch) -> None:
    app = new_app()
    assert app.config.logs_default_level_server == logging.INFO == 20
    assert app.config.logs_default_level_client == logging.INFO
    app.config.logs_default_level_server = "debug"
    assert app.config.logs_default_level_server == logging.DEBUG
    assert settings(app)["logs_default_level_server"]["value"] == "DEBUG"  # info shows the name
    app.config.logs_default_level_server = 15
    assert settings(app)["logs_default_level_server"]["value"] == 15
    monkeypatch.setenv("QTASKS_LOGS_DEFAULT_LEVEL_SERVER", "warning")
    assert GlobalConfig().logs_default_level_server == logging.WARNING
    monkeypatch.setenv("QTASKS_LOGS_DEFAULT_LEVEL_SERVER", "35")
    assert GlobalConfig().logs_default_level_server == 35
