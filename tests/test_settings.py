"""One precedence for every setting: command-line flag, then environment (``QTASKS_*``), then code, then
default — for ``GlobalConfig`` fields and the broker URL alike, in every process (issue 10, item 3).

An operator points a fleet somewhere else (another Redis, a lower concurrency) through the environment
without a release; a producer that kept the code's value would talk to another broker than the fleet.
``qtasks-fast -A app info`` shows each value in force and which of the four gave it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qtasks_fast import QueueTasks
from qtasks_fast.backends.memory.broker import InMemoryBroker
from qtasks_fast.backends.memory.storage import InMemoryStorage
from qtasks_fast.backends.redis.broker import RedisBroker
from qtasks_fast.config import GlobalConfig

ROOT = Path(__file__).resolve().parent.parent
SECRET = "pw-Settings-9"


def test_the_environment_beats_code_which_beats_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QTASKS_LEASE_SECONDS", "7")
    monkeypatch.delenv("QTASKS_MAX_DELIVERIES", raising=False)
    config = GlobalConfig(lease_seconds=60, max_deliveries=3)
    assert (config.lease_seconds, config.source("lease_seconds")) == (7.0, "env QTASKS_LEASE_SECONDS")
    assert (config.max_deliveries, config.source("max_deliveries")) == (3, "code")
    assert (config.batch_size, config.source("batch_size")) == (500, "default")


def test_positional_arguments_count_as_code() -> None:
    config = GlobalConfig("io", 60.0)
    assert config.source("default_queue") == config.source("result_ttl") == "code"
    assert config.source("max_payload") == "default"


def test_an_assignment_in_code_keeps_the_environments_value(monkeypatch: pytest.MonkeyPatch) -> None:
    """``app.config.x = v`` is code too: the environment still wins, and a field it does not set takes v."""
    monkeypatch.setenv("QTASKS_CONCURRENCY", "8")
    app = QueueTasks("settings", broker_url="memory://")
    app.config.concurrency = 64
    app.config.threads = 4
    assert app.config.concurrency == 8 and app.config.source("concurrency") == "env QTASKS_CONCURRENCY"
    assert app.config.threads == 4 and app.config.source("threads") == "code"


def test_a_flag_beats_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QTASKS_CONCURRENCY", "8")
    config = GlobalConfig(concurrency=64)
    config.set_from_flag("concurrency", 2)
    assert (config.concurrency, config.source("concurrency")) == (2, "flag")


def test_the_environment_beats_a_broker_url_in_code_in_any_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not only ``qtasks-fast`` commands: a producer of an app that hard-codes its URL follows the env too."""
    monkeypatch.setenv("QTASKS_BROKER_URL", "memory://")
    app = QueueTasks("pinned", broker_url="redis://127.0.0.1:1/0")
    assert isinstance(app.broker, InMemoryBroker)
    assert app.broker_source() == ("memory://", "env QTASKS_BROKER_URL")
    monkeypatch.delenv("QTASKS_BROKER_URL")
    assert QueueTasks("pinned", broker_url="redis://127.0.0.1:1/0").broker_source()[1] == "code"


def test_the_environment_leaves_a_broker_object_of_the_code_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QTASKS_BROKER_URL", "redis://127.0.0.1:1/0")
    broker = InMemoryBroker(app_name="own")
    app = QueueTasks("own", broker=broker, storage=InMemoryStorage(state=broker.state))
    assert app.broker is broker and app.broker_source() == (None, "code (broker object)")
    assert not isinstance(app.broker, RedisBroker)


def _app_file(tmp_path: Path) -> Path:
    (tmp_path / "settings_app.py").write_text(
        "from qtasks_fast import QueueTasks\n"
        "from qtasks_fast.config import GlobalConfig\n"
        "app = QueueTasks('settings', broker_url='redis://127.0.0.1:1/0',\n"
        "                 config=GlobalConfig(max_deliveries=3, lease_seconds=60))\n"
        "@app.task\n"
        "def add(a: int, b: int) -> int:\n"
        "    return a + b\n")
    return tmp_path


def _info(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("QTASKS_")}
    full.update(PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}", COLUMNS="200", **env)
    return subprocess.run([sys.executable, "-m", "qtasks_fast", "-A", "settings_app", "info", *args], env=full,
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)


def test_info_shows_each_setting_and_where_it_came_from(tmp_path: Path) -> None:
    _app_file(tmp_path)
    url = f"redis://default:{SECRET}@127.0.0.1:6379/3"
    res = _info(tmp_path, "--json", QTASKS_LEASE_SECONDS="7", QTASKS_BROKER_URL=url)
    assert res.returncode == 0, res
    assert SECRET not in res.stdout + res.stderr
    data = json.loads(res.stdout)
    settings = data["settings"]
    assert data["app"] == "settings" and data["compiled_core"] is True
    assert settings["broker_url"] == {"value": "redis://default:***@127.0.0.1:6379/3",
                                      "source": "env QTASKS_BROKER_URL"}
    assert settings["lease_seconds"] == {"value": 7.0, "source": "env QTASKS_LEASE_SECONDS"}
    assert settings["max_deliveries"] == {"value": 3, "source": "code"}
    assert settings["batch_size"] == {"value": 500, "source": "default"}
    assert set(GlobalConfig.__dataclass_fields__) <= set(settings)
    assert "sqlite_path" not in settings  # a Redis broker: there is no file

    flag = _info(tmp_path, "--json", "--broker", "sqlite:////tmp/settings-flag.sqlite3", QTASKS_BROKER_URL=url)
    settings = json.loads(flag.stdout)["settings"]
    assert settings["broker_url"] == {"value": "sqlite:////tmp/settings-flag.sqlite3", "source": "flag --broker"}
    assert settings["sqlite_path"]["value"] == "/tmp/settings-flag.sqlite3"
    assert not Path("/tmp/settings-flag.sqlite3").exists()  # info creates nothing

    table = _info(tmp_path, QTASKS_LEASE_SECONDS="7")
    assert table.returncode == 0, table
    rows = {line.split("│")[1].strip(): line for line in table.stdout.splitlines() if line.count("│") == 4}
    assert "env QTASKS_LEASE_SECONDS" in rows["lease_seconds"] and "7.0" in rows["lease_seconds"]
    assert "redis://127.0.0.1:1/0" in rows["broker_url"] and "code" in rows["broker_url"]
    # the default prefetch -1 says what a worker holds, as inspect does (a bare -1 reads as "unlimited")
    assert "-1 (a worker holds 64: follows concurrency)" in rows["prefetch"], rows["prefetch"]


def test_info_with_a_bad_environment_value_is_one_line(tmp_path: Path) -> None:
    _app_file(tmp_path)
    res = _info(tmp_path, QTASKS_MAX_PAYLOAD="big")
    assert res.returncode == 2 and "Traceback" not in res.stderr, res
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "QTASKS_MAX_PAYLOAD='big' is not a valid int: fix or unset it" in res.stderr


@pytest.mark.parametrize(("name", "raw", "says"), [
    ("QTASKS_CONCURRENCY", "0", "must be at least 1"), ("QTASKS_THREADS", "-2", "must be at least 1"),
    ("QTASKS_BATCH_SIZE", "0", "must be at least 1"), ("QTASKS_MAX_DELIVERIES", "0", "must be at least 1"),
    ("QTASKS_PREFETCH", "-5", "must be at least -1"), ("QTASKS_LEASE_SECONDS", "0", "must be above 0")])
def test_an_environment_value_out_of_range_is_refused_like_its_flag(name: str, raw: str, says: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """``--concurrency 0`` is refused; ``QTASKS_CONCURRENCY=0`` was taken, and a worker that could run nothing
    started and sat idle (issue 10, item 8)."""
    from qtasks_fast.config import BadSetting

    monkeypatch.setenv(name, raw)
    with pytest.raises(BadSetting, match=f"{name}='{raw}' {says}: fix or unset it"):
        GlobalConfig()


def test_info_with_an_environment_value_out_of_range_is_one_line(tmp_path: Path) -> None:
    _app_file(tmp_path)
    res = _info(tmp_path, QTASKS_CONCURRENCY="0")
    assert res.returncode == 2 and "Traceback" not in res.stderr, res
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "QTASKS_CONCURRENCY='0' must be at least 1: fix or unset it" in res.stderr


def test_in_range_environment_values_are_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, raw in (("QTASKS_PREFETCH", "-1"), ("QTASKS_PREFETCH", "0"), ("QTASKS_DRAIN_SECONDS", "0"),
                      ("QTASKS_LOG_SUMMARY_SECONDS", "0"), ("QTASKS_LEASE_SECONDS", "0.3")):
        monkeypatch.setenv(name, raw)
    c = GlobalConfig()
    assert (c.prefetch, c.drain_seconds, c.log_summary_seconds, c.lease_seconds) == (0, 0.0, 0.0, 0.3)


def test_a_bad_url_in_the_environment_is_named_as_coming_from_there(monkeypatch: pytest.MonkeyPatch) -> None:
    """A producer script (not the CLI) with a stale QTASKS_BROKER_URL: the error points at the variable, not at
    the app's code, which names a good URL."""
    monkeypatch.setenv("QTASKS_BROKER_URL", "foo://x")
    app = QueueTasks("env_url_error", broker_url="memory://")
    with pytest.raises(ValueError, match=r"unsupported broker URL 'foo://x'.*\(from env QTASKS_BROKER_URL\)"):
        app.add_task("anything")
