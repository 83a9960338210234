"""QTasks' ``logs_default_level_server``, ``logs_default_level_client`` and ``logs_format`` (issue 11, item 2):
the worker's level and format, the producer's logger level, with flag > env > code > default."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from qtasks_compat.compat_server import Server
from qtasks_fast import QueueTasks
from qtasks_fast.config import BadSetting

APP = """
import logging
from qtasks_fast import QueueTasks
from qtasks_fast.plugins import BasePlugin


class Started(BasePlugin):
    def trigger(self, name, **kw):
        logging.getLogger("shop").debug("debug at start")
        logging.getLogger("shop").info("info at start")


app = QueueTasks(name="logs-config", broker_url="memory://")
app.add_plugin(Started(), ["worker_start"], component="worker")
app.config.logs_default_level_server = {level!r}
app.config.logs_format = "FMT|%(levelname)s|%(worker)s|%(message)s"


if __name__ == "__main__":
    app.run_forever()
"""


@pytest.fixture
def client_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger("qtasks_fast")
    level = logger.level
    yield logger
    logger.setLevel(level)


@pytest.mark.parametrize("level", ["DEBUG", "INFO"])
def test_a_worker_logs_at_the_config_level_in_the_config_format(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  level: str) -> None:
    monkeypatch.delenv("QTASKS_LOG_LEVEL", raising=False)
    script = tmp_path / "shop.py"
    script.write_text(APP.format(level=level))
    server = Server(script, tmp_path / "server.log")
    try:
        server.wait_serving()
    finally:
        assert server.stop() == 0, server.output()
    lines = server.output().splitlines()
    ours = [line for line in lines if line.startswith("FMT|")]
    assert any(line.startswith("FMT|INFO|") and "serving queues" in line for line in ours), lines
    worker = ours[0].split("|")[2]
    assert f"FMT|INFO|{worker}|info at start" in ours, lines
    assert (f"FMT|DEBUG|{worker}|debug at start" in ours) == (level == "DEBUG"), lines


def test_qtasks_log_level_env_beats_the_config_and_a_flag_beats_both(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QTASKS_LOG_LEVEL", raising=False)
    app = QueueTasks(name="levels", broker_url="memory://")
    assert app.config.server_log_level() == logging.INFO and app.config.source("logs_default_level_server") == "default"
    app.config.logs_default_level_server = logging.ERROR
    assert app.config.server_log_level() == logging.ERROR
    monkeypatch.setenv("QTASKS_LOG_LEVEL", "debug")
    assert app.config.server_log_level() == logging.DEBUG
    app.config.set_from_flag("logs_default_level_server", "WARNING")
    assert app.config.server_log_level() == logging.WARNING and app.config.source("logs_default_level_server") == "flag"
    monkeypatch.setenv("QTASKS_LOGS_DEFAULT_LEVEL_SERVER", "critical")
    operated = QueueTasks(name="levels", broker_url="memory://")
    operated.config.logs_default_level_server = "INFO"  # the operator's env value stays in force
    assert operated.config.logs_default_level_server == logging.CRITICAL


def test_the_client_level_sets_the_producer_logger_once_set(client_logger: logging.Logger) -> None:
    client_logger.setLevel(logging.NOTSET)
    app = QueueTasks(name="client", broker_url="memory://")
    assert client_logger.level == logging.NOTSET  # the default leaves the app's own logging setup alone
    app.config.logs_default_level_client = "warning"
    assert client_logger.level == logging.WARNING and app.config.logs_default_level_client == logging.WARNING


def test_client_level_from_the_environment(client_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QTASKS_LOGS_DEFAULT_LEVEL_CLIENT", "ERROR")
    QueueTasks(name="client-env", broker_url="memory://")
    assert client_logger.level == logging.ERROR


@pytest.mark.parametrize("field", ["logs_default_level_server", "logs_default_level_client"])
def test_a_level_that_does_not_exist_is_refused_when_set(field: str) -> None:
    app = QueueTasks(name="bad-level", broker_url="memory://")
    with pytest.raises(BadSetting, match=f"{field}='LOUD' is not a log level"):
        setattr(app.config, field, "LOUD")
