"""Task records in Redis hashes (``P:t:<uuid>``), written by the broker's Lua in the same round trips.

``wait`` blocks on a per-task reply list (BLPOP) that the settle step pushes to
only for records someone awaits (field ``w``), so nobody polls and unawaited
tasks pay nothing for it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import msgspec
import redis

from qtasks_fast.abc.storage import Storage
from qtasks_fast.backends.redis.connection import RedisConnection
from qtasks_fast.backends.redis.errors import at_boundary, outage
from qtasks_fast.backends.redis.query import RedisQueries
from qtasks_fast.backends.redis.records import encode_record, parse_record, parse_record_blob, parse_reply, record_parts
from qtasks_fast.backends.redis.script import Call, Script, queue_prefix
from qtasks_fast.schemas import Envelope, Task
from qtasks_fast.steps import Steps, run, run_sync
from qtasks_fast.url import redact

if TYPE_CHECKING:
    from qtasks_fast.abc.broker import Delivery, Outcome

__all__ = ["RedisStorage", "encode_record", "parse_record", "parse_record_blob", "parse_reply", "record_parts"]


@at_boundary
class RedisStorage(RedisQueries, Storage):
    """Records next to the streams; pass the broker's ``conn`` to fuse writes into its round trips."""

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", *, app_name: str = "QueueTasks",
                 connection: RedisConnection | None = None, result_ttl: float = 86400.0,
                 priority_levels: int = 10) -> None:
        self.url = url
        self.conn = connection or RedisConnection(url)
        self.script = Script(self.conn, app_name)
        self.app_name = app_name
        self.result_ttl = result_ttl
        #: the broker's priority levels: which streams the query side reads running tasks from
        self.priority_levels = priority_levels
        if self.conn.storage is None:  # the broker's producer-side control ops keep these records in step
            self.conn.storage = self

    def __repr__(self) -> str:
        return f"RedisStorage({redact(self.url)!r}, app={self.app_name!r})"

    @contextlib.contextmanager
    def _reachable(self) -> Iterator[None]:
        """A caller's reads raise ``BrokerUnavailable`` (naming the redacted URL and what to do) when Redis
        cannot be reached or does not answer within the read timeout (``BrokerFull`` when a 'watch' meets a
        Redis at maxmemory), not redis-py's own errors."""
        try:
            yield
        except redis.RedisError as exc:
            raise outage(self.url, exc) from exc

    def _key(self, queue: str, uuid: str) -> str:
        return self.script.record_key(queue, uuid)

    # Writes happen inside RedisBroker's Lua when broker and storage share a connection.
    # These direct writes serve a foreign broker paired with this storage.
    async def create(self, envelopes: Sequence[Envelope], wait: bool = False) -> None:
        await self._creating(envelopes)

    def create_sync(self, envelopes: Sequence[Envelope], wait: bool = False) -> None:
        self._creating(envelopes).sync()

    def _creating(self, envelopes: Sequence[Envelope]) -> Call[list[Any]]:
        """The ``new`` records' writes, one pipeline (``BrokerFull`` at maxmemory)."""
        now = int(time.time() * 1000)
        return self.script.pipeline([("SET", self._key(env.queue, env.uuid),
                                      encode_record(msgspec.msgpack.encode(env), "new", now)) for env in envelopes])

    async def mark_started(self, deliveries: Sequence[Delivery], worker_id: str) -> None:
        now = int(time.time() * 1000)
        pipe = self.conn.aio.pipeline(transaction=False)
        for d in deliveries:
            record = encode_record(d.raw, "process", now, worker=worker_id, deliveries=d.deliveries or 1)
            pipe.set(self._key(d.queue, d.envelope.uuid), record)
        await pipe.execute()

    async def save(self, outcomes: Sequence[Outcome], worker_id: str) -> None:
        now = int(time.time() * 1000)
        ttl = int(self.result_ttl * 1000)
        pipe = self.conn.aio.pipeline(transaction=False)
        for d, status, ret, tb, child in outcomes:
            env = d.envelope
            record = encode_record(d.raw, status, now, ret, worker_id, tb, child, d.deliveries or 1)
            pipe.set(self._key(d.queue, env.uuid), record, px=ttl)
            reply = self._reply_key(d.queue, env.uuid)
            pipe.rpush(reply, record)
            pipe.pexpire(reply, ttl)
        await pipe.execute()

    # ------------------------------------------------------------------ reads
    # Each read is written once, as steps (qtasks_fast.steps) that run() drives on the async client and run_sync()
    # on the blocking one: the same calls, the same error mapping (BrokerUnavailable), the same answers.
    def _lookup(self, uuid: str, queues: Sequence[str], watch: bool = False) -> Steps[tuple[Task, str] | None]:
        """Script.get (Script.watch: also mark it awaited) finds a task whether it is queued, running or final."""
        lookup = self.script.watch if watch else self.script.get
        for q in queues:
            task = parse_record((yield lookup(q, uuid)), q)
            if task is not None:
                return task, q
        return None

    def _getting(self, uuid: str, queues: Sequence[str]) -> Steps[Task | None]:
        found = yield from self._lookup(uuid, queues)
        return found[0] if found else None

    async def get(self, uuid: str, queues: Sequence[str]) -> Task | None:
        return await run(self._getting(uuid, queues))

    def get_sync(self, uuid: str, queues: Sequence[str]) -> Task | None:
        return run_sync(self._getting(uuid, queues))

    def _waiting(self, uuid: str, queues: Sequence[str], timeout: float, fresh: bool) -> Steps[Task | None]:
        """Look the task up (marking it awaited), then BLPOP its reply list (in slices shorter than the read
        timeout, see ``RedisConnection.wait_slice``), which the settle step fills with the final record; a
        retry chain is followed to its last attempt."""
        deadline = time.monotonic() + timeout
        while True:
            task, queue = None, queues[0]
            if not fresh:  # fresh: enqueued by this caller with wait=True, so surely not final yet
                found = yield from self._lookup(uuid, queues, watch=True)
                if found is None:
                    return None
                task, queue = found
            if task is None or not task.finished:
                left = deadline - time.monotonic()
                res: Any = None
                for step in self.conn.slices(left) if left > 0 else ():
                    res = yield self.script.command("BLPOP", self.script.reply_key(queue, uuid), f"{step:.3f}",
                                                    via="direct")
                    if res is not None:
                        break
                task = parse_reply(res[1], queue) if res else None
                if task is None:
                    task = yield from self._getting(uuid, [queue])
            if task is not None and task.status == "error" and task.retry_child_uuid and \
                    time.monotonic() < deadline:
                uuid, queues, fresh = str(task.retry_child_uuid), [queue], False  # follow the retry chain
                continue
            return task

    async def wait(self, uuid: str, queues: Sequence[str], timeout: float, fresh: bool = False) -> Task | None:
        return await run(self._waiting(uuid, queues, timeout, fresh))

    def wait_sync(self, uuid: str, queues: Sequence[str], timeout: float, fresh: bool = False) -> Task | None:
        return run_sync(self._waiting(uuid, queues, timeout, fresh))

    async def delete_finished(self, queues: Sequence[str]) -> int:
        """SCAN each queue's ``P:t:*`` (a record exists there only once its task is final) and delete those
        records with their logs and query-side index entries (P:x). Start-up only (``delete_finished_tasks``):
        a SCAN walks the whole keyspace, which is why no hot path ever does this."""
        gone = 0
        for queue in queues:
            prefix = queue_prefix(self.app_name, queue)
            pattern = "".join("\\" + c if c in "*?[]\\" else c for c in f"{prefix}:t:") + "*"
            with self._reachable():
                async for key in self.conn.aio.scan_iter(match=pattern, count=1000):
                    uuid = key.decode().rsplit(":", 1)[1]
                    blob: Any = await self.conn.aio.get(key)
                    task = parse_record_blob(blob, queue) if blob else None
                    pipe = self.conn.aio.pipeline(transaction=False)
                    pipe.delete(key, self._logs_key(queue, uuid))
                    if task is not None:
                        pipe.zrem(f"{prefix}:x:n:{task.task_name}", uuid)
                        pipe.zrem(f"{prefix}:x:f:{task.status}:{task.task_name}", uuid)
                    gone += 1 if (await pipe.execute())[0] else 0
        return gone

    # ------------------------------------------------------------------ logs
    # P:lg:<uuid>: a list of captured lines, expiring with the record (result_ttl).
    def _logs_key(self, queue: str, uuid: str) -> str:
        return self.script.logs_key(queue, uuid)

    async def append_logs(self, uuid: str, queue: str, lines: Sequence[str]) -> None:
        if not lines:
            return
        key = self._logs_key(queue, uuid)
        pipe = self.conn.aio.pipeline(transaction=False)
        pipe.rpush(key, *lines)
        pipe.pexpire(key, int(self.result_ttl * 1000))
        await pipe.execute()

    def _logs(self, uuid: str, queue: str) -> Call[list[str]]:
        return self.script.command("LRANGE", self._logs_key(queue, uuid), 0, -1,
                                   parse=lambda raw: [b.decode("utf-8", "replace") for b in raw])

    async def get_logs(self, uuid: str, queue: str) -> list[str]:
        return await self._logs(uuid, queue)

    def get_logs_sync(self, uuid: str, queue: str) -> list[str]:
        return self._logs(uuid, queue).sync()

    def _reply_key(self, queue: str, uuid: str) -> str:
        return self.script.reply_key(queue, uuid)

    async def close(self) -> None:
        await self.conn.aclose()

    def close_sync(self) -> None:
        self.conn.close_sync()
