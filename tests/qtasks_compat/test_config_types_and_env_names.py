"""QTasks' config fields: a wrong type is refused when set (one line naming the field and the type), QTasks'
``QTASKS_MAX_TASKS_PROCESS`` is read from the environment, and a value set in code under an environment variable
that holds the field says so once instead of vanishing."""

from __future__ import annotations

import logging
import uuid

import pytest

from qtasks_fast import GlobalConfig, QueueTasks
from qtasks_fast.config import BadSetting


def new_app() -> QueueTasks:
    return QueueTasks(name=f"ct{uuid.uuid4().hex[:8]}", broker_url="memory://")


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("max_tasks_process", "abc", "config.max_tasks_process must be an int, not 'abc'"),
        ("task_default_priority", "high", "config.task_default_priority must be an int, not 'high'"),
        ("delete_finished_tasks", "no", "config.delete_finished_tasks must be True or False, not 'no'"),
        ("result_ttl", "1h", "config.result_ttl must be a number, not '1h'"),
        ("default_queue", 5, "config.default_queue must be a str, not 5"),
        ("task_default_decode", "json", "config.task_default_decode must be a callable or None, not 'json'"),
    ],
)
def test_a_wrong_type_is_refused_when_set_in_one_line(field: str, value: object, says: str) -> None:
    """Review 11 finding 14: these were accepted; ``"high"`` failed every add_task with a traceback and ``"no"``
    (truthy) deleted finished records."""
    config = new_app().config
    before = getattr(config, field)
    with pytest.raises(BadSetting) as info:
        setattr(config, field, value)
    assert str(info.value) == says
    assert getattr(config, field) == before


def test_a_wrong_type_passed_to_the_constructor_is_refused() -> None:
    with pytest.raises(BadSetting, match="config.concurrency must be an int, not '8'"):
        GlobalConfig(concurrency="8")  # type: ignore[arg-type]


def test_right_types_are_kept() -> None:
    config = new_app().config
    config.max_tasks_process = 7
    config.result_ttl = 60  # an int for a float field is a number of seconds
    config.delete_finished_tasks = True
    config.task_default_decode = str
    assert (config.concurrency, config.result_ttl, config.delete_finished_tasks) == (7, 60, True)


def test_qtasks_max_tasks_process_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Review 11 finding 9: QTasks reads ``QTASKS_<FIELD>`` for its fields; ``QTASKS_MAX_TASKS_PROCESS=7`` was
    ignored (concurrency stayed 64, source "default")."""
    monkeypatch.setenv("QTASKS_MAX_TASKS_PROCESS", "7")
    config = new_app().config
    assert (config.max_tasks_process, config.concurrency) == (7, 7)
    assert config.source("concurrency") == "env QTASKS_MAX_TASKS_PROCESS"
    monkeypatch.setenv("QTASKS_MAX_TASKS_PROCESS", "seven")
    with pytest.raises(BadSetting, match="QTASKS_MAX_TASKS_PROCESS='seven' is not a valid int"):
        GlobalConfig()
    monkeypatch.setenv("QTASKS_MAX_TASKS_PROCESS", "7")
    monkeypatch.setenv("QTASKS_CONCURRENCY", "8")
    with pytest.raises(BadSetting, match="QTASKS_MAX_TASKS_PROCESS='7' and QTASKS_CONCURRENCY=8 disagree"):
        GlobalConfig()


def test_a_value_set_in_code_under_an_environment_variable_warns_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Review 11 finding 14 (related): the environment wins, as documented, but the code's line is no longer
    silently dropped; an invalid value is refused even then."""
    monkeypatch.setenv("QTASKS_RESULT_TIME_INTERVAL", "2")
    config = new_app().config
    with caplog.at_level(logging.WARNING, logger="qtasks_fast.config"):
        config.result_time_interval = 0.5
        config.result_time_interval = 0.25
    assert config.result_time_interval == 2.0
    said = [r.getMessage() for r in caplog.records if r.name == "qtasks_fast.config"]
    assert said == [
        "config.result_time_interval = 0.5 is not applied: env QTASKS_RESULT_TIME_INTERVAL holds it "
        "(a flag and the environment beat code); unset that to set it in code"
    ]
    with pytest.raises(ValueError, match="must be a number of seconds above 0"):
        config.result_time_interval = 0
