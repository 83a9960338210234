"""``qtasks_fast.testing``: a user's tests run an app that hard-codes Redis on ``memory://`` (issue 10, item 14).

What a user relies on: the README's "Testing your own tasks" block passes as written, next to the tour's
``tasks.py``; ``WorkerThread(app, broker_url="memory://")`` and ``use_broker`` never reach the app's own
Redis and give the app its own backend back afterwards; ``feed()`` generators and ``executor="process"``
tasks of a module that a test runner put on ``sys.path`` run under ``WorkerThread``.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from conftest import ROOT, free_port

from qtasks_fast.testing import WorkerThread, use_broker

README = (ROOT / "README.md").read_text()


def readme_block(after: str, first_line: str = "") -> str:
    """The first ```python block of README.md after the line ``after`` (starting with ``first_line``)."""
    tail = README[README.index(after):]
    for block in re.findall(r"```python\n(.*?)```", tail, re.S):
        if block.startswith(first_line):
            return str(block)
    raise AssertionError(f"no python block after {after!r} starting with {first_line!r}")


def dead_redis() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there: any use of it fails


def test_readme_testing_block_passes_as_written(tmp_path: Path) -> None:
    tasks = readme_block("## A 5-minute tour", "# tasks.py")
    tasks = re.sub(r'redis://127\.0\.0\.1:6379/0', dead_redis(), tasks)  # proves the test never uses it
    (tmp_path / "tasks.py").write_text(tasks)
    (tmp_path / "test_tasks.py").write_text(readme_block("### Testing your own tasks"))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_tasks.py"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and " passed" in proc.stdout, proc.stdout + proc.stderr


MODULE = '''
from qtasks_fast import QueueTasks, feed

app = QueueTasks("{name}", broker_url="{url}")

@app.task
def add_one(x: int) -> int:
    return x + 1

@app.task(generate_handler=feed("add_one"))
def numbers(n: int):
    yield from range(n)

@app.task(generate_handler=feed("add_one"))
async def anumbers(n: int):
    for i in range(n):
        yield i

@app.task(executor="process")
def square(n: int) -> int:
    return n * n
'''


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> object:
    """A module of the user's tasks in a directory on sys.path only (as pytest puts a test's directory there)."""
    name = f"user_tasks_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(MODULE.format(name=name, url=dead_redis())))
    monkeypatch.syspath_prepend(str(tmp_path))
    module = __import__(name)
    yield module
    sys.modules.pop(name, None)


def test_feed_and_process_tasks_run_under_a_worker_thread_on_memory(user_module: object) -> None:
    app = user_module.app  # type: ignore[attr-defined]
    own_url = app.broker_url
    with WorkerThread(app, broker_url="memory://"):
        for name in ("numbers", "anumbers"):
            gen = app.add_task(name, 3, timeout=10)
            assert gen is not None and gen.status == "success", gen
            fed = [app.wait(u, 10) for u in gen.returning]
            assert [t.returning for t in fed if t is not None] == [1, 2, 3], (name, fed)
        sq = app.add_task("square", 7, timeout=30)
        assert sq is not None and sq.status == "success" and sq.returning == 49, sq
    assert app.broker_url == own_url  # the app's own backend is back


def test_use_broker_switches_the_app_for_the_block_and_gives_it_back() -> None:
    from qtasks_fast import QueueTasks

    url = dead_redis()
    app = QueueTasks(f"ub{uuid.uuid4().hex[:8]}", broker_url=url)
    own_broker = app.broker

    @app.task
    def double(n: int) -> int:
        return 2 * n

    with use_broker(app, "memory://") as same:
        assert same is app and app.broker is not own_broker
        sent = double.add_task(4)
        assert app.get(sent.uuid) is not None  # recorded in memory, not on the dead Redis
        with WorkerThread(app):
            assert (done := app.wait(sent.uuid, 10)) is not None and done.returning == 8
    assert app.broker is own_broker and app.broker_url == url
    with use_broker(app):  # each block starts empty
        assert app.get(sent.uuid) is None
