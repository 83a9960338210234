"""A hung Redis (SIGSTOPped: connections open, nothing answers) must not block a producer forever.

Producers have a read and a connect timeout by default (``config.socket_timeout`` /
``connect_timeout``, env ``QTASKS_SOCKET_TIMEOUT``...; a URL query wins), so ``add_task`` raises
``BrokerUnavailable`` within a bounded time. Blocking waits (``add_task(timeout=N)``, the worker's
read) are not cut by it: they wait in slices shorter than the read timeout.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import PrivateRedis

from qtasks_fast import QueueTasks
from qtasks_fast.asyncio import QueueTasks as AsyncQueueTasks
from qtasks_fast.exceptions import BrokerUnavailable
from qtasks_fast.testing import WorkerThread

TIMEOUT = 2.0  # the configured read timeout of these tests (slices of 1 s leave 1 s for a loaded machine)
BOUND = 3 * TIMEOUT + 5  # generous: a loaded machine, a connect timeout on top; never "forever"


@pytest.fixture
def hung(tmp_path: Path) -> Iterator[PrivateRedis]:
    r = PrivateRedis(tmp_path)
    r.start()
    yield r
    if r.proc is not None and r.proc.poll() is None:
        r.proc.send_signal(signal.SIGCONT)
    r.stop(signal.SIGKILL)


def freeze(r: PrivateRedis) -> None:
    assert r.proc is not None
    r.proc.send_signal(signal.SIGSTOP)


def outcome(call: Callable[[], Any]) -> BaseException | str:
    """What ``call`` raised within BOUND seconds, run in a thread; "hung" when it had not returned by then."""
    result: list[BaseException | str] = []

    def target() -> None:
        try:
            call()
            result.append("returned")
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            result.append(exc)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(BOUND)
    return result[0] if result else "hung"


def test_sync_add_task_raises_on_a_hung_redis_and_long_waits_still_work(hung: PrivateRedis, app_name: str,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QTASKS_SOCKET_TIMEOUT", str(TIMEOUT))
    monkeypatch.setenv("QTASKS_CONNECT_TIMEOUT", str(TIMEOUT))
    app = QueueTasks(app_name, broker_url=hung.url)

    @app.task
    async def slow() -> str:
        await asyncio.sleep(2.5 * TIMEOUT)  # the producer's wait and the worker's reads outlast the read timeout
        return "done"

    with WorkerThread(app):
        task = slow.add_task(timeout=30)
    assert task is not None and task.returning == "done"

    freeze(hung)
    for what, call in [("warm add_task", lambda: app.add_task("slow")),
                       ("add_task(timeout=)", lambda: app.add_task("slow", timeout=30)),
                       ("get", lambda: app.get(task.uuid)),
                       ("a new producer", lambda: QueueTasks(app_name + "x", broker_url=hung.url).add_task("x"))]:
        got = outcome(call)
        assert isinstance(got, BrokerUnavailable), (what, got)
        assert "did not answer in time" in str(got) and "\n" not in str(got), (what, got)


def test_async_add_task_raises_on_a_hung_redis(hung: PrivateRedis, app_name: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QTASKS_SOCKET_TIMEOUT", str(TIMEOUT))
    app = AsyncQueueTasks(app_name, broker_url=hung.url)

    @app.task
    async def slow() -> str:
        await asyncio.sleep(2.5 * TIMEOUT)
        return "done"

    async def scenario() -> list[BaseException | str]:
        with WorkerThread(app):
            task = await slow.add_task(timeout=30)
        assert task is not None and task.returning == "done"
        freeze(hung)
        out: list[BaseException | str] = []
        for call in (lambda: app.add_task("slow"), lambda: app.add_task("slow", timeout=30)):
            try:
                await asyncio.wait_for(call(), BOUND)
                out.append("returned")
            except asyncio.TimeoutError:
                out.append("hung")
            except BaseException as exc:  # noqa: BLE001 - reported to the test
                out.append(exc)
        return out

    for got in asyncio.run(scenario()):
        assert isinstance(got, BrokerUnavailable), got
        assert "did not answer in time" in str(got), got


def test_the_url_query_wins_over_the_config(hung: PrivateRedis, app_name: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QTASKS_SOCKET_TIMEOUT", "600")
    app = QueueTasks(app_name, broker_url=f"{hung.url}?socket_timeout={TIMEOUT}")
    app.add_task("anything")
    freeze(hung)
    got = outcome(lambda: app.add_task("anything"))
    assert isinstance(got, BrokerUnavailable), got


def test_timeouts_must_be_sane(monkeypatch: pytest.MonkeyPatch) -> None:
    from qtasks_fast import GlobalConfig

    with pytest.raises(ValueError, match="socket_timeout must be 0"):
        GlobalConfig(socket_timeout=-1)
    monkeypatch.setenv("QTASKS_SOCKET_TIMEOUT", "ten")
    with pytest.raises(ValueError, match="QTASKS_SOCKET_TIMEOUT='ten' is not a valid float"):
        GlobalConfig()
