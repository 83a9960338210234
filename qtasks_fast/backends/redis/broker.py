"""Redis Streams broker: the fast path.

One stream per (queue, priority) under a ``{app:queue}`` hash tag, one consumer
group per app, consumer names ``<worker-id>-<slot>`` that survive a process
restart. All server-side logic is in ``redis.lua`` (one script, one round trip
per batch for enqueue, fetch and settle), called only through ``script.Script``; this module decides what
to send when, and packs the per-task arguments with ``pack`` (compiled). Task control (cancel, dead letters,
purge, slots, claims) lives in ``control.py``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import msgspec
import redis
from redis.exceptions import ResponseError

from qtasks_fast import _corelib as core
from qtasks_fast.abc.broker import Broker, Delivery, Outcome
from qtasks_fast.abc.capabilities import (
    BrokerMemory,
    Cancel,
    Claims,
    DeadLetters,
    Delays,
    FlushAll,
    Limits,
    Purge,
    QueueStatistics,
    TaskTable,
    UniqueKeys,
    WorkerRegistry,
)
from qtasks_fast.backends.redis import pack
from qtasks_fast.backends.redis.audit import RedisAudit
from qtasks_fast.backends.redis.connection import RedisConnection
from qtasks_fast.backends.redis.control import RedisControl
from qtasks_fast.backends.redis.errors import at_boundary, outage, refused, transient, unreachable
from qtasks_fast.backends.redis.index import PendingStarts, restart_links
from qtasks_fast.backends.redis.script import LUA, Call, Script, queue_prefix
from qtasks_fast.faults import Outage
from qtasks_fast.log import get_logger
from qtasks_fast.schemas import META_REPLY, META_UNIQUE, releases_unique, unique_owner
from qtasks_fast.steps import Either, Steps, run, run_sync
from qtasks_fast.url import redact

if TYPE_CHECKING:
    from qtasks_fast.abc.storage import Storage
    from qtasks_fast.schemas import Envelope

__all__ = ["LUA", "RedisBroker", "RedisConnection", "outage", "queue_prefix", "refused", "unreachable"]
log = get_logger("broker")
_encode_event = msgspec.msgpack.Encoder().encode


def _bytes(msg_id: Any) -> bytes:
    """A stream entry id as the server sends it back (a delivery may hold it as str or bytes)."""
    return msg_id if isinstance(msg_id, bytes) else str(msg_id).encode()


@at_boundary
class RedisBroker(RedisControl, Broker, Delays, UniqueKeys, Cancel, DeadLetters, Purge, FlushAll, Limits, Claims,
                  TaskTable, WorkerRegistry, QueueStatistics, BrokerMemory, RedisAudit):
    """Broker on Redis Streams with consumer groups; pairs with ``RedisStorage`` for fused writes."""

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", *, app_name: str = "QueueTasks",
                 connection: RedisConnection | None = None, priority_levels: int = 10,
                 lease_seconds: float = 30.0, max_deliveries: int = 5, result_ttl: float = 86400.0,
                 index_results: bool = True) -> None:
        super().__init__(app_name=app_name, priority_levels=priority_levels, lease_seconds=lease_seconds,
                         max_deliveries=max_deliveries, result_ttl=result_ttl)
        self.url = url
        self.conn = connection or RedisConnection(url)
        self.script = Script(self.conn, app_name)
        self.index_results = index_results
        #: process events and start times of plain-read deliveries, until a settle carries them (see index.py)
        self._starts = PendingStarts(self.script)
        self._mode = 2  # first fetch takes over this consumer name's own pending entries
        self._next_reclaim = 0.0
        self._streams: dict[bytes, tuple[str, int]] = {}
        self._held: dict[str, list[str]] = {}
        self._drained = False  # the last blocking read returned less than asked
        #: (queue, prio) of the one stream that filled the last fetch alone, and the streams a direct read of
        #: it covers: while it stays busy, fetches skip the Lua op (see _read_hot)
        self._hot: tuple[str, int] | None = None
        self._hot_streams: list[str] = []
        #: the blocking read of _block, packed, and the (count, ms) and streams it was packed for
        self._block_read: Call[Any] | None = None
        self._block_key = (0, 0)
        self._block_for: dict[bytes, tuple[str, int]] = {}
        #: per queue, the ms time its next delayed envelope is due (0 = none; 1 = unknown, ask at once)
        self._dues: dict[str, int] = {}
        self._due = 0  # the earliest of them

    def __repr__(self) -> str:
        return f"RedisBroker({redact(self.url)!r}, app={self.app_name!r})"

    # ---------------------------------------------------------------- producer
    def _enqueue_calls(self, envelopes: Sequence[Envelope], wait: bool,
                       rec: bool) -> dict[str, tuple[Any, ...]]:
        """Per queue, the Lua enqueue arguments; delayed/unique envelopes add a packed argument of their own."""
        if wait and rec:  # the settle pushes the record to the reply list the caller blocks on
            for e in envelopes:  # a dict of its own: a caller may share one meta dict between calls
                e.meta = {**e.meta, META_REPLY: 1}
            wait = False
        blobs = core.encode_envelopes(list(envelopes))
        now = str(int(time.time() * 1000))
        per_queue = pack.enqueue_args(list(envelopes), blobs, "1" if wait else "0")
        claimed = "0" if rec else "1"  # without our records, unique keys were claimed before storage.create
        ttl = int(self.unique_ttl * 1000)
        levels = self.priority_levels
        owners = self._owners(envelopes) if any(special for _, special, _ in per_queue.values()) else {}
        # index: the query side's zsets and events of the plain envelopes (redis.lua, op enqueue)
        indexing = rec and self.index_results
        return {q: (now, levels, plain, special, claimed, ttl, owners.get(q, ""), index if indexing else "0")
                if special or indexing else (now, levels, plain)
                for q, (plain, special, index) in per_queue.items()}

    def _add(self, env: Envelope, wait: bool) -> Call[dict[str, str]]:
        """Op ``add`` of one plain envelope (our records, query side on): what :meth:`_enqueue_calls` and op
        ``enqueue`` would write for it, in about two thirds of the Redis time and with its command bytes built in
        one call (see ``redis.lua``, op add). Its Redis time and the producer's time before the send both add
        to the dispatch latency of every ``add_task``."""
        if wait:  # the settle pushes the record to the reply list the caller blocks on (see _enqueue_calls)
            env.meta = {**env.meta, META_REPLY: 1}
        prio = min(max(env.priority, 0), self.priority_levels - 1)
        uuid, name = env.uuid, env.task_name
        return self.script.add(env.queue, prio, uuid, core.encode_envelopes([env])[0], name,
                               round(env.created_at * 1000), _encode_event((uuid, "new", name, "")))

    @staticmethod
    def _owners(envelopes: Sequence[Envelope]) -> dict[str, bytes]:
        """Per queue, the enqueue's ``owners`` argument: who gives which caller's unique key back (P:uo)."""
        flat: dict[str, list[str]] = {}
        for e in envelopes:
            owner = unique_owner(e) if e.meta else None
            if owner is not None:
                flat.setdefault(e.queue, []).extend((e.uuid, f"{owner[1]} {owner[0]}"))
        return {q: msgspec.msgpack.encode(v) for q, v in flat.items()}

    @staticmethod
    def _unique_claims(envelopes: Sequence[Envelope]) -> dict[str, list[Any]]:
        """For a foreign storage: per queue, the unique keys ``[uuid, key, ttl ms]*`` to claim before any record
        is created (op 'unique')."""
        out: dict[str, list[Any]] = {}
        for e in envelopes:
            uq = e.meta.get(META_UNIQUE) if e.meta else None
            if uq:
                ttl = int(float(uq[1]) * 1000) if len(uq) > 1 and uq[1] else 0
                out.setdefault(e.queue, []).extend((e.uuid, str(uq[0]), ttl))
        return out

    def _enqueuing(self, envelopes: Sequence[Envelope], storage: Storage, wait: bool) -> Steps[dict[str, str]]:
        """The enqueue, once for :meth:`enqueue` and :meth:`enqueue_sync` (see script.run): with a foreign
        storage, unique keys are claimed and that storage's records created first."""
        rec = self.fused(storage)
        skipped: dict[str, str] = {}
        if not rec:
            for queue, claims in self._unique_claims(envelopes).items():
                skipped.update((yield self.script.unique(queue, int(self.unique_ttl * 1000), claims)))
            kept = [e for e in envelopes if e.uuid not in skipped] if skipped else envelopes
            yield Either(lambda: storage.create(kept, wait), lambda: storage.create_sync(kept, wait))
            envelopes = kept
        if rec and self.index_results and len(envelopes) == 1 and not envelopes[0].eta and not (
                envelopes[0].meta and META_UNIQUE in envelopes[0].meta):
            yield self._add(envelopes[0], wait)  # add_task's common case: op add (see there)
        else:
            for queue, call in self._enqueue_calls(envelopes, wait, rec).items():
                skipped.update((yield self.script.enqueue(queue, rec, *call)))
        if rec and (links := restart_links(self.script, envelopes, skipped, self.result_ttl)):
            yield self.script.pipeline(links)  # app.restart: rare
        return skipped

    async def enqueue(self, envelopes: Sequence[Envelope], storage: Storage, wait: bool = False) -> dict[str, str]:
        return await run(self._enqueuing(envelopes, storage, wait))

    def enqueue_sync(self, envelopes: Sequence[Envelope], storage: Storage, wait: bool = False) -> dict[str, str]:
        """:meth:`enqueue` on the blocking client (direct connections, no helper loop: add_task's latency)."""
        return run_sync(self._enqueuing(envelopes, storage, wait))

    # ------------------------------------------------------------------ worker
    async def ping(self) -> None:
        try:
            await self.conn.aio.ping()
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            raise unreachable(self.url, exc) from exc

    async def start(self, consumer: str, worker_id: str, queues: Sequence[str], storage: Storage) -> None:
        self._consumer, self._worker_id, self._queues, self._storage = consumer, worker_id, list(queues), storage
        # its own: a settle carries only what this consumer fetched (it alone settles those tasks, in order)
        self._starts = PendingStarts(self.script)
        # blocked reads also watch each queue's wake stream (prio -1): a delayed envelope due sooner
        # than any before it is announced there (see redis.lua, key P:wake)
        streams = [(q, p) for q in self._queues for p in range(self.priority_levels)]
        streams += [(q, -1) for q in self._queues]
        self._streams = {self.script.stream_key(q, p).encode(): (q, p) for q, p in streams}
        self._dues, self._due = {}, 0
        await self.ping()
        await self.ensure_groups()
        await self.warn_qtasks_queue()

    async def warn_qtasks_queue(self) -> None:
        """One WARNING at a worker's start when QTasks' own queue of this app (the list ``<name>:task_queue`` its
        Redis broker pushes to) holds tasks: a QTasks producer is sending to this Redis, and no worker here reads
        that list (another wire and key layout), so those tasks would wait forever unseen. One ``LLEN``."""
        key = f"{self.app_name}:task_queue"
        try:
            waiting = await self.conn.aio.llen(key)
        except redis.RedisError:  # not a list (the key is someone else's), or no permission: nothing to say
            return
        if waiting:
            log.warning("Redis list %r holds %d task(s) sent by QTasks producers; qtasks_fast workers do not read "
                        "QTasks' queue (another key layout): send them from qtasks_fast producers, or drain them with "
                        "QTasks workers (docs/from-qtasks.md, 'Mixed fleet')", key, waiting)

    async def ensure_groups(self) -> None:
        """Create the consumer group on every stream (and the streams), if missing.

        A reply that time fixes (Redis at maxmemory refuses the XGROUP CREATE MKSTREAM of a
        missing stream; READONLY, LOADING) is waited out here, logged when it starts and ends: a
        worker starting or recovering from data loss during such an outage must not crash.
        """
        wait = Outage(log, f"worker {getattr(self, '_worker_id', '?')}: cannot create the consumer groups")
        while True:
            pipe = self.conn.aio.pipeline(transaction=False)
            for stream in self._streams:
                pipe.xgroup_create(stream, self.app_name, id="0", mkstream=True)
            errors = [res for res in await pipe.execute(raise_on_error=False)
                      if isinstance(res, Exception) and "BUSYGROUP" not in str(res)]
            if not errors:
                wait.ok()
                return
            if not all(transient(e) for e in errors):
                raise next(e for e in errors if not transient(e))
            await wait.wait(errors[0])

    async def fetch(self, count: int, block: float) -> list[tuple[str, list[Any]]]:
        rec = self.fused(self._storage)
        now = time.monotonic()
        mode = self._mode
        if mode == 0 and now >= self._next_reclaim:
            mode = 1
        if mode == 0 and self._drained and block > 0 and not 0 < self._due <= time.time() * 1000:
            # the last blocking read found the streams (nearly) empty and nothing delayed is due: block
            # again at once rather than spend a round trip on a fetch that would find nothing (idle latency)
            return await self._block(count, block, rec)
        if mode == 0 and self._hot is not None and not 0 < self._due <= time.time() * 1000:
            out = await self._read_hot(count)
            if out:
                return out
        try:
            out, again = await self._fetch_now(count, mode, rec)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self.ensure_groups()  # Redis lost its data (restart without persistence)
            out, again = await self._fetch_now(count, mode, rec)
        self._set_hot(out, count)
        if mode:
            # parked last attempts are handed out one per fetch: keep looking until none is left
            self._mode = 1 if again else 0
            self._held = {}
            self._next_reclaim = now + self.lease_seconds / 2
        if out or block <= 0:
            return out
        return await self._block(count, block, rec)

    def _set_hot(self, out: list[tuple[str, list[Any]]], count: int) -> None:
        """Remember the stream that alone filled a Lua fetch: the next fetches may read it directly."""
        self._hot = None
        if len(out) == 1:
            queue, flat = out[0]
            prio = flat[0]
            if len(flat) // 4 >= count and flat[-4] == prio:
                self._hot = (queue, prio)
                self._hot_streams = [self.script.stream_key(queue, p) for p in (*range(prio + 1), -1)]

    async def _read_hot(self, count: int) -> list[tuple[str, list[Any]]]:
        """A plain XREADGROUP of the busy stream and the more urgent ones of its queue, without Lua.

        Why: the Lua fetch op costs Redis ~3 µs per entry (Lua tables built and unbuilt) against
        ~0.9 µs for XREADGROUP itself, and in a busy drain it runs for every batch. While a single
        stream keeps filling whole batches, nothing else a fetch does is due: reclaims run on their
        own clock (mode 1), delayed envelopes when ``_due`` passes or their queue's wake stream (read
        here too) announces an earlier one. A read that comes up short, or finds more urgent work,
        hands the next fetch back to the Lua op, which restores strict priority order; until then a
        more urgent stream included here is read alongside, so priority still wins.
        """
        assert self._hot is not None
        queue = self._hot[0]
        streams = self._hot_streams
        try:
            res: Any = await self.script.command(
                "XREADGROUP", "GROUP", self.app_name, self._consumer, "COUNT", count, "STREAMS", *streams,
                *(">" for _ in streams), via="hot")
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self._hot = None
            await self.ensure_groups()
            return []
        flat: list[Any] = []
        seen = 0
        for stream, entries in (res.items() if isinstance(res, dict) else res or ()):
            prio = self._streams[stream][1]
            if prio < 0:  # a wake: a delayed envelope is due sooner than this worker knew
                self._dues[queue] = self._due = 1
                await self.conn.aio.xack(stream, self.app_name, *[msg_id for msg_id, _ in entries])
                continue
            seen += 1
            core.add_entries(flat, prio, entries)
        if seen != 1 or len(flat) // 4 < count:
            self._hot = None  # drained, or more urgent work arrived: the Lua op decides next time
        out = [(queue, flat)] if flat else []
        if self.index_results and self.fused(self._storage):
            self._starts.note(out, self._worker_id)
        return out

    def recover(self, held: Iterable[Delivery]) -> None:
        """Call after a failed :meth:`fetch`, with the deliveries this worker still holds.

        Redis may have run the fetch and lost only the reply: those messages now
        belong to this consumer, and no one would run them before their lease ran
        out. The next fetch takes this consumer's pending messages over again,
        except ``held``.
        """
        self._mode = 2
        self._held = {}
        for d in held:
            msg_id = d.msg_id.decode() if isinstance(d.msg_id, bytes) else str(d.msg_id)
            self._held.setdefault(d.queue, []).append(f"{d.prio} {msg_id}")

    async def _fetch_now(self, count: int, mode: int, rec: bool) -> tuple[list[tuple[str, list[Any]]], bool]:
        out = []
        wall = int(time.time() * 1000)
        now = str(wall)
        left = count
        again = False
        full = False  # nothing more may be fetched: remaining queues are visited only to promote due envelopes
        dead: list[tuple[str, list[bytes]]] = []  # dead-lettered here, for a foreign storage's records
        for q in self._queues:
            qcount, qmode = left, mode
            if full:
                if not 0 < self._dues.get(q, 0) <= wall:
                    continue
                qcount, qmode = 0, 0
            flat, more, due, ended = await self.script.fetch(
                q, rec, self._consumer, self._worker_id, qcount, now, qmode, int(self.lease_seconds * 1000),
                self.max_deliveries, self.priority_levels, int(self.result_ttl * 1000),
                self._held.get(q, ()) if qmode >= 2 else ())
            self._dues[q] = due
            if ended:
                dead.append((q, ended))
            again = again or more
            if flat:
                out.append((q, flat))
                left -= len(flat) // 4
                # a last attempt comes alone (see redis.lua, op fetch)
                full = left <= 0 or bool(mode and self.max_deliveries > 1 and flat[3] >= self.max_deliveries)
        self._due = min((d for d in self._dues.values() if d), default=0)
        if dead and self._storage is not None:
            await self._save_dead_foreign(self._storage, dead)
        return out, again

    async def _block(self, count: int, block: float, rec: bool) -> list[tuple[str, list[Any]]]:
        block = min(block, self.conn.wait_slice or block)  # within the read timeout (see RedisConnection)
        if self._due:  # never sleep past the next due delayed envelope: the fetch op promotes it
            block = min(block, (self._due - time.time() * 1000) / 1000)
            if block <= 0:
                return []
        ms = max(1, int(block * 1000))
        read = self._block_read
        if read is None or self._block_key != (count, ms) or self._block_for is not self._streams:
            # packed once per count and wait: redis-py would encode its ~30 arguments one by one at every call
            streams = list(self._streams)
            self._block_key, self._block_for = (count, ms), self._streams
            read = self._block_read = self.script.command(
                "XREADGROUP", "GROUP", self.app_name, self._consumer, "COUNT", count, "BLOCK", ms, "STREAMS",
                *streams, *(">" for _ in streams), via="hot", packed=True)
        try:
            res: Any = await read
        except ResponseError as exc:
            # a stream or group deleted under a blocked read (purge, FLUSHDB, data loss): recreate and go on
            if "NOGROUP" not in str(exc) and "UNBLOCKED" not in str(exc):
                raise
            await self.ensure_groups()
            return []
        per_queue: dict[str, list[Any]] = {}
        got = 0
        # the raw reply: a map (RESP3) or pairs (RESP2) of stream -> [[id, [field, value, ...]], ...]
        for stream, entries in (res.items() if isinstance(res, dict) else res or ()):
            queue, prio = self._streams[stream]
            if prio < 0:  # a wake: a delayed envelope is due sooner than this worker knew
                self._dues[queue] = self._due = 1
                await self.conn.aio.xack(stream, self.app_name, *[msg_id for msg_id, _ in entries])
                continue
            got += core.add_entries(per_queue.setdefault(queue, []), prio, entries)
        self._drained = got < count
        out = list(per_queue.items())
        if rec and self.index_results:
            self._starts.note(out, self._worker_id)
        return out

    async def settle(self, outcomes: Sequence[Outcome], storage: Storage, retries: Sequence[Envelope]) -> None:
        rec = self.fused(storage)
        if retries:
            await self.enqueue(retries, storage)
        if not rec:
            await storage.save(outcomes, self._worker_id)
        now, mono = str(int(time.time() * 1000)), time.monotonic()
        ttl = int(self.result_ttl * 1000)
        released: dict[str, list[str]] = {}  # uuids whose caller's unique key goes back (see redis.lua, P:uo)
        for o in outcomes:
            if o[1] != "success" and releases_unique(o[1], o[4]) and o[0].envelope is not None:
                released.setdefault(o[0].queue, []).append(o[0].envelope.uuid)
        carried = await self._starts.carry(outcomes) if rec else None  # plain reads' starts: index.PendingStarts
        try:
            for queue, (packed, index, replies, early) in pack.settle_args(
                    list(outcomes), self.index_results, self._worker_id, now, mono,
                    carried.events if carried else None).items():
                if early:  # producers block on these: their records go first (see Script.early_replies)
                    await self.script.early_replies(queue, ttl, early)
                gone = released.get(queue)
                await self.script.settle(queue, rec, now, ttl, packed, index, replies,
                                         msgspec.msgpack.encode(gone) if gone else b"")
        except BaseException:
            if carried:
                self._starts.put_back(carried)
            raise

    async def renew(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        by_queue: dict[str, list[Any]] = {}
        for d in deliveries:
            by_queue.setdefault(d.queue, []).extend((d.prio, d.msg_id))
        held: set[tuple[int, bytes]] = set()
        for queue, args in by_queue.items():
            flat = await self.script.renew(queue, self._consumer, args)
            held.update((int(flat[i]), _bytes(flat[i + 1])) for i in range(0, len(flat), 2))
        return [d for d in deliveries if (d.prio, _bytes(d.msg_id)) in held]

    async def release(self, deliveries: Sequence[Delivery]) -> None:
        by_queue: dict[str, list[Any]] = {}
        for d in deliveries:
            by_queue.setdefault(d.queue, []).extend((d.prio, d.msg_id))
        rec = self.fused(self._storage)
        await self._starts.flush(by_queue)  # their 'process' events before the 'new' ones of the release
        now = str(int(time.time() * 1000))
        for queue, args in by_queue.items():
            await self.script.release(queue, rec, now, self._consumer, args)

    async def dead_letter(self, items: Sequence[tuple[Delivery, str]], storage: Storage) -> None:
        rec = await self.save_dead_records(items, storage)
        now = str(int(time.time() * 1000))
        by_queue: dict[str, list[Any]] = {}
        for d, reason in items:
            by_queue.setdefault(d.queue, []).extend((d.prio, d.msg_id, reason, d.deliveries or 1))
        await self._starts.flush(by_queue)  # their 'process' events before the dead letters' 'error'
        for queue, args in by_queue.items():
            await self.script.dead(queue, rec, now, int(self.result_ttl * 1000), args)

    async def trim_indexes(self) -> None:
        now = int(time.time() * 1000)
        for q in self._queues:
            await self.script.trim(q, now, int(self.result_ttl * 1000))

    async def close(self) -> None:
        self._starts.close()
        self._stop_requests()
        await self.conn.aclose()

    def close_sync(self) -> None:
        self.conn.close_sync()
