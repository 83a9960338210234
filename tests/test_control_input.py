"""Hostile input on the control side: dead letters whose fields are not UTF-8 (or are markup, or have no
JSON form) are listed, not fatal; a task uuid that is not a UUID is refused before it reaches a key.

A dead letter is often the very message that was malformed, so ``dlq list`` must show whatever
its producer wrote. Entries are written here the way the broker writes them (the Redis ``P:dlq``
stream fields ``u, d, reason, at, prio``; the SQLite ``dead_letters`` table).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis
from apps.control_helpers import APPS, cli_env, load_app

from qtasks_fast.asyncio import QueueTasks as AsyncQueueTasks
from qtasks_fast.schemas import Envelope

GOOD_UUID = "0b7c6f1e-3a5d-4c2b-9e8f-1a2b3c4d5e6f"
MARKUP_NAME = "[/bold]evil[red]\x1b[31m"


def run_cli(broker_url: str, app_name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "qtasks_fast", "-A", "control_app", *args],
                          env=cli_env(broker_url, app_name, COLUMNS="400"), cwd=APPS, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)


def bodies() -> list[bytes]:
    ext = Envelope(uuid=GOOD_UUID, task_name="touch", args=[msgspec.msgpack.Ext(1, b"x")])
    return [
        b"\xc1\xff",  # not msgpack at all
        msgspec.msgpack.encode(Envelope(uuid=GOOD_UUID, task_name=MARKUP_NAME)),  # markup and an escape code
        b"\x82\xa1u\xa1x\xa1n\xa2\xff\xfe",  # a map whose task name is not UTF-8
        msgspec.msgpack.encode(ext),  # arguments with no JSON form
    ]


def check_listing(broker_url: str, app_name: str, count: int) -> None:
    table = run_cli(broker_url, app_name, "dlq", "list")
    assert table.returncode == 0, table
    assert "Traceback" not in table.stderr, table.stderr
    assert "\\xff\\xfe-not-utf8" in table.stdout, table.stdout  # shown escaped, not dropped
    assert "bad \\xff reason" in table.stdout, table.stdout
    assert "[/bold]evil[red]" in table.stdout and "\x1b" not in table.stdout, table.stdout
    listed = run_cli(broker_url, app_name, "dlq", "list", "--json")
    assert listed.returncode == 0, listed
    rows = json.loads(listed.stdout)
    assert len(rows) == count, rows
    assert "\\xff\\xfe-not-utf8" in {r["uuid"] for r in rows}, rows
    assert MARKUP_NAME in {r["task_name"] for r in rows}, rows


def test_dlq_list_shows_non_utf8_and_hostile_fields_on_redis(redis_url: str, app_name: str) -> None:
    r = redis.Redis.from_url(redis_url)
    key = f"qtf:{{{app_name}:default}}:dlq"
    now = str(int(time.time() * 1000)).encode()
    r.xadd(key, {"u": b"\xff\xfe-not-utf8", "d": b"\xc1\xff", "reason": b"bad \xff reason", "at": now, "prio": b"0"})
    for body in bodies()[1:]:
        r.xadd(key, {"u": GOOD_UUID, "d": body, "reason": f"unknown task {MARKUP_NAME!r}", "at": now, "prio": b"0"})
    r.xadd(key, {"u": GOOD_UUID, "d": b"", "reason": b"", "at": b"not a number", "prio": b"high"})
    try:
        check_listing(redis_url, app_name, 5)
    finally:
        r.delete(key)


def test_dlq_list_shows_non_utf8_fields_on_sqlite(tmp_path: Path, app_name: str) -> None:
    path = tmp_path / "q.sqlite3"
    url = f"sqlite:///{path}"
    m = load_app(app_name, url)
    assert m.app.dlq_list() == []  # creates the database
    db = sqlite3.connect(path)
    with db:
        # TEXT cells holding bytes that are not UTF-8 (another tool wrote them): sqlite3 cannot decode them
        db.execute("INSERT INTO dead_letters (app, queue, prio, uuid, body, reason, at) VALUES "
                   "(?, 'default', 0, CAST(? AS TEXT), ?, CAST(? AS TEXT), ?)",
                   (app_name, b"\xff\xfe-not-utf8", b"\xc1\xff", b"bad \xff reason", int(time.time() * 1000)))
        for body in bodies()[1:]:
            db.execute("INSERT INTO dead_letters (app, queue, prio, uuid, body, reason, at) VALUES "
                       "(?, 'default', 0, ?, ?, 'unknown task', ?)", (app_name, GOOD_UUID, body,
                                                                       int(time.time() * 1000)))
    db.close()
    check_listing(url, app_name, 4)


# ---------------------------------------------------------------------------------------- task uuids
BAD_UUIDS = ["../../x", "", "x" * 500, "0123", f"{GOOD_UUID}/../../x", "qtf:*", "a\nb"]


@pytest.mark.parametrize("bad", BAD_UUIDS)
def test_the_api_refuses_a_uuid_that_is_not_one(bad: str, redis_url: str, app_name: str) -> None:
    from qtasks_fast.exceptions import InvalidTaskId

    m = load_app(app_name, redis_url)
    calls: list[Any] = [lambda: m.app.get(bad), lambda: m.app.wait(bad, 1), lambda: m.app.get_logs(bad),
                        lambda: m.app.cancel(bad), lambda: m.app.restart(bad)]
    for call in calls:
        with pytest.raises(InvalidTaskId) as err:
            call()
        assert "is not a task uuid" in str(err.value) and "\n" not in str(err.value)

    aapp = AsyncQueueTasks(app_name, broker_url=redis_url)

    async def each() -> None:
        for acall in (aapp.get, aapp.get_logs, aapp.cancel, aapp.restart, lambda u: aapp.wait(u, 1)):
            with pytest.raises(InvalidTaskId):
                await acall(bad)

    asyncio.run(each())
    assert not redis.Redis.from_url(redis_url).keys(f"*{app_name}*"), "a key was made from a bad uuid"


def test_the_api_takes_a_uuid_in_any_form(redis_url: str, app_name: str) -> None:
    m = load_app(app_name, redis_url)
    task = m.app.add_task("touch", "x")
    for form in (task.uuid, str(task.uuid), task.uuid.hex, str(task.uuid).upper(), f"urn:uuid:{task.uuid}"):
        got = m.app.get(form)
        assert got is not None and got.uuid == task.uuid, form


@pytest.mark.parametrize("command", ["status", "cancel", "restart", "logs"])
def test_the_cli_refuses_a_uuid_that_is_not_one(command: str, redis_url: str, app_name: str) -> None:
    for bad in ("../../x", "", "0123"):
        res = run_cli(redis_url, app_name, command, bad)
        assert res.returncode == 2, res
        assert res.stderr.count("\n") == 1 and "is not a task uuid" in res.stderr, res.stderr
        assert "Traceback" not in res.stderr


#: dead-letter ids no backend can hold: not a stream id (Redis answers XRANGE with an error), past 64 bits
#: (SQLite raises OverflowError), a non-ASCII digit
NO_SUCH_IDS = ["nosuch", "99999999999999999999999", "1-99999999999999999999999", "\u00b2", "1-0-0", ""]


def test_dead_letter_ids_that_cannot_exist_are_not_found_on_every_backend(url: str, app_name: str) -> None:
    """``dlq requeue/purge --id`` with a mistyped id: "none of the ids is a dead letter" (0), never a
    "broker error" (Redis) or a traceback (SQLite) (issue 10, item 8)."""
    from qtasks_fast import QueueTasks

    app = QueueTasks(app_name, broker_url=url)
    assert app.dlq_requeue("default", ids=NO_SUCH_IDS) == 0
    assert app.dlq_purge("default", ids=NO_SUCH_IDS) == 0
    assert app.dlq_requeue("default", ids=["1-0", "1"]) == 0  # well-formed, absent
    app.close()
