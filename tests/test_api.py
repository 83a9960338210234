"""The public API against real Redis with an in-process worker: what a QTasks user relies on."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from qtasks_fast import GlobalConfig, PayloadTooLarge, QueueTasks, TaskArgumentsError
from qtasks_fast.asyncio import QueueTasks as AsyncQueueTasks
from qtasks_fast.testing import WorkerThread


@pytest.fixture
def app(redis_url: str, app_name: str) -> QueueTasks:
    return QueueTasks(app_name, broker_url=redis_url)


def test_decorator_forms_register_names(app: QueueTasks) -> None:
    @app.task
    def a() -> int:
        return 1

    @app.task()
    def b() -> int:
        return 2

    @app.task("custom")
    def c() -> int:
        return 3

    @app.task(name="named", priority=3, tags=["x"], description="d")
    def d() -> int:
        return 4

    assert set(app.tasks) == {"a", "b", "custom", "named"}
    assert app.tasks["named"].priority == 3 and app.tasks["named"].tags == ["x"]
    assert a() == 1  # still callable locally


def test_registering_a_name_twice_is_an_error(app: QueueTasks) -> None:
    @app.task(name="dup")
    def one() -> None: ...

    with pytest.raises(ValueError, match="already registered"):
        @app.task(name="dup")
        def two() -> None: ...


def test_add_task_returns_new_record_and_get_finds_it(app: QueueTasks) -> None:
    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    task = add.add_task(1, 2)
    assert task is not None and task.status == "new" and task.task_name == "add" and task.args == (1, 2)
    stored = app.get(task.uuid)
    assert stored is not None and stored.status == "new" and stored.uuid == task.uuid
    assert app.get(str(task.uuid)) is not None
    assert app.get(uuid.uuid4()) is None
    with WorkerThread(app):
        done = app.wait(task.uuid, 10)
    assert done is not None and done.status == "success" and done.returning == 3
    assert done.worker_id == "test-0" and done.updated_at >= done.created_at


def test_wait_with_timeout_returns_finished_task(app: QueueTasks) -> None:
    @app.task
    async def mul(a: int, b: int) -> int:
        await asyncio.sleep(0.01)
        return a * b

    with WorkerThread(app):
        task = mul.add_task(6, 7, timeout=10)
        assert task is not None and task.status == "success" and task.returning == 42
        assert app.add_task("mul", 2, 3, timeout=10).returning == 6  # type: ignore[union-attr]


def test_wait_runs_out_returns_none(app: QueueTasks) -> None:
    @app.task
    def never() -> None: ...

    assert never.add_task(timeout=0.3) is None  # no worker is running


def test_argument_validation_at_enqueue(app: QueueTasks) -> None:
    @app.task
    def typed(a: int, name: str = "x") -> str:
        return name * a

    with pytest.raises(TaskArgumentsError, match=r"typed.*\$\.a"):
        typed.add_task("not an int")
    with pytest.raises(TaskArgumentsError, match="missing a required argument"):
        typed.add_task()
    with pytest.raises(TaskArgumentsError, match="unexpected keyword"):
        typed.add_task(1, nope=2)


def test_worker_validates_arguments_from_name_only_producers(app: QueueTasks, redis_url: str, app_name: str) -> None:
    @app.task
    def typed(a: int) -> int:
        return a

    producer = QueueTasks(app_name, broker_url=redis_url)  # knows no tasks: enqueues by name
    bad = producer.add_task("typed", "zzz")
    good = producer.add_task("typed", 5)
    with WorkerThread(app):
        bad_done = app.wait(bad.uuid, 10)  # type: ignore[union-attr]
        good_done = app.wait(good.uuid, 10)  # type: ignore[union-attr]
    assert bad_done is not None and bad_done.status == "error"
    assert "Expected `int`, got `str`" in (bad_done.traceback or "")
    assert good_done is not None and good_done.returning == 5


def test_echo_task_gets_context_and_can_cancel(app: QueueTasks) -> None:
    @app.task(echo=True)
    def echo(self, what: str) -> str:  # type: ignore[no-untyped-def]
        if what == "cancel":
            self.ctx.cancel("not today")
        meta = self.ctx.get_metadata()
        self.ctx.get_logger().info("running")
        return f"{self.ctx.task_uuid}:{meta.task_name}:{meta.status}"

    with WorkerThread(app):
        ok = echo.add_task("x", timeout=10)
        cancelled = echo.add_task("cancel", timeout=10)
    assert ok is not None and ok.returning == f"{ok.uuid}:echo:process"
    assert cancelled is not None and cancelled.status == "cancel" and cancelled.traceback == "not today"


def test_generators_pass_each_value_through_generate_handler(app: QueueTasks) -> None:
    async def double(v: int) -> int:
        return v * 2

    @app.task(generate_handler=double)
    async def agen(n: int):  # type: ignore[no-untyped-def]
        for i in range(n):
            yield i

    @app.task(generate_handler=lambda v: v + 100)
    def sgen(n: int):  # type: ignore[no-untyped-def]
        yield from range(n)

    with WorkerThread(app):
        assert agen.add_task(4, timeout=10).returning == [0, 2, 4, 6]  # type: ignore[union-attr]
        assert sgen.add_task(3, timeout=10).returning == [100, 101, 102]  # type: ignore[union-attr]


def test_retry_chain_links_and_wait_follows_it(app: QueueTasks) -> None:
    attempts: list[int] = []

    @app.task(retry=2)
    def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise RuntimeError(f"attempt {len(attempts)}")
        return "finally"

    with WorkerThread(app):
        first = flaky.add_task()
        final = app.wait(first.uuid, 10)  # type: ignore[union-attr]
    assert final is not None and final.status == "success" and final.returning == "finally"
    assert len(attempts) == 3
    parent = app.get(first.uuid)  # type: ignore[union-attr]
    assert parent is not None and parent.status == "error" and "attempt 1" in (parent.traceback or "")
    child = app.get(parent.retry_child_uuid)  # type: ignore[arg-type]
    assert child is not None and child.retry_parent_uuid == parent.uuid and child.retry_child_uuid is not None
    assert final.retry_parent_uuid == child.uuid


def test_retry_on_exc_only_retries_listed_exceptions(app: QueueTasks) -> None:
    @app.task(retry=3, retry_on_exc=[LookupError])
    def picky(kind: str) -> None:
        raise {"key": KeyError, "value": ValueError}[kind]("x")

    with WorkerThread(app):
        key = picky.add_task("key")
        value = picky.add_task("value")
        assert app.wait(key.uuid, 10).status == "error"  # type: ignore[union-attr]
        assert app.wait(value.uuid, 10).status == "error"  # type: ignore[union-attr]
    assert app.get(key.uuid).retry_child_uuid is not None  # type: ignore[union-attr]  # KeyError is a LookupError
    assert app.get(value.uuid).retry_child_uuid is None  # type: ignore[union-attr]


def test_max_time_times_out_async_and_sync_tasks(app: QueueTasks) -> None:
    @app.task(max_time=0.2)
    async def slow_async() -> None:
        await asyncio.sleep(5)

    @app.task(max_time=0.2)
    def slow_sync() -> None:
        import time

        time.sleep(1)

    with WorkerThread(app):
        a = slow_async.add_task(timeout=10)
        s = slow_sync.add_task(timeout=10)
    assert a is not None and a.status == "error" and "max_time=0.2" in (a.traceback or "")
    assert s is not None and s.status == "error" and "max_time=0.2" in (s.traceback or "")


def test_unserializable_result_is_an_error_not_a_crash(app: QueueTasks) -> None:
    @app.task
    def weird() -> object:
        return object()

    @app.task
    def fine() -> int:
        return 1

    with WorkerThread(app):
        w = weird.add_task(timeout=10)
        f = fine.add_task(timeout=10)
    assert w is not None and w.status == "error" and "not serializable" in (w.traceback or "")
    assert f is not None and f.returning == 1


def test_payload_over_limit_is_refused_at_enqueue(redis_url: str, app_name: str) -> None:
    app = QueueTasks(app_name, broker_url=redis_url, config=GlobalConfig(max_payload=1000))

    @app.task
    def eat(data: str) -> int:
        return len(data)

    with pytest.raises(PayloadTooLarge, match="over the 1000 byte limit"):
        eat.add_task("x" * 2000)
    assert eat.add_task("x" * 10) is not None


def test_priority_past_the_levels_runs_at_the_end_level(app: QueueTasks) -> None:
    """QTasks takes any int (review 11 finding 2): past an end of 0..9 it shares that end; tests/qtasks_compat/
    test_priority_range.py has the ordering and the warning."""
    @app.task
    def t() -> None: ...

    assert t.add_task(priority=10).priority == 9
    assert t.add_task(priority=-1).priority == 0
    with pytest.raises(TypeError, match="priority of task '.*' must be an int"):
        t.add_task(priority="high")


def test_decode_option_applies_to_returning(app: QueueTasks) -> None:
    @app.task(decode=lambda v: tuple(v))
    def pair() -> list[int]:
        return [1, 2]

    with WorkerThread(app):
        assert pair.add_task(timeout=10).returning == (1, 2)  # type: ignore[union-attr]


def test_bulk_enqueue_and_priorities(app: QueueTasks) -> None:
    order: list[int] = []

    @app.task(executor="inline")
    def record(i: int) -> None:
        order.append(i)

    # a backlog where the least urgent work was queued first
    late = app.add_task("record", 1000, priority=9)
    app.add_task("record", 500, priority=5)
    for t in app.add_tasks([record.s(i) for i in range(10)]):
        assert t.status == "new"
    with WorkerThread(app, concurrency=1):
        app.wait(late.uuid, 10)  # type: ignore[union-attr]
    assert order == [*range(10), 500, 1000]  # lower number first, FIFO within a level


async def test_async_client(redis_url: str, app_name: str) -> None:
    app = AsyncQueueTasks(app_name, broker_url=redis_url)

    @app.task
    async def hello(name: str) -> str:
        return f"hello {name}"

    with WorkerThread(app):
        new = await app.add_task("hello", "bob")
        assert new is not None and new.status == "new"
        done = await app.wait(new.uuid, 10)
        assert done is not None and done.returning == "hello bob"
        got = await app.get(new.uuid)
        assert got is not None and got.status == "success"
        many = await app.add_tasks([hello.s(str(i)) for i in range(50)])
        results = await asyncio.gather(*(app.wait(t.uuid, 10) for t in many))
        assert [r.returning for r in results] == [f"hello {i}" for i in range(50)]  # type: ignore[union-attr]
        direct = await hello.add_task("amy", timeout=10)
        assert direct.returning == "hello amy"


def test_waits_longer_than_a_socket_timeout(app: QueueTasks) -> None:
    @app.task
    async def slow() -> str:
        await asyncio.sleep(6)  # longer than redis-py's default 5 s socket timeout
        return "done"

    with WorkerThread(app):
        task = slow.add_task(timeout=20)
    assert task is not None and task.returning == "done"


async def test_hundreds_of_concurrent_async_waiters(redis_url: str, app_name: str) -> None:
    app = AsyncQueueTasks(app_name, broker_url=redis_url)

    @app.task
    async def twice(x: int) -> int:
        await asyncio.sleep(0.05)
        return 2 * x

    with WorkerThread(app):
        done = await asyncio.gather(*(twice.add_task(i, timeout=30) for i in range(300)))
    assert [t.returning for t in done] == [2 * i for i in range(300)]  # type: ignore[union-attr]


def test_concurrency_limits_running_tasks_while_prefetching(app: QueueTasks) -> None:
    import threading

    running = 0
    peak = 0
    lock = threading.Lock()

    @app.task
    async def hold() -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        await asyncio.sleep(0.05)
        with lock:
            running -= 1

    with WorkerThread(app, concurrency=3):
        tasks = app.add_tasks([hold.s() for _ in range(30)])
        assert all(app.wait(t.uuid, 20).status == "success" for t in tasks)  # type: ignore[union-attr]
    assert peak == 3
