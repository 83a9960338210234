"""Task control on the Redis broker: cancel, dead letters, purge, concurrency slots, claims, the task table.

These are rare operations (a user, the CLI or a worker's limiter asks for them),
kept apart from the hot path in ``broker.py``. The server-side part of each is an
op of the one ``redis.lua`` script (sent through ``script.Script``), so it is atomic with enqueue, fetch
and settle: a task cancelled while queued can never be fetched afterwards.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgspec
import redis

from qtasks_fast import _corelib as core
from qtasks_fast.abc.broker import LOST_KEPT, DeadLetter, QueueStats, WorkerInfo
from qtasks_fast.abc.query import QueueDepth
from qtasks_fast.backends._local import task_name_of, text
from qtasks_fast.backends.redis.errors import outage, unreachable
from qtasks_fast.backends.redis.script import (  # noqa: F401 - key names and errors: re-exported for callers
    Script,
    cancel_channel,
    claim_key,
    queue_prefix,
    queues_key,
    tasks_key,
    workers_key,
)
from qtasks_fast.log import get_logger
from qtasks_fast.schemas import Envelope
from qtasks_fast.stopping import until_stopped
from qtasks_fast.tasktable import TaskSpec, decode_table, encode_spec, merge

if TYPE_CHECKING:
    from qtasks_fast.abc.storage import Storage
    from qtasks_fast.backends.redis.broker import RedisConnection

log = get_logger("broker")
_env_decode = msgspec.msgpack.Decoder(Envelope).decode
_request_decode = msgspec.msgpack.Decoder(tuple[str, str]).decode
_worker_decode = msgspec.msgpack.Decoder(WorkerInfo).decode
#: entries handled per Lua call by the bulk ops, so that none holds Redis up for long
CHUNK = 500
#: a Redis stream entry id (``1700000000000-0``, or its ms part alone): any other text names no dead letter
_STREAM_ID = re.compile(r"[0-9]{1,20}(?:-[0-9]{1,20})?")


def _stream_ids(ids: Sequence[str]) -> list[str]:
    """The ``ids`` that can be stream entry ids: Redis answers an error to any other (``XRANGE nosuch``), so
    a mistyped ``dlq requeue --id`` would read as a broker failure instead of "no such dead letter"."""
    return [i for i in ids if _STREAM_ID.fullmatch(i) and all(int(p) < 2**64 for p in i.split("-"))]
#: share of maxmemory above which ``memory()`` warns (producers get BrokerFull at 100 %)
MEMORY_WARN = 0.9


#: the key families under a queue's prefix (redis.lua's list) and under the app's (``qtf:{<app>}:``), after ``:``
_QUEUE_KEYS = re.compile(rb"(?:q|wait|log|count|dlq|d|dm|wake|uo|cx|ev|evn|tp|(?:s|t|r|i|u|sem|lg|x|rs):.*)", re.DOTALL)
_APP_KEYS = re.compile(rb"(?:tasks|claim:.*)", re.DOTALL)


def memory_report(info: dict[str, Any]) -> dict[str, Any]:
    """``INFO memory`` reduced to what an operator acts on, with a warning per risky setting."""
    used, limit = int(info.get("used_memory", 0)), int(info.get("maxmemory", 0))
    policy = str(info.get("maxmemory_policy", "?"))
    ratio = used / limit if limit else None
    warnings = []
    if ratio is not None and ratio >= MEMORY_WARN:
        warnings.append(f"Redis uses {ratio:.0%} of maxmemory: at 100 % it refuses new tasks and results (BrokerFull); "
                        "free memory, raise maxmemory or lower result_ttl")
    if policy != "noeviction":
        warnings.append(f"maxmemory-policy is {policy}: Redis may evict queued tasks and results without a trace; "
                        "set maxmemory-policy noeviction")
    if not limit:
        warnings.append("no maxmemory: Redis grows until the machine runs out of memory; set maxmemory (with "
                        "policy noeviction) so that a full Redis refuses work instead")
    return {"used_memory": used, "maxmemory": limit, "maxmemory_policy": policy, "used_ratio": ratio,
            "warnings": warnings}


def _dead_letter(queue: str, msg_id: bytes, fields: dict[bytes, bytes]) -> DeadLetter:
    """A dead letter as listed: every field of the entry may be anything its producer wrote (a dead letter
    is often the very message that was malformed), so none may stop the listing: bytes that are not
    UTF-8 are shown escaped (``\\xff``), numbers that are not numbers as 0."""
    body = fields.get(b"d", b"")
    return DeadLetter(id=text(msg_id), uuid=text(fields.get(b"u", b"")), queue=queue,
                      reason=text(fields.get(b"reason", b"")), at=_number(fields.get(b"at")) / 1000,
                      priority=int(_number(fields.get(b"prio"))), task_name=task_name_of(body), body=body)


def _number(raw: bytes | None) -> float:
    try:
        return float(raw or 0)
    except ValueError:
        return 0.0


class RedisControl:
    """The task-control half of ``RedisBroker`` (see ``qtasks_fast.abc.broker``, section task control)."""

    app_name: str
    url: str
    conn: RedisConnection
    script: Script
    priority_levels: int
    lease_seconds: float
    result_ttl: float
    index_results: bool
    _storage: Storage | None
    _closing: asyncio.Event | None = None

    def fused(self, storage: Storage | None) -> bool:
        # only a RedisStorage holds this broker's RedisConnection; not importing it keeps storage -> control acyclic
        return storage is not None and getattr(storage, "conn", None) is self.conn

    def _paired(self) -> tuple[Storage | None, bool]:
        """The storage of records for producer-side ops that get none: the worker's, or the RedisStorage
        built on this broker's connection (``make_backend``)."""
        storage = self._storage or self.conn.storage
        return storage, self.fused(storage)

    @staticmethod
    async def _save_foreign(storage: Storage, queue: str, blobs: Sequence[bytes], status: str, why: str) -> None:
        """Final records of messages ended here (cancel, purge), for a storage the Lua cannot write."""
        outcomes = []
        for blob in blobs:
            d = core.Delivery(queue, 0, b"", blob, 0)
            try:
                d.envelope = _env_decode(blob)
            except Exception:  # noqa: BLE001 - also a body nested too deeply to decode (RecursionError)
                continue
            outcomes.append((d, status, b"\xc0", why, ""))
        if outcomes:
            await storage.save(outcomes, "")

    def enqueue_raw(self, queue: str, body: bytes, priority: int = 0, uuid: str = "") -> None:
        """Put an arbitrary body on ``queue`` as a foreign producer would: one stream entry, no record
        (bridges, and the contract suite's tests of malformed input)."""
        prio = min(max(priority, 0), self.priority_levels - 1)
        try:
            self.conn.sync.xadd(f"{queue_prefix(self.app_name, queue)}:s:{prio}", {"u": uuid, "d": body})
        except redis.RedisError as exc:
            raise outage(self.url, exc) from exc

    @classmethod
    async def _save_dead_foreign(cls, storage: Storage, dead: Sequence[tuple[str, Sequence[bytes]]]) -> None:
        """The ``error`` records of messages a fetch dead-lettered (``(queue, [body, reason, ...])``), for a
        storage the Lua cannot write: a caller waiting on one learns at once that it will not run."""
        for queue, flat in dead:
            for i in range(0, len(flat), 2):
                await cls._save_foreign(storage, queue, [flat[i]], "error", "dead-lettered: " + text(flat[i + 1]))

    # ---------------------------------------------------------------- memory
    def memory_stats(self) -> dict[str, Any]:
        """Redis memory use: ``used_memory``, ``maxmemory`` (0 = none), ``maxmemory_policy``, ``used_ratio``
        and ``warnings`` (see :func:`memory_report`). Sync: for ``inspect`` and the metrics scrape thread."""
        try:
            info: Any = self.conn.sync.info("memory")
        except redis.RedisError as exc:
            raise outage(self.url, exc) from exc
        return memory_report(info)

    # ---------------------------------------------------------------- cancel
    async def cancel(self, uuid: str, queue: str, reason: str, storage: Storage) -> str:
        rec = self.fused(storage)
        now = str(int(time.time() * 1000))
        res = await self.script.cancel(queue, rec, uuid, reason, now, int(self.result_ttl * 1000),
                                       self.priority_levels, rec and self.index_results)
        state: str = res[0].decode()
        if not rec:
            if state == "queued":
                await self._save_foreign(storage, queue, res[1:], "cancel", reason)
            elif state == "unknown" and getattr(await storage.get(uuid, [queue]), "finished", False):
                return "finished"
        return state

    async def cancel_requests(self) -> AsyncIterator[tuple[str, str]]:
        """``(uuid, reason)`` published by :meth:`cancel`, on a pub/sub connection of its own.

        The subscription is opened again (with backoff) when Redis goes away, and the iterator
        ends when :meth:`close` is called. A request made while no worker listens is not lost
        for a task whose worker died: the fetch that reclaims it cancels it (key ``P:cx``).
        """
        closing = self._closing = asyncio.Event()
        channel = cancel_channel(self.app_name)
        backoff = 0.1
        while not closing.is_set():
            pubsub = self.conn.aio.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(channel)
                if backoff > 0.1:
                    log.info("cancel requests: subscribed again to %s", channel)
                backoff = 0.1
                while True:
                    # a wait shorter than the read timeout (a quiet channel is not a hung Redis); None = no message
                    _, message = await until_stopped(closing, pubsub.get_message(timeout=self.conn.wait_slice))
                    if closing.is_set():
                        return
                    if not message or message.get("type") != "message":
                        continue
                    try:
                        uuid, reason = _request_decode(message["data"])
                    except (msgspec.DecodeError, msgspec.ValidationError, TypeError) as exc:
                        log.warning("ignoring a malformed cancel request on %s: %s", channel, exc)
                        continue
                    yield uuid, reason
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                log.warning("cancel requests: lost %s (%s); subscribing again in %.1fs", channel, exc, backoff)
                try:
                    await asyncio.wait_for(closing.wait(), backoff)
                except asyncio.TimeoutError:
                    pass
                backoff = min(backoff * 2, 5.0)
            finally:
                await pubsub.aclose()

    def _stop_requests(self) -> None:
        if self._closing is not None:
            self._closing.set()

    # ---------------------------------------------------------- dead letters
    async def dead_letters(self, queue: str, count: int = 100) -> list[DeadLetter]:
        try:
            entries: Any = await self.conn.aio.xrevrange(self.script.dlq_key(queue), count=count)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise unreachable(self.url, exc) from exc
        return [_dead_letter(queue, i, f) for i, f in entries]

    async def requeue_dead(self, queue: str, ids: Sequence[str] | None = None) -> int:
        storage, rec = self._paired()
        if not rec and storage is not None:
            return await self._requeue_foreign(storage, queue, ids)
        n = 0
        if ids is not None:
            wanted = _stream_ids(ids)
            for j in range(0, len(wanted), CHUNK):
                n += await self.script.requeue(queue, rec, CHUNK, wanted[j:j + CHUNK])
            return n
        while True:  # the oldest CHUNK at a time: each call removes what it requeued
            got = await self.script.requeue(queue, rec, CHUNK)
            n += got
            if got < CHUNK:
                return n

    async def _requeue_foreign(self, storage: Storage, queue: str, ids: Sequence[str] | None) -> int:
        """A foreign storage gets the ``new`` records first, then the messages go back to their stream."""
        wanted = set(ids) if ids is not None else None
        key = self.script.dlq_key(queue)
        cursor, n = "-", 0
        while True:
            entries: Any = await self.conn.aio.xrange(key, min=cursor, count=CHUNK)
            letters = [_dead_letter(queue, i, f) for i, f in entries]
            chosen = [x for x in letters if wanted is None or x.id in wanted]
            envs = [_env_decode(x.body) for x in chosen if x.task_name is not None]
            if envs:
                await storage.create(envs)
            if chosen:
                n += await self.script.requeue(queue, False, CHUNK, [x.id for x in chosen])
            if len(entries) < CHUNK:
                return n
            cursor = "(" + letters[-1].id

    async def purge_dead(self, queue: str, ids: Sequence[str] | None = None) -> int:
        if ids is None:
            return await self.script.purge_dead(queue)
        wanted, n = _stream_ids(ids), 0
        for j in range(0, len(wanted), CHUNK):
            n += await self.script.purge_dead(queue, wanted[j:j + CHUNK])
        return n

    # ----------------------------------------------------------------- purge
    async def purge(self, queue: str) -> int:
        storage, rec = self._paired()
        now = str(int(time.time() * 1000))
        ttl = int(self.result_ttl * 1000)
        index = rec and self.index_results
        n = 0
        for prio in ("d", *map(str, range(self.priority_levels))):
            cursor = "-"
            while True:
                got, scanned, last, *blobs = await self.script.purge(queue, rec, now, ttl, CHUNK, index, prio,
                                                                     cursor)
                n += got
                if blobs and storage is not None and not rec:
                    await self._save_foreign(storage, queue, blobs, "cancel", "purged")
                if scanned < CHUNK:
                    break
                cursor = last.decode() if isinstance(last, bytes) else str(last)
        return n

    # ---------------------------------------------------- fleet visibility
    async def register_worker(self, info: WorkerInfo) -> None:
        key = workers_key(self.app_name)
        try:
            pipe = self.conn.aio.pipeline(transaction=False)
            pipe.hset(key, info.key, msgspec.msgpack.encode(info))
            # a fleet that died leaves nothing behind once its entries stopped being listed as lost
            pipe.pexpire(key, max(1, int((self.lease_seconds * 2 + LOST_KEPT) * 1000)))
            await pipe.execute()
        except redis.RedisError as exc:
            raise outage(self.url, exc) from exc

    async def unregister_worker(self, info: WorkerInfo) -> None:
        try:
            await self.conn.aio.hdel(workers_key(self.app_name), info.key)
        except redis.RedisError as exc:
            raise outage(self.url, exc) from exc

    async def workers(self, include_lost: bool = False) -> list[WorkerInfo]:
        key = workers_key(self.app_name)
        try:
            entries: Any = await self.conn.aio.hgetall(key)
            live, stale = [], []
            now = time.time()
            for field, blob in entries.items():
                try:
                    info = _worker_decode(blob)
                except (msgspec.DecodeError, msgspec.ValidationError):  # another version's entry: left alone
                    continue
                if info.heartbeat >= now - self.lease_seconds:
                    live.append(info)
                elif info.heartbeat >= now - LOST_KEPT:  # no graceful stop: shown as lost for a while
                    if include_lost:
                        info.lost = True
                        live.append(info)
                else:
                    stale.append(field)
            if stale:
                await self.conn.aio.hdel(key, *stale)
        except redis.RedisError as exc:
            raise outage(self.url, exc) from exc
        return live

    async def queue_stats(self, queue: str) -> QueueStats:
        waiting, in_flight, delayed, dead = await self.script.stats(queue, self.priority_levels,
                                                                    int(time.time() * 1000))
        return QueueStats(waiting=waiting, in_flight=in_flight, delayed=delayed, dead=dead)

    async def queue_depth(self, queue: str) -> QueueDepth:
        now = int(time.time() * 1000)
        waiting, consumers, delayed, dead = await self.script.depth(queue, self.priority_levels, now)
        return QueueDepth(queue=queue, waiting_by_priority={int(waiting[i]): int(waiting[i + 1])
                                                            for i in range(0, len(waiting), 2)},
                          in_flight_by_worker={text(consumers[i]): int(consumers[i + 1])
                                               for i in range(0, len(consumers), 2)},
                          delayed=int(delayed), dead=int(dead))

    # ------------------------------------------------------ limits and claims
    async def acquire(self, key: str, queue: str, limit: int, token: str, ttl: float) -> bool:
        return await self.script.acquire(queue, key, limit, token, max(1, int(ttl * 1000)))

    async def release_slot(self, key: str, queue: str, token: str) -> None:
        await self.script.unslot(queue, key, token)

    async def slot_holders(self, key: str, queue: str) -> list[str]:
        try:
            held = await self.conn.aio.zrange(self.script.slots_key(queue, key), 0, -1)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise unreachable(self.url, exc) from exc
        return [t.decode() if isinstance(t, bytes) else str(t) for t in held]

    async def claim(self, key: str, ttl: float) -> bool:
        try:
            return bool(await self.conn.aio.set(claim_key(self.app_name, key), "1", nx=True,
                                                px=max(1, int(ttl * 1000))))
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise unreachable(self.url, exc) from exc

    async def flush_all(self, queues: Sequence[str]) -> None:
        """UNLINK this app's keys: under each queue's prefix ``qtf:{<app>:<queue>}:`` those of a queue's key
        families (redis.lua), under ``qtf:{<app>}:`` the task table and claims (the worker registry is kept, and
        so is the list of noted queues: a producer notes a queue once per process, so a flushed list would stay
        empty).

        A prefix alone is not exact: app ``a:default``'s ``qtf:{a:default}:tasks`` starts like app ``a``'s queue
        ``default`` keys. The families are disjoint (no queue key is ``tasks`` or ``claim:...``), so matching
        prefix *and* family never takes another app's key; glob characters in names are escaped. The queues
        :meth:`note_queues` recorded are flushed with ``queues``."""
        try:
            noted = [text(q) for q in await self.conn.aio.smembers(queues_key(self.app_name))]
        except redis.RedisError as exc:
            raise outage(self.url, exc) from exc
        groups = [(queue_prefix(self.app_name, q), _QUEUE_KEYS) for q in dict.fromkeys([*queues, *noted])]
        groups.append((f"qtf:{{{self.app_name}}}", _APP_KEYS))
        try:
            for prefix, families in groups:
                pattern = "".join("\\" + c if c in "*?[]\\" else c for c in prefix + ":") + "*"
                batch: list[bytes] = []
                async for key in self.conn.aio.scan_iter(match=pattern, count=1000):
                    if families.fullmatch(key[len(prefix) + 1:]):
                        batch.append(key)
                    if len(batch) >= CHUNK:
                        await self.conn.aio.unlink(*batch)
                        batch = []
                if batch:
                    await self.conn.aio.unlink(*batch)
        except redis.RedisError as exc:
            raise outage(self.url, exc) from exc

    async def note_queues(self, queues: Sequence[str]) -> None:
        """SADD to ``qtf:{<app>}:queues`` (see :func:`queues_key`)."""
        try:
            await self.conn.aio.sadd(queues_key(self.app_name), *queues)
        except redis.RedisError as exc:
            raise outage(self.url, exc) from exc

    # ------------------------------------------------------ published task table
    async def publish_tasks(self, tasks: Mapping[str, TaskSpec]) -> list[str]:
        """Merge into hash ``qtf:{<app>}:tasks`` (name -> msgpack TaskSpec) under WATCH: a concurrent publisher
        makes the transaction fail and the merge run again on what it wrote."""
        key = tasks_key(self.app_name)
        try:
            async with self.conn.aio.pipeline(transaction=True) as pipe:
                while True:
                    try:
                        await pipe.watch(key)
                        stored: Any = await pipe.hgetall(key)
                        writes, kept = merge(decode_table(stored.items()), tasks)
                        pipe.multi()
                        if writes:
                            pipe.hset(key, mapping={n: encode_spec(s) for n, s in writes.items()})
                        await pipe.execute()
                        return kept
                    except redis.WatchError:
                        continue
        except redis.RedisError as exc:
            raise outage(self.url, exc) from exc

    async def published_tasks(self) -> dict[str, TaskSpec]:
        try:
            raw: Any = await self.conn.aio.hgetall(tasks_key(self.app_name))
        except redis.RedisError as exc:
            raise outage(self.url, exc) from exc
        return decode_table(raw.items())
