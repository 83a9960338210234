"""Credentials in a broker URL: redacted in every form, and kept out of every process's command line.

``/proc/<pid>/cmdline`` is readable by every user of the host, and forked workers inherit
the supervisor's; so the CLI takes the URL from ``--broker-file`` or ``QTASKS_BROKER_URL`` too,
and a ``run`` given ``--broker <url with a password>`` moves it out of its arguments.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import redis
from conftest import APPS, AUTH_PASSWORD, PrivateRedis, ProcessHarness, cli_env, free_port

from qtasks_fast import GlobalConfig
from qtasks_fast.backends import make_backend
from qtasks_fast.url import redact

SECRET = "Zq9-s3cr3t"
URLS = [
    "redis://user:{s}@host:6379/0",
    "redis://:{s}@host:6379/0",
    "rediss://default:{s}@host:6380/1?ssl_cert_reqs=none",
    "redis://host:6379/0?password={s}",
    "redis://host:6379/0?db=1&password={s}&client_name=x",
    "redis://host/0?PASSWORD={s}",
    "redis://host/0?pass%77ord={s}",
    "unix://:{s}@/run/redis.sock?db=0",
    "unix:///run/redis.sock?db=0&password={s}",
    "sqlite:///var/lib/q.db?key={s}",
    "postgres://app:{s}@db:5432/q?sslmode=require",
    "postgresql://app@db/q?password={s}",
    "amqp://guest:{s}@rabbit:5672/vhost",
    "amqps://rabbit/vh?auth={s}",
    "kafka://broker:9092?sasl_plain_password={s}",
    "https://acct.blob.core.windows.net/q?sv=2020&sig={s}&sas_token={s}",
    "redis://host?api_key={s};access_key={s}",
    "redis://host?token={s}&secret={s}&pwd={s}&passwd={s}",
    "redis://host/0#access_token={s}",
    "redis://{s}@host:6379/0",  # a lone token as the user name
    "redis://:pa/ss{s}@host/0",  # an unencoded / in the password: not a valid URL, still hidden
    "redis://:p@ss{s}@host/0",  # an unencoded @
    "user:{s}@host:6379",  # no scheme at all
]


@pytest.mark.parametrize("template", URLS)
def test_every_form_of_credential_is_redacted(template: str) -> None:
    url = template.format(s=SECRET)
    shown = redact(url)
    assert SECRET not in shown, shown
    assert "***" in shown, shown


def test_redaction_keeps_what_helps_debugging() -> None:
    assert redact("redis://user:pw@host:6379/0") == "redis://user:***@host:6379/0"
    assert redact("redis://host:6379/0?db=2&password=pw&client_name=c") == \
        "redis://host:6379/0?db=2&password=***&client_name=c"
    assert redact("redis://host:6379/0?socket_timeout=5") == "redis://host:6379/0?socket_timeout=5"
    assert redact("sqlite:///var/lib/q.db") == "sqlite:///var/lib/q.db"


def test_an_unsupported_url_is_named_redacted() -> None:
    with pytest.raises(ValueError) as err:
        make_backend(f"user:{SECRET}@host:6379", "a", GlobalConfig())
    assert SECRET not in str(err.value) and "user:***@host" in str(err.value)


def test_repr_and_errors_hide_a_query_password(app_name: str) -> None:
    from qtasks_fast import QueueTasks
    from qtasks_fast.exceptions import BrokerUnavailable

    app = QueueTasks(app_name, broker_url=f"redis://127.0.0.1:{free_port()}/0?password={SECRET}")
    assert SECRET not in repr(app) and SECRET not in repr(app.broker) and SECRET not in repr(app.storage)
    with pytest.raises(BrokerUnavailable) as err:
        app.add_task("anything")
    assert SECRET not in str(err.value) and "password=***" in str(err.value)


# ------------------------------------------------------------------------------------------ the CLI
def cmdlines(harness: ProcessHarness, proc: subprocess.Popen[bytes]) -> list[bytes]:
    kids = harness.children(proc)
    assert kids, "the supervisor has no workers"
    return [Path(f"/proc/{p}/cmdline").read_bytes() for p in [proc.pid, *(k.pid for k in kids)]]


def serve_one_task(harness: ProcessHarness, url: str, proc: subprocess.Popen[bytes]) -> None:
    harness.wait_ready(proc)
    m = harness.producer(url)
    task = m.app.add_task("add", 2, 3, timeout=30)  # type: ignore[attr-defined]
    assert task is not None and task.returning == 5, harness.log(proc)


def test_broker_with_a_password_leaves_no_command_line_carrying_it(harness: ProcessHarness,
                                                                    private_redis_auth: PrivateRedis) -> None:
    url = private_redis_auth.auth_url()
    proc = harness.start(None, "--broker", url, processes=2)
    serve_one_task(harness, url, proc)
    for line in cmdlines(harness, proc):
        assert AUTH_PASSWORD.encode() not in line, line
    log = harness.log(proc)
    assert log.count("the password is visible to other users in /proc/") == 1, log
    assert "use QTASKS_BROKER_URL or --broker-file" in log and AUTH_PASSWORD not in log, log


def test_broker_file(harness: ProcessHarness, private_redis_auth: PrivateRedis, tmp_path: Path) -> None:
    url = private_redis_auth.auth_url()
    path = tmp_path / "broker-url"
    path.write_text(f"# the pool's broker\n\n  {url}  \n")
    proc = harness.start(None, "--broker-file", str(path), processes=2)
    serve_one_task(harness, url, proc)
    for line in cmdlines(harness, proc):
        assert AUTH_PASSWORD.encode() not in line, line
    assert "password is visible" not in harness.log(proc)
    # the control commands take it too
    res = subprocess.run([sys.executable, "-m", "qtasks_fast", "-A", "mixed_app", "dlq", "list", "--json",
                          "--broker-file", str(path)], env=cli_env(None, harness.app_name), cwd=APPS,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.strip() == "[]", res


def test_the_environment_overrides_the_apps_url_like_broker(tmp_path: Path, redis_url: str, app_name: str) -> None:
    """``QTASKS_BROKER_URL`` is the env form of ``--broker``: it must beat a URL the app hard-codes, or it
    would be no substitute for a ``--broker`` that shows the password."""
    (tmp_path / "pinned_app.py").write_text(
        "from qtasks_fast import QueueTasks\n"
        f"app = QueueTasks({app_name!r}, broker_url='redis://127.0.0.1:1/0')\n")
    env = cli_env(redis_url, app_name, PYTHONPATH=f"{tmp_path}:{Path(__file__).resolve().parent.parent}")
    res = subprocess.run([sys.executable, "-m", "qtasks_fast", "-A", "pinned_app", "dlq", "list", "--json"],
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.strip() == "[]", res


EXPECTED = {"missing": "cannot read --broker-file", "empty": "is empty: put the broker URL on its first line",
            "comments only": "is empty", "a directory": "cannot read --broker-file", "not utf-8": "is not UTF-8 text",
            "bad url": "(from --broker-file", "with --broker too": "not allowed with argument --broker-file"}


@pytest.mark.parametrize("case", list(EXPECTED))
@pytest.mark.parametrize("command", [["run"], ["status", "0" * 32]])
def test_bad_broker_files_exit_2_with_one_line(case: str, command: list[str], tmp_path: Path, app_name: str) -> None:
    path = tmp_path / "url"
    extra: list[str] = []
    if case == "empty":
        path.write_text("")
    elif case == "comments only":
        path.write_text("# nothing yet\n\n")
    elif case == "a directory":
        path.mkdir()
    elif case == "not utf-8":
        path.write_bytes(b"redis://\xff\xfe@host\n")
    elif case == "bad url":
        path.write_text(f"user:{SECRET}@host:6379\n")
    elif case == "with --broker too":
        path.write_text("redis://127.0.0.1:6379/0\n")
        extra = ["--broker", "redis://127.0.0.1:6379/0"]
    res = subprocess.run([sys.executable, "-m", "qtasks_fast", "-A", "mixed_app", *command, "--broker-file",
                          str(path), *extra], env=cli_env(None, app_name), cwd=APPS, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 2, res
    err = res.stderr.strip()
    assert "Traceback" not in err and SECRET not in err, err
    lines = err.splitlines()
    assert len(lines) == 1 or "usage:" in err, err  # argparse prints its usage above its one-line error
    assert EXPECTED[case] in lines[-1], err


def test_a_wrong_password_is_reported_without_it(private_redis_auth: PrivateRedis, app_name: str) -> None:
    bad = private_redis_auth.auth_url().replace(AUTH_PASSWORD, SECRET)
    res = subprocess.run([sys.executable, "-m", "qtasks_fast", "-A", "mixed_app", "status", "0" * 32,
                          "--broker", bad], env=cli_env(None, app_name), cwd=APPS, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 2, res
    assert SECRET not in res.stderr + res.stdout, res
    assert "password is visible to other users" in res.stderr, res
    with pytest.raises(redis.AuthenticationError):
        redis.Redis.from_url(bad).ping()  # the premise: that password is wrong


@pytest.mark.parametrize("argv", [
    ["-A", "app", "run", "--broker", "U", "--processes", "2"],
    ["-A", "app", "run", "--broker=U", "--processes", "2"],
    ["-A", "app", "run", "--bro", "U", "--processes", "2"],  # argparse takes an unambiguous prefix
    ["-A", "app", "run", "--processes", "2", "--broker", "U"],
])
def test_the_re_executed_command_line_keeps_all_but_the_url(argv: list[str]) -> None:
    from qtasks_fast.cli_broker import without

    assert without(argv, "U") == ["-A", "app", "run", "--processes", "2"]


def test_a_custom_broker_object_keeps_its_place_but_broker_still_wins(harness: ProcessHarness,
                                                                     private_redis_auth: PrivateRedis,
                                                                     tmp_path: Path) -> None:
    """An app built with a broker object of its own keeps it under ``QTASKS_BROKER_URL`` (the environment
    names a URL, not a backend), while ``--broker`` replaces it, also once moved out of the command line."""
    (tmp_path / "custom_app.py").write_text(
        "import os\n"
        "from qtasks_fast import QueueTasks\n"
        "from qtasks_fast.backends.redis.broker import RedisBroker\n"
        "from qtasks_fast.backends.redis.storage import RedisStorage\n"
        "NAME = os.environ['TEST_APP_NAME']\n"
        "b = RedisBroker('redis://127.0.0.1:1/0', app_name=NAME)\n"
        "app = QueueTasks(NAME, broker=b, storage=RedisStorage(b.url, connection=b.conn, app_name=NAME))\n"
        "@app.task\n"
        "def add(a: int, b: int) -> int:\n"
        "    return a + b\n")
    pythonpath = f"{tmp_path}:{Path(__file__).resolve().parent.parent}"
    url = private_redis_auth.auth_url()
    env = cli_env(url, harness.app_name, PYTHONPATH=pythonpath)
    res = subprocess.run([sys.executable, "-m", "qtasks_fast", "-A", "custom_app", "dlq", "list"], env=env,
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "127.0.0.1:1" in res.stderr, res  # its own broker, not the env's
    proc = harness.start(None, "--broker", url, processes=1, app="custom_app", env={"PYTHONPATH": pythonpath})
    harness.wait_ready(proc, 1)
    assert AUTH_PASSWORD.encode() not in Path(f"/proc/{proc.pid}/cmdline").read_bytes()
