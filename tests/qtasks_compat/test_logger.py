"""QTasks' ``qtasks.logs.Logger`` and ``QueueTasks(log=...)`` under qtasks_fast (issue 11).

What a user relies on: a Logger logs through qtasks_fast's logger hierarchy with QTasks' methods and
``%(subname)s``; passed as ``QueueTasks(log=...)`` its level and format become the app's, in the producer and
in a ``python app.py`` worker (the worker's own lines in that format, at that level), as QTasks' components all
log through the Logger they are given; ``app.log`` is the app's Logger; ``worker=`` is still refused.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT

from qtasks_compat.compat_server import Server
from qtasks_fast import QueueTasks
from qtasks_fast.logs import Logger

WORKER_APP = """
import logging
from qtasks_fast import QueueTasks
from qtasks_fast.logs import Logger
from qtasks_fast.plugins import BasePlugin


class Started(BasePlugin):
    def trigger(self, name, **kw):
        app.log.debug("debug at start")
        app.log.info("info at start")
        Logger("shop", subname="Billing").warning("billing at start")


app = QueueTasks(name="logger-app", broker_url="memory://",
                 log=Logger(name="shop", default_level={level!r}, format="LOG|%(levelname)s|%(subname)s|%(message)s"))
app.add_plugin(Started(), ["worker_start"], component="worker")


if __name__ == "__main__":
    app.run_forever()
"""

PRODUCER = """
import logging
from qtasks_fast import QueueTasks
from qtasks_fast.logs import Logger

log = Logger(name="shop", subname="Global", default_level=logging.DEBUG,
             format="P|%(levelname)s|%(subname)s|%(name)s|%(message)s")
app = QueueTasks("shop", broker_url="memory://", log=log)
app.log.debug("client debug %s", 1)
logging.getLogger("qtasks_fast.producer").debug("library line")
log.with_subname("Orders").info("orders")
upd = log.update_logger(subname="Upd", default_level=logging.WARNING)
upd.info("hidden")
upd.warning("shown")
try:
    1 / 0
except ZeroDivisionError:
    upd.exception("boom")
"""


@pytest.fixture
def qtasks_fast_level() -> Iterator[None]:
    """``log=`` sets the producer's ``qtasks_fast`` level (the client level): put it back after the test."""
    logger = logging.getLogger("qtasks_fast")
    level = logger.level
    yield
    logger.setLevel(level)


@pytest.mark.parametrize("level", ["DEBUG", "INFO"])
def test_a_worker_logs_in_the_loggers_format_and_level(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        level: str) -> None:
    monkeypatch.delenv("QTASKS_LOG_LEVEL", raising=False)
    script = tmp_path / "shop.py"
    script.write_text(WORKER_APP.format(level=level))
    server = Server(script, tmp_path / "server.log")
    try:
        server.wait_serving()
    finally:
        assert server.stop() == 0, server.output()
    lines = [line for line in server.output().splitlines() if line.startswith("LOG|")]
    assert any(line.startswith("LOG|INFO|worker|") and "serving queues" in line for line in lines), lines
    assert "LOG|INFO|QueueTasks|info at start" in lines and "LOG|WARNING|Billing|billing at start" in lines, lines
    assert ("LOG|DEBUG|QueueTasks|debug at start" in lines) == (level == "DEBUG"), lines


def test_a_producer_prints_in_the_loggers_format_and_level(tmp_path: Path) -> None:
    (tmp_path / "produce.py").write_text(textwrap.dedent(PRODUCER))
    env = {k: v for k, v in os.environ.items() if not k.startswith("QTASKS_")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([sys.executable, "produce.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert "P|DEBUG|QueueTasks|qtasks_fast.shop|client debug 1" in lines, lines
    assert "P|DEBUG|producer|qtasks_fast.producer|library line" in lines, lines  # our hierarchy's lines too
    assert "P|INFO|Orders|qtasks_fast.shop|orders" in lines and "P|WARNING|Upd|qtasks_fast.shop|shown" in lines
    assert not any("hidden" in line for line in lines), lines
    boom = lines.index("P|ERROR|Upd|qtasks_fast.shop|boom")
    assert "ZeroDivisionError: division by zero" in lines[boom:], lines


def test_log_sets_the_apps_level_and_format_as_code_does(qtasks_fast_level: None) -> None:
    log = Logger("shop", default_level=logging.WARNING, format="F|%(subname)s|%(message)s")
    app = QueueTasks("log-config", broker_url="memory://", log=log)
    config = app.config
    assert config.logs_default_level_server == logging.WARNING and config.source("logs_default_level_server") == "code"
    assert config.logs_default_level_client == logging.WARNING
    assert config.logs_format == "F|%(subname)s|%(message)s"
    assert logging.getLogger("qtasks_fast").level == logging.WARNING
    assert isinstance(app.log, Logger) and (app.log.name, app.log.subname) == ("shop", "QueueTasks")
    kept = QueueTasks("log-default", broker_url="memory://", log=Logger("shop"))
    assert kept.config.logs_format == config.__dataclass_fields__["logs_format"].default  # no format: ours stays


def test_app_log_without_log_is_a_logger_of_the_app(caplog: pytest.LogCaptureFixture) -> None:
    app = QueueTasks("log-none", broker_url="memory://")
    assert isinstance(app.log, Logger) and (app.log.name, app.log.subname) == ("log-none", "QueueTasks")
    with caplog.at_level(logging.INFO, logger="qtasks_fast"):
        app.log.info("hello %s", "there")
        app.log.with_subname("Worker").warning("careful")
    records = [(r.name, r.subname, r.levelname, r.getMessage()) for r in caplog.records]  # type: ignore[attr-defined]
    assert records == [("qtasks_fast.log-none", "QueueTasks", "INFO", "hello there"),
                       ("qtasks_fast.log-none", "Worker", "WARNING", "careful")]


def test_anything_but_a_logger_and_worker_are_refused() -> None:
    with pytest.raises(TypeError, match=r"log=.*qtasks_fast\.logs\.Logger"):
        QueueTasks("log-bad", broker_url="memory://", log=logging.getLogger("x"))
    with pytest.raises(TypeError, match="worker="):
        QueueTasks("worker-bad", broker_url="memory://", worker=object())
