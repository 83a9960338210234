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
from qtasks_fast.backends.redis.broker import RedisConnection, queue_prefix
from qtasks_fast.backends.redis.errors import at_boundary, outage
from qtasks_fast.backends.redis.query import RedisQueries
from qtasks_fast.backends.redis.records import encode_record, parse_record, parse_record_blob, parse_reply, record_parts
from qtasks_fast.schemas import Envelope, Task
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
        return f"{queue_prefix(self.app_name, queue)}:t:{uuid}"

    # Writes happen inside RedisBroker's Lua when broker and storage share a connection.
    # These direct writes serve a foreign broker paired with this storage.
    async def create(self, envelopes: Sequence[Envelope], wait: bool = False) -> None:
        pipe = self.conn.aio.pipeline(transaction=False)
        self._create_cmds(pipe, envelopes, wait)
        with self._reachable():  # BrokerFull at maxmemory
            await pipe.execute()

    def create_sync(self, envelopes: Sequence[Envelope], wait: bool = False) -> None:
        pipe = self.conn.sync.pipeline(transaction=False)
        self._create_cmds(pipe, envelopes, wait)
        with self._reachable():
            pipe.execute()

    def _create_cmds(self, pipe: Any, envelopes: Sequence[Envelope], wait: bool) -> None:
        now = int(time.time() * 1000)
        for env in envelopes:
            pipe.set(self._key(env.queue, env.uuid), encode_record(msgspec.msgpack.encode(env), "new", now))

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
    # The Lua ops 'get' and 'watch' find a task whether it is queued, running or final.
    async def _lookup(self, op: str, uuid: str, queues: Sequence[str]) -> tuple[Task, str] | None:
        with self._reachable():
            for q in queues:
                res = await self.conn.acall(queue_prefix(self.app_name, q), op, True, self.app_name, uuid)
                if res and (task := parse_record(dict(zip(res[::2], res[1::2])), q)) is not None:
                    return task, q
        return None

    def _lookup_sync(self, op: str, uuid: str, queues: Sequence[str]) -> tuple[Task, str] | None:
        with self._reachable():
            for q in queues:
                res = self.conn.call(queue_prefix(self.app_name, q), op, True, self.app_name, uuid)
                if res and (task := parse_record(dict(zip(res[::2], res[1::2])), q)) is not None:
                    return task, q
        return None

    async def get(self, uuid: str, queues: Sequence[str]) -> Task | None:
        found = await self._lookup("get", uuid, queues)
        return found[0] if found else None

    def get_sync(self, uuid: str, queues: Sequence[str]) -> Task | None:
        found = self._lookup_sync("get", uuid, queues)
        return found[0] if found else None

    # wait: look the task up (marking it awaited), then block on its reply list, which the settle
    # step fills with the final record; a retry chain is followed to its last attempt.
    async def wait(self, uuid: str, queues: Sequence[str], timeout: float, fresh: bool = False) -> Task | None:
        deadline = time.monotonic() + timeout
        while True:
            task, queue = None, queues[0]
            if not fresh:  # fresh: enqueued by this caller with wait=True, so surely not final yet
                found = await self._lookup("watch", uuid, queues)
                if found is None:
                    return None
                task, queue = found
            if task is None or not task.finished:
                left = deadline - time.monotonic()
                with self._reachable():
                    res: Any = await self.conn.ablpop_direct(self._reply_key(queue, uuid), left) if left > 0 else None
                task = (parse_reply(res[1], queue) if res else None) or await self.get(uuid, [queue])
            if task is not None and task.status == "error" and task.retry_child_uuid and \
                    time.monotonic() < deadline:
                uuid, queues, fresh = str(task.retry_child_uuid), [queue], False  # follow the retry chain
                continue
            return task

    def wait_sync(self, uuid: str, queues: Sequence[str], timeout: float, fresh: bool = False) -> Task | None:
        deadline = time.monotonic() + timeout
        while True:
            task, queue = None, queues[0]
            if not fresh:
                found = self._lookup_sync("watch", uuid, queues)
                if found is None:
                    return None
                task, queue = found
            if task is None or not task.finished:
                left = deadline - time.monotonic()
                with self._reachable():
                    res: Any = self.conn.blpop_direct(self._reply_key(queue, uuid), left) if left > 0 else None
                task = (parse_reply(res[1], queue) if res else None) or self.get_sync(uuid, [queue])
            if task is not None and task.status == "error" and task.retry_child_uuid and \
                    time.monotonic() < deadline:
                uuid, queues, fresh = str(task.retry_child_uuid), [queue], False
                continue
            return task

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
        return f"{queue_prefix(self.app_name, queue)}:lg:{uuid}"

    async def append_logs(self, uuid: str, queue: str, lines: Sequence[str]) -> None:
        if not lines:
            return
        key = self._logs_key(queue, uuid)
        pipe = self.conn.aio.pipeline(transaction=False)
        pipe.rpush(key, *lines)
        pipe.pexpire(key, int(self.result_ttl * 1000))
        await pipe.execute()

    async def get_logs(self, uuid: str, queue: str) -> list[str]:
        with self._reachable():
            raw: Any = await self.conn.aio.lrange(self._logs_key(queue, uuid), 0, -1)
        return [b.decode("utf-8", "replace") for b in raw]

    def get_logs_sync(self, uuid: str, queue: str) -> list[str]:
        with self._reachable():
            raw: Any = self.conn.sync.lrange(self._logs_key(queue, uuid), 0, -1)
        return [b.decode("utf-8", "replace") for b in raw]

    def _reply_key(self, queue: str, uuid: str) -> str:
        return f"{queue_prefix(self.app_name, queue)}:r:{uuid}"

    async def close(self) -> None:
        await self.conn.aclose()

    def close_sync(self) -> None:
        self.conn.close_sync()
