"""One owner of the Redis protocol (issue 12): ``backends/redis/script.py`` is the only code that sends FCALL or
EVALSHA, names a ``redis.lua`` op or loads the library or script; each op has exactly one typed method; the
script cache and the function library lost under a running app are recovered on the sync and the async path
alike."""

from __future__ import annotations

import ast
import contextlib
import re
from pathlib import Path

import pytest
import redis
from conftest import ROOT

from qtasks_fast import QueueTasks
from qtasks_fast.asyncio import QueueTasks as AsyncQueueTasks
from qtasks_fast.backends.redis.script import FUNCTION

REDIS_PKG = ROOT / "qtasks_fast" / "backends" / "redis"
SCRIPT = REDIS_PKG / "script.py"
#: the ops redis.lua dispatches on (``function OPS.x(ARGV)``)
OPS = set(re.findall(r"^function OPS\.(\w+)\(ARGV\)", (REDIS_PKG / "redis.lua").read_text(), re.M))
#: op names that are also task statuses (``cancel``): other modules write those as statuses
STATUSES = {"new", "process", "success", "error", "cancel"}


def _sources() -> list[Path]:
    return sorted(p for p in (ROOT / "qtasks_fast").rglob("*.py") if p != SCRIPT)


def test_the_ops_are_read_from_the_script() -> None:
    assert {"enqueue", "fetch", "settle", "get", "watch", "cancel", "stats"} <= OPS, OPS


def test_only_script_py_sends_evalsha_or_loads_the_script() -> None:
    offenders = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                    (node.value.upper() in {"EVALSHA", "EVAL", "SCRIPT", "FCALL", "FCALL_RO"}
                     or node.value == "FUNCTION"):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
            if isinstance(node, ast.Attribute) and node.attr in {"evalsha", "eval", "register_script",
                                                                 "script_load", "fcall", "fcall_ro", "function_load"}:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: .{node.attr}")
    assert not offenders, "call redis.lua through backends/redis/script.py (Script):\n" + "\n".join(offenders)


def test_no_other_redis_module_names_an_op() -> None:
    offenders = []
    for path in sorted(REDIS_PKG.glob("*.py")):
        if path == SCRIPT:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in OPS - STATUSES:
                offenders.append(f"{path.name}:{node.lineno}: {node.value!r}")
    assert not offenders, "name redis.lua's ops only in script.py:\n" + "\n".join(offenders)


def test_each_op_has_exactly_one_typed_method() -> None:
    """Every op of redis.lua is sent by one method of Script (``self._call(queue, "<op>", ...)``), no more."""
    tree = ast.parse(SCRIPT.read_text())
    (script,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Script"]
    sent: dict[str, list[str]] = {}
    for method in script.body:
        if not isinstance(method, ast.FunctionDef):
            continue
        for node in ast.walk(method):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "_call" \
                    and len(node.args) > 1 and isinstance(node.args[1], ast.Constant):
                sent.setdefault(node.args[1].value, []).append(method.name)
                assert method.returns is not None, f"Script.{method.name} needs a return type"
    assert set(sent) == OPS, f"ops without a method: {OPS - set(sent)}; unknown: {set(sent) - OPS}"
    assert all(len(m) == 1 for m in sent.values()), sent


@pytest.fixture
def flushed_app(redis_url: str, app_name: str) -> QueueTasks:
    app = QueueTasks(app_name, broker_url=redis_url)

    @app.task(name="add")
    def add(a: int, b: int) -> int:
        return a + b

    return app


def lose_the_code(client: redis.Redis) -> None:
    """What a restart without persistence does to our code: the script cache and our function library gone
    (only ours: other libraries on the shared Redis stay)."""
    client.script_flush()
    with contextlib.suppress(redis.ResponseError):  # not loaded yet
        client.function_delete(FUNCTION)


def test_sync_producer_recovers_from_a_flushed_script_cache(flushed_app: QueueTasks, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    first = flushed_app.add_task("add", 1, 2)  # loads the library
    lose_the_code(client)
    second = flushed_app.add_task("add", 3, 4)  # "Function not found": loaded again, sent again
    lose_the_code(client)  # and the read-only function (op get) too
    assert flushed_app.get(first.uuid).status == "new"  # type: ignore[union-attr]
    assert flushed_app.get(second.uuid).status == "new"  # type: ignore[union-attr]
    flushed_app.close()


async def test_async_producer_recovers_from_a_flushed_script_cache(redis_url: str, app_name: str) -> None:
    client = redis.Redis.from_url(redis_url)
    async with AsyncQueueTasks(app_name, broker_url=redis_url) as app:
        @app.task(name="add")
        async def add(a: int, b: int) -> int:
            return a + b

        first = await app.add_task("add", 1, 2)
        lose_the_code(client)
        second = await app.add_task("add", 3, 4)
        lose_the_code(client)
        assert (await app.get(first.uuid)).status == "new"  # type: ignore[union-attr]
        assert (await app.get(second.uuid)).status == "new"  # type: ignore[union-attr]
