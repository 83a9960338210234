"""The wire format and the dispatch core: compiled and pure-Python cores behave the same."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import msgspec
import pytest

from qtasks_fast import _corelib
from qtasks_fast._corelib import _load_source
from qtasks_fast.backends.redis import pack
from qtasks_fast.schemas import Envelope
from qtasks_fast.url import redact


def test_envelope_tolerates_unknown_fields() -> None:
    newer = msgspec.msgpack.encode({"u": "id-1", "n": "add", "a": [1, 2], "zz_future_field": {"x": 1}})
    env = msgspec.msgpack.Decoder(Envelope).decode(newer)
    assert env.task_name == "add" and env.args == [1, 2] and env.kwargs == {}


def test_the_installed_core_is_compiled_unless_pure_python_is_asked_for() -> None:
    out = subprocess.run([sys.executable, "-m", "qtasks_fast", "info", "--json"], capture_output=True, text=True,
                         check=True, env={k: v for k, v in os.environ.items() if k != "QTASKS_PURE_PYTHON"})
    info = json.loads(out.stdout)
    assert info["compiled_core"] is True and info["core_module"].endswith(".so")
    assert set(info["compiled_modules"]) == {"qtasks_fast._core", "qtasks_fast.backends.redis._pack",
                                             "qtasks_fast.worker._run"}
    assert all(info["compiled_modules"].values())
    assert _corelib.COMPILED is True
    pure = subprocess.run([sys.executable, "-m", "qtasks_fast", "info", "--json"], capture_output=True, text=True,
                          check=True, env={**os.environ, "QTASKS_PURE_PYTHON": "1"})
    assert json.loads(pure.stdout)["compiled_core"] is False
    assert not any(json.loads(pure.stdout)["compiled_modules"].values())


def _batch(n: int) -> list[object]:
    flat: list[object] = []
    for i in range(n):
        env = Envelope(uuid=str(uuid.UUID(int=i)), task_name="add" if i % 3 else "nope", args=[i, i])
        flat += [0, f"{i}-0".encode(), msgspec.msgpack.encode(env), 1]
    flat += [0, b"99-0", b"\xc1garbage", 1, 0, b"99-1", b"x" * 300, 2]
    return flat


def test_compiled_and_pure_cores_agree() -> None:
    pure = _load_source(Path(_corelib.__file__).with_name("_core.pyx"), "core_py")
    pure_pack = _load_source(Path(pack.__file__).with_name("_pack.pyx"), "pack_py")
    assert _corelib.COMPILED and pack.COMPILED, "the installed core and the Redis packing are compiled"
    handlers = {"add": object()}
    results = []
    for core, packing in ((_corelib.core, pack), (pure, pure_pack)):
        ready: list = []
        bad: list = []
        core.decode_batch("default", _batch(30), handlers, 200, ready, bad)
        outcomes = [(d, "success", core.encode(d.envelope.args[0] * 2), "", "") for d in ready]
        packed = packing.settle_args(outcomes, True, "w-0", "1")
        results.append(([d.envelope.uuid for d in ready], [(d.msg_id, r[:40]) for d, r in bad],
                        len(packed["default"][0])))
    assert results[0] == results[1]
    ready_uuids, bad, _ = results[0]
    assert len(ready_uuids) == 20  # 30 tasks, every third one unknown
    reasons = dict(bad)
    assert reasons[b"99-0"].startswith("malformed message")
    assert reasons[b"99-1"].startswith("payload of 300 bytes exceeds")
    assert reasons[b"0-0"].startswith("unknown task 'nope'")


def test_compiled_and_pure_cores_accept_the_same_uuids() -> None:
    """Compiled, each uuid is checked by a C loop over its characters; as Python, the batch in one pass: the same
    canonical UUIDs (any case) run, every other string is dead-lettered for its uuid, in the same order."""
    pure = _load_source(Path(_corelib.__file__).with_name("_core.pyx"), "core_uuid_py")
    good = str(uuid.UUID(int=7))
    uuids = [good, good.upper(), good[:8] + "_" + good[9:], good[:-1] + "g", good[:-1], good + "0", "../../x",
             "é" * 36, good.replace("-", ""), "-" * 36, str(uuid.UUID(int=8)), good[:-1] + "\x00"]
    flat: list[object] = []
    for i, u in enumerate(uuids):
        flat += [0, f"{i}-0".encode(), msgspec.msgpack.encode(Envelope(uuid=u, task_name="t")), 1]
    results = []
    for core in (_corelib.core, pure):
        ready: list = []
        bad: list = []
        core.decode_batch("default", flat, {"t": object()}, 1 << 20, ready, bad)
        results.append(([d.envelope.uuid for d in ready], [(d.msg_id, reason) for d, reason in bad]))
    assert results[0] == results[1]
    assert results[0][0] == [good, good.upper(), str(uuid.UUID(int=8))]
    assert all("is not a canonical UUID" in reason for _, reason in results[0][1]) and len(results[0][1]) == 9


def test_new_uuid_is_a_valid_unique_v4() -> None:
    seen = set()
    for _ in range(5000):
        u, s = _corelib.new_uuid()
        assert u.version == 4 and str(u) == s and uuid.UUID(s) == u
        seen.add(s)
    assert len(seen) == 5000


def test_new_uuid_differs_across_fork() -> None:
    r, w = os.pipe()
    _corelib.new_uuid()  # fill the pool in the parent
    pid = os.fork()
    if pid == 0:
        os.write(w, _corelib.new_uuid()[1].encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(r, 64).decode()
    assert child != _corelib.new_uuid()[1]


def test_redact_hides_passwords() -> None:
    assert redact("redis://user:secret@host:6379/0") == "redis://user:***@host:6379/0"
    assert redact("rediss://:secret@host/1?ssl_cert_reqs=none") == "rediss://:***@host/1?ssl_cert_reqs=none"
    assert redact("redis://host:6379/0") == "redis://host:6379/0"


def _msgpack_str(b: bytes) -> msgspec.Raw:
    """``b`` as a msgpack str, its header made by msgspec (the reference the hand-written packing must match)."""
    same_size = msgspec.msgpack.encode("a" * len(b))
    return msgspec.Raw(same_size[:len(same_size) - len(b)] + b)


def test_settle_and_enqueue_arguments_are_the_msgpack_of_their_lists() -> None:
    """The Lua ``settle``/``enqueue`` ops read these bytes with cmsgpack: the per-queue buffers written byte by
    byte must be exactly msgspec's encoding of ``[prio, id, uuid, status, record]*`` / ``[prio, uuid, name,
    blob, wait]*``, across the array and str header sizes (fix/16/32 bit arrays, fix/8/16/32 bit strs)."""
    pure_pack = _load_source(Path(pack.__file__).with_name("_pack.pyx"), "pack_py")
    core = _corelib.core
    for n in (1, 3, 4, 40):
        flat: list[object] = []
        envs = []
        for i in range(n):
            env = Envelope(uuid=str(uuid.UUID(int=i + 1)), task_name="t" * (1 + i * 37 % 300), args=[i],
                           priority=(0, 127, 200, -1)[i % 4], meta={"rw": 1} if i % 3 == 0 else {})
            envs.append(env)
            flat += [env.priority, f"{i}-0".encode(), msgspec.msgpack.encode(env), 1]
        ready: list = []
        core.decode_batch("default", flat, {e.task_name: object() for e in envs}, 1 << 20, ready, [])
        assert len(ready) == n
        sizes = (0, 31, 32, 255, 256, 65535, 65536, 70000)
        outcomes = [(d, ("success", "error")[i % 2], b"x" * sizes[i % len(sizes)], "", "")
                    for i, d in enumerate(ready)]
        blobs = [b"b" * sizes[(i + 3) % len(sizes)] for i in range(n)]
        for packing in (pack, pure_pack):
            settled = packing.settle_args(outcomes, True, "w-0", "1700000000000")["default"]
            expect: list[object] = []
            early: list[object] = []
            counts: dict[str, int] = {}
            for i, (d, o) in enumerate(zip(ready, outcomes, strict=True)):
                record = msgspec.msgpack.encode((d.raw, o[1], "1700000000000", o[2], "w-0", "", "", 1,
                                                 int(d.fetched * 1000)))
                expect += [d.prio, _msgpack_str(d.msg_id), d.envelope.uuid, _msgpack_str(record)]
                counts[o[1]] = counts.get(o[1], 0) + 1
                if i % 3 == 0:
                    early += [d.envelope.uuid, record]
            expect.append({k: str(v) for k, v in counts.items()})  # the batch's {status: "tasks"}, after them
            assert settled[0] == msgspec.msgpack.encode(expect), (n, packing)
            assert msgspec.msgpack.decode(settled[2]) == [i for i in range(n) if i % 3 == 0]
            assert settled[3] == early, (n, packing)  # the records pushed to awaiting producers, as stored
            enqueued = packing.enqueue_args(envs, blobs, "0")["default"]
            expect = []
            for env, blob in zip(envs, blobs, strict=True):
                expect += [env.priority, env.uuid, _msgpack_str(blob)]
            expect.append("0")  # the wait flag, once per call
            assert enqueued[0] == msgspec.msgpack.encode(expect), (n, packing)


def test_the_pure_python_core_runs_without_cython_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cython is a build dependency only: the fallback reads the ``cython`` names from qtasks_fast._cyshim."""
    monkeypatch.setitem(sys.modules, "cython", None)  # import cython -> ImportError, as on a machine without it
    core = _load_source(Path(_corelib.__file__).with_name("_core.pyx"), "core_nocy")
    packing = _load_source(Path(pack.__file__).with_name("_pack.pyx"), "pack_nocy")
    assert core.cython.__name__ == "qtasks_fast._cyshim" and packing.cython.__name__ == "qtasks_fast._cyshim"
    from qtasks_fast.worker import eager

    run = _load_source(Path(eager.__file__).with_name("_run.pyx"), "run_nocy")
    assert run.cython.__name__ == "qtasks_fast._cyshim"
    env = Envelope(uuid="00000000-0000-0000-0000-000000000001", task_name="add", args=[1, 2])
    ready: list = []
    bad: list = []
    core.decode_batch("default", [0, b"1-0", msgspec.msgpack.encode(env), 1], {"add": 1}, 1000, ready, bad)
    d = ready[0]
    assert not bad and d.envelope.args == [1, 2] and d.handler == 1 and d.started == 0.0 and d.fetched > 0
    packed = packing.settle_args([(d, "success", b"\xc0", "", "")], True, "w", "1")["default"][0]
    head = b"".join(msgspec.msgpack.encode(x) for x in (0, "1-0", env.uuid))
    assert packed[0] == 0x95 and packed[1:].startswith(head)  # an array of 5: prio, id, uuid, record, then
    assert packed.endswith(msgspec.msgpack.encode({"success": "1"}))  # the batch's {status: "tasks"}


def test_a_raw_stream_read_is_flattened_alike_by_both_cores() -> None:
    """``add_entries`` reads field ``d`` of our ``[u, uuid, d, envelope]`` entries, another writer's order and
    extras by name, and gives b"" (dead-lettered as malformed) to an entry without both fields or deleted
    under a pending read (nil fields)."""
    pure = _load_source(Path(_corelib.__file__).with_name("_core.pyx"), "core_py")
    entries = [[b"1-0", [b"u", b"x", b"d", b"A"]], [b"1-1", None], [b"1-2", [b"x", b"1", b"d", b"B", b"u", b"y"]],
               [b"1-3", [b"d", b"C"]], [b"1-4", []]]
    for core in (_corelib.core, pure):
        flat: list[object] = [9]
        assert core.add_entries(flat, 2, entries) == 5
        assert flat == [9, 2, b"1-0", b"A", 1, 2, b"1-1", b"", 1, 2, b"1-2", b"B", 1, 2, b"1-3", b"", 1,
                        2, b"1-4", b"", 1]


def test_the_event_feeds_json_is_msgspecs_of_the_event_compiled_and_pure() -> None:
    """``pack.event_json`` turns a ``P:ev`` entry straight into each event's JSON (no ``TaskEvent``): byte for byte
    ``msgspec.json.encode`` of the event ``RedisQueries.events`` builds, for odd names, queues and workers (quotes,
    backslashes, control characters, non-ASCII, an empty worker: null), from any index, up to any limit, and past
    the entry size its fast path covers."""
    from qtasks_fast.abc.query import TaskEvent

    pure_pack = _load_source(Path(pack.__file__).with_name("_pack.pyx"), "pack_py")
    odd = ['ad"d', "a\\b", "é\n\x01\x1f\x7f", "</script>", "", "w-0", "\u2028", "x" * 300]
    for n in (1, 3, 4100):
        items = []
        for i in range(n):
            items += [str(uuid.UUID(int=i)), ("new", "process", "success")[i % 3], odd[i % 8], odd[(i + 3) % 8]]
        payload = msgspec.msgpack.encode(items)
        for queue in ("default", 'q"\\ü'):
            for first, limit in ((0, 10**6), (1, 2), (n - 1, 5), (n, 3)):
                want_ids = [f"1700000000123-7.{j}.{queue}" for j in range(first, min(n, first + limit))]
                want = [msgspec.json.encode(TaskEvent(
                    id=want_ids[k], uuid=items[4 * j], task_name=items[4 * j + 2], queue=queue,
                    status=items[4 * j + 1], at=1700000000123 / 1000, worker_id=items[4 * j + 3] or None))
                    for k, j in enumerate(range(first, min(n, first + limit)))]
                for packing in (pack, pure_pack):
                    ids: list[str] = []
                    data: list[bytes] = []
                    got = packing.event_json(payload, 1700000000123, 7, queue, msgspec.json.encode(queue), first,
                                             limit, ids, data)
                    assert (got, ids, data) == (len(want), want_ids, want), (n, queue, first, packing)


def test_sse_frames_from_json_are_the_frames_of_the_events() -> None:
    """What the web server's feed sends (``encode_raw`` of ids and JSON) is byte for byte what it sent when it
    encoded each event object (``encode_events``): a browser's ``Last-Event-ID`` resume and parsing are unchanged."""
    from qtasks_fast.abc.query import TaskEvent
    from qtasks_fast.web.sse import encode_events, encode_raw

    events = [TaskEvent(id=f"17-{i}.{i}.q\u00fc", uuid=str(uuid.UUID(int=i)), task_name=('a"\\\n', "é", "t")[i % 3],
                        queue="q\u00fc", status="new", at=17.5 + i, worker_id=(None, "w-1")[i % 2]) for i in range(7)]
    assert encode_raw([e.id for e in events], [msgspec.json.encode(e) for e in events]) == encode_events(events)
    assert encode_raw([], []) == b""


def test_the_workers_run_loop_compiled_and_pure_agree() -> None:
    """``worker/_run.pyx`` (the eager runner's per-task loop) compiled and as Python: the same outcomes, the same
    path for each kind of end, each task's first step in its own context with ``current_task`` set to it."""
    import asyncio
    import collections
    import contextvars

    from qtasks_fast.log import current_task
    from qtasks_fast.worker import eager

    assert eager.COMPILED, "the installed worker loop is compiled"
    pure = _load_source(Path(eager.__file__).with_name("_run.pyx"), "run_py")
    leak: contextvars.ContextVar[str] = contextvars.ContextVar("leak", default="none")

    class Handler:
        def __init__(self, func: object) -> None:
            self.func, self.echo, self._validator = func, False, None

    def Job(name: str, func: object, *args: object, meta: dict[str, object] | None = None) -> Any:  # noqa: N802
        d = _corelib.Delivery("default", 0, b"1-0", b"", 1)  # what a worker hands the loop (compiled: typed there)
        d.handler = Handler(func)  # type: ignore[assignment]
        d.envelope = Envelope(uuid=str(uuid.uuid4()), task_name=name, args=list(args), meta=meta or {})
        return d

    async def double(x: int) -> int:
        leak.set("set by a task")  # in its own copy of the context: never seen by the next task
        assert current_task.get().args == [x]  # type: ignore[union-attr] - its own envelope
        return x * 2

    async def fails() -> None:
        raise ValueError("no")

    async def unencodable() -> object:
        return object()

    async def sees(out: list[str]) -> None:
        out.append(leak.get())

    async def suspends() -> int:
        await asyncio.sleep(0)
        return 1

    class Ex:
        validate = False

        def __init__(self) -> None:
            self.seen: list[tuple[str, object]] = []

        def on_done(self, outcome: tuple[object, ...], followups: object) -> None:
            self.seen.append(("on_done", (outcome[0].envelope.task_name, outcome[1],  # type: ignore[attr-defined]
                                          msgspec.msgpack.decode(outcome[2]), followups)))  # type: ignore[arg-type]

        def _finish(self, d: Any, value: object, exc: BaseException | None) -> None:
            self.seen.append(("_finish", (d.envelope.task_name, type(value).__name__, repr(exc))))

    results = []

    def one(run: Any) -> None:
        ex, seen_leak = Ex(), []  # type: ignore[var-annotated]
        jobs = collections.deque([Job("double", double, 21), Job("fails", fails), Job("odd", unencodable),
                                  Job("chained", double, 1, meta={"chain": 1}), Job("sees", sees, seen_leak),
                                  Job("suspends", suspends), Job("after", double, 2)])
        suspended = run.run_ready(jobs, ex, eager.log)
        assert suspended is not None and suspended[0].envelope.task_name == "suspends"
        assert isinstance(suspended[2], contextvars.Context) and suspended[3] is None  # sleep(0) yields None
        suspended[1].close()
        assert [j.envelope.task_name for j in jobs] == ["after"]
        assert run.run_ready(jobs, ex, eager.log) is None and not jobs
        results.append((ex.seen, seen_leak))

    for run in (eager.run_core, pure):  # the loop sets current_task in its caller's context: a copy of ours
        contextvars.copy_context().run(one, run)
    assert results[0] == results[1]
    assert results[0] == ([
        ("on_done", ("double", "success", 42, [])),
        ("_finish", ("fails", "NoneType", "ValueError('no')")),
        ("_finish", ("odd", "object", "None")),
        ("_finish", ("chained", "int", "None")),
        ("on_done", ("sees", "success", None, [])),
        ("on_done", ("after", "success", 4, [])),
    ], ["none"])



def test_the_loop_finishes_into_its_workers_typed_state_compiled_and_pure() -> None:
    """With the worker's own ``task_done`` as ``on_done`` (a ``RunState`` subclass, as ``Worker`` is), the loop
    hands each plain success to it directly: outcomes queued in order, slots freed, backlog deliveries started
    through the executor, wake-ups set; a failure still takes the executor's general path. Compiled and pure
    alike."""
    import asyncio
    import collections
    import contextvars

    from qtasks_fast.worker import eager

    pure = _load_source(Path(eager.__file__).with_name("_run.pyx"), "run_state_py")

    class Handler:
        def __init__(self, func: object) -> None:
            self.func, self.echo, self._validator = func, False, None

    async def double(x: int) -> int:
        return x * 2

    async def fails() -> None:
        raise ValueError("no")

    def delivery(n: int, func: object, *args: object) -> Any:
        d = _corelib.Delivery("default", 0, b"%d-0" % n, b"", 1)
        d.handler = Handler(func)  # type: ignore[assignment]
        d.envelope = Envelope(uuid=str(uuid.UUID(int=n + 1)), task_name=f"t{n}", args=list(args))
        return d

    seen = []
    for run in (eager.run_core, pure):
        class W(run.RunState):  # type: ignore[misc,name-defined]
            _on_done = run.task_done

        class Ex:
            validate = False

            def __init__(self, w: Any) -> None:
                self.on_done, self.started, self.failed = w._on_done, [], []

            def submit(self, d: Any) -> None:
                self.started.append(d.envelope.task_name)

            def _finish(self, d: Any, value: object, exc: BaseException | None) -> None:
                self.failed.append((d.envelope.task_name, repr(exc)))
                self.on_done((d, "error", b"", "", ""), [])

        w = W()
        w._done, w._retries, w.inflight = [], [], set()
        w.unsettled, w.active, w.concurrency, w._starting, w.stopping = 0, 3, 3, False, False
        w.leases_until = float("inf")
        w.backlog = collections.deque([delivery(9, double, 9)])
        w._done_event, w.slot_free = asyncio.Event(), asyncio.Event()
        w.executor = ex = Ex(w)
        jobs = collections.deque([delivery(0, double, 21), delivery(1, fails), delivery(2, double, 2)])
        # the loop sets current_task in its caller's context (the runner's): here a copy, not the test thread's own
        assert contextvars.copy_context().run(run.run_ready, jobs, ex, eager.log) is None
        seen.append(([(o[0].envelope.task_name, o[1], msgspec.msgpack.decode(o[2]) if o[2] else None)
                      for o in w._done], ex.failed, ex.started, w.active, w.unsettled, list(w.backlog),
                     w._done_event.is_set(), w.slot_free.is_set()))
    assert seen[0] == seen[1]
    assert seen[0] == ([("t0", "success", 42), ("t1", "error", None), ("t2", "success", 4)],
                       [("t1", "ValueError('no')")], ["t9"], 1, 3, [], True, True)


def test_a_worker_runs_async_tasks_on_the_pure_python_run_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker's per-task loop (``worker/_run.pyx``) run as Python, end to end in a worker: tasks that finish
    at once, tasks that suspend, a failure (each compiled entry point swapped for the pure twin's)."""
    import asyncio

    from qtasks_fast import QueueTasks
    from qtasks_fast.testing import WorkerThread
    from qtasks_fast.worker import eager
    from qtasks_fast.worker.executor import Executor
    from qtasks_fast.worker.worker import Worker

    pure = _load_source(Path(eager.__file__).with_name("_run.pyx"), "run_py")
    monkeypatch.setattr(eager, "run_core", pure)
    monkeypatch.setattr(eager.EagerRunners, "submit", pure.queue_job)
    monkeypatch.setattr(Executor, "submit", pure.submit)
    monkeypatch.setattr(Worker, "start_more", pure.start_more)
    monkeypatch.setattr(Worker, "_on_done", pure.task_done)
    app = QueueTasks("pure_run", broker_url="memory://")

    @app.task(name="double")
    async def double(x: int) -> int:
        return x * 2

    @app.task(name="later")
    async def later(x: int) -> int:
        await asyncio.sleep(0.01)
        return x + 1

    @app.task(name="boom")
    async def boom() -> None:
        raise ValueError("no")

    with WorkerThread(app, concurrency=4):
        sent = [app.add_task("double", i) for i in range(20)] + [app.add_task("later", i) for i in range(5)]
        failed = app.add_task("boom", timeout=10)
        done = [app.wait(str(t.uuid), 10) for t in sent]
    assert [t.returning for t in done] == [i * 2 for i in range(20)] + [i + 1 for i in range(5)]  # type: ignore[union-attr]
    assert failed is not None and failed.status == "error" and "ValueError: no" in (failed.traceback or "")
