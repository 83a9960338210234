"""redis.lua as a Redis Function library (issue 16): FCALL of ``qtf_<sha8>`` on Redis >= 7, EVALSHA where the
server has no Redis Functions for us, the library loaded again after a restart that lost it, and two versions of
qtasks_fast sharing one Redis during a rolling deploy, each calling its own library.

What a user relies on: tasks go in and are read back whichever way the server runs the script, without a
setting; a Redis restarted without persistence needs no action; deploying a new version does not break the
workers of the old one still running against the same Redis.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from conftest import PrivateRedis

from qtasks_fast import QueueTasks
from qtasks_fast.asyncio import QueueTasks as AsyncQueueTasks
from qtasks_fast.backends.redis import script
from qtasks_fast.backends.redis.script import FUNCTION, FUNCTION_RO
from qtasks_fast.testing.contract import Harness
from qtasks_fast.testing.contract.harness import envelope, fetch, success


def _app(url: str, app_name: str) -> QueueTasks:
    app = QueueTasks(app_name, broker_url=url)

    @app.task(name="add")
    def add(a: int, b: int) -> int:
        return a + b

    return app


def _calls(client: redis.Redis) -> dict[str, int]:
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in client.info("commandstats").items()}


def _libraries(client: redis.Redis) -> set[str]:
    return {dict(zip(lib[::2], lib[1::2]))[b"library_name"].decode() for lib in client.function_list()}


def test_the_library_carries_the_scripts_hash_and_one_source() -> None:
    """Both load modes are the same file plus one generated line each: the library's name is the hash of what
    runs, so a changed redis.lua is a new library, never a REPLACE of another version's."""
    assert FUNCTION == f"qtf_{script.SHA[:8]}" and FUNCTION_RO == f"{FUNCTION}_ro"
    assert script.LUA.startswith(script.SOURCE) and script.LUA.endswith("return run(KEYS, ARGV)\n")
    assert script.LIBRARY.startswith(f"#!lua name={FUNCTION}\n{script.SOURCE}")


def test_a_redis_restarted_without_persistence_gets_the_library_again(tmp_path: Path, app_name: str) -> None:
    r = PrivateRedis(tmp_path, ["--appendonly", "no"])
    r.start()
    try:
        client = redis.Redis.from_url(r.url)
        app = _app(r.url, app_name)
        app.add_task("add", 1, 2)
        assert FUNCTION in _libraries(client)
        r.restart()
        assert not _libraries(client), "the restart lost the library (no persistence)"
        second = app.add_task("add", 3, 4)  # "Function not found": loaded again, sent again
        assert app.get(second.uuid).status == "new"  # type: ignore[union-attr]
        calls = _calls(client)
        assert calls.get("fcall", 0) >= 2 and "evalsha" not in calls, calls  # the add and the get
        app.close()
    finally:
        r.stop(signal.SIGKILL)


#: how a server refuses Redis Functions: a Redis 6 ("unknown command", simulated by renaming the commands away),
#: or an ACL user set up for EVALSHA that may not FCALL, or may FCALL but not FUNCTION LOAD
NO_FUNCTIONS = {
    "unknown-command": [
        "--rename-command",
        "FCALL",
        "",
        "--rename-command",
        "FCALL_RO",
        "",
        "--rename-command",
        "FUNCTION",
        "",
    ],
    "acl-no-fcall": ["--user", "qtf", "on", "nopass", "~*", "&*", "+@all", "-fcall", "-fcall_ro", "-function"],
    "acl-no-function-load": ["--user", "qtf", "on", "nopass", "~*", "&*", "+@all", "-function"],
}


@pytest.fixture(params=sorted(NO_FUNCTIONS))
def no_functions(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PrivateRedis]:
    r = PrivateRedis(tmp_path, NO_FUNCTIONS[request.param])
    r.start()
    if request.param.startswith("acl"):
        r.url = f"redis://qtf@127.0.0.1:{r.port}/0"
    yield r
    r.stop(signal.SIGKILL)


def test_a_server_without_redis_functions_runs_the_same_script_as_evalsha(
    no_functions: PrivateRedis, app_name: str
) -> None:
    app = _app(no_functions.url, app_name)
    first = app.add_task("add", 1, 2)
    second = app.add_task("add", 3, 4)
    assert app.get(first.uuid).status == "new"  # type: ignore[union-attr]
    assert app.get(second.uuid).status == "new"  # type: ignore[union-attr]
    admin = redis.Redis(port=no_functions.port)
    calls = _calls(admin)
    # 2 adds and 2 gets, each one EVALSHA: the connection asked for FCALL once, then stayed with EVALSHA
    assert calls.get("evalsha", 0) == 4 and calls.get("fcall", 0) <= 1, calls
    app.close()


async def test_the_async_client_falls_back_to_evalsha_too(tmp_path: Path, app_name: str) -> None:
    r = PrivateRedis(tmp_path, NO_FUNCTIONS["unknown-command"])
    r.start()
    try:
        async with AsyncQueueTasks(app_name, broker_url=r.url) as app:

            @app.task(name="add")
            async def add(a: int, b: int) -> int:
                return a + b

            task = await app.add_task("add", 1, 2)
            assert (await app.get(task.uuid)).status == "new"  # type: ignore[union-attr]
        assert _calls(redis.Redis(port=r.port)).get("evalsha", 0) == 2
    finally:
        r.stop(signal.SIGKILL)


def test_two_versions_share_a_redis_each_calling_its_own_library(redis_url: str, app_name: str) -> None:
    """A rolling deploy: another qtasks_fast version's library (another redis.lua, another hash) stays loaded and
    callable while this version loads and reloads its own."""
    client = redis.Redis.from_url(redis_url)
    other_source = script.SOURCE + "-- another version\n"
    other_sha = script.hashlib.sha1((other_source + "return run(KEYS, ARGV)\n").encode()).hexdigest()
    other = f"qtf_{other_sha[:8]}"
    assert other != FUNCTION
    client.function_load(f"#!lua name={other}\n{other_source}redis.register_function('{other}', run)\n")
    try:
        app = _app(redis_url, app_name)
        first = app.add_task("add", 1, 2)
        client.function_delete(FUNCTION)  # ours lost (FUNCTION DELETE by an operator): reloaded on the next call
        second = app.add_task("add", 3, 4)
        assert {FUNCTION, other} <= _libraries(client)
        prefix = script.queue_prefix(app_name, "default")
        for task in (first, second):  # the other version reads what this one wrote, through its own library
            fields = client.fcall(other, 1, prefix, "get", "1", app_name, str(task.uuid))
            assert dict(zip(fields[::2], fields[1::2]))[b"s"] == b"new"
            assert app.get(task.uuid).status == "new"  # type: ignore[union-attr]
        app.close()
    finally:
        client.function_delete(other)


async def _settle_after(url: str, app_name: str, lose: str) -> None:
    """Enqueue, fetch and settle two tasks (one a producer awaits: its record goes first, as plain commands)
    through the broker, the server losing our script between the fetch and the settle (``lose``: ``"library"``
    = FUNCTION DELETE of ours, the shared server's other libraries left alone; ``"scripts"`` = SCRIPT FLUSH, on a
    private server; ``""`` = nothing): the worker's settle (its packed FCALL, or EVALSHA) is sent again after
    the reload, the records are stored and the entries acked."""
    h = Harness(url, app_name=app_name)
    try:
        worker = await h.consumer("w-0")
        envs = [envelope(), envelope()]
        envs[1].meta = {"rw": 1}
        await h.broker.enqueue(envs, h.storage)
        ready, bad = await fetch(worker, count=10)
        assert len(ready) == 2 and not bad
        admin = redis.Redis.from_url(url)
        if lose == "library":
            admin.function_delete(FUNCTION)
        elif lose == "scripts":
            admin.script_flush()
        await worker.settle([success(d, d.envelope.uuid) for d in ready], h.storage, [])  # type: ignore[union-attr]
        for env in envs:
            task = await h.record(env.uuid)
            assert task.status == "success" and task.returning == env.uuid
        assert admin.xpending(f"qtf:{{{app_name}:default}}:s:0", app_name)["pending"] == 0
    finally:
        await h.close()


@pytest.mark.parametrize("lose", ["", "library"])
async def test_the_worker_settle_reloads_a_lost_library(redis_url: str, app_name: str, lose: str) -> None:
    await _settle_after(redis_url, app_name, lose)


async def test_the_worker_settle_falls_back_to_evalsha(no_functions: PrivateRedis, app_name: str) -> None:
    """FCALL refused (unknown command, ACL): the settle goes on as EVALSHA, the script loaded first."""
    await _settle_after(no_functions.url, app_name, "scripts")
