"""Fleet-wide capabilities on PostgreSQL: slots, claims, the worker registry, queue statistics, the published task
table, ``flush_all`` and the upkeep (expired records swept once per fleet, not by every worker)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import msgspec

from qtasks_fast.abc.broker import LOST_KEPT, Broker, QueueStats, WorkerInfo
from qtasks_fast.abc.query import QueueDepth
from qtasks_fast.backends.postgres import feed
from qtasks_fast.backends.postgres.db import now_ms
from qtasks_fast.querylib import EVENTS_KEPT
from qtasks_fast.tasktable import TaskSpec, decode_table, encode_spec, merge

if TYPE_CHECKING:
    from qtasks_fast.backends.postgres.db import PgDb

#: a cancel request is kept at least this long, then while its message lives
CANCEL_KEEP_MS = 60_000
#: seconds between two sweeps of expired records, fleet-wide (one worker wins the claim per period)
SWEEP_EVERY = 60.0
_worker_decode = msgspec.msgpack.Decoder(WorkerInfo).decode


class PgFleet(Broker):
    """Slots, claims, registry, statistics, task table, flush and upkeep of the PostgreSQL broker."""

    db: PgDb

    @property
    def _ttl_ms(self) -> int:
        return int(self.result_ttl * 1000)

    # --------------------------------------------------------- slots and claims
    async def acquire(self, key: str, queue: str, limit: int, token: str, ttl: float) -> bool:
        app, now = self.app_name, now_ms()
        expires = now + int(ttl * 1000)
        async with self.db.tx() as conn:
            # one holder of the key's lock at a time: count and insert cannot interleave
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"slot:{app}:{queue}:{key}")
            await conn.execute("DELETE FROM slots WHERE app = $1 AND queue = $2 AND key = $3 AND expires <= $4",
                               app, queue, key, now)
            if await conn.fetchval("UPDATE slots SET expires = $1 WHERE app = $2 AND queue = $3 AND key = $4"
                                   " AND token = $5 RETURNING 1", expires, app, queue, key, token):
                return True  # a renewal
            held = await conn.fetchval("SELECT count(*) FROM slots WHERE app = $1 AND queue = $2 AND key = $3",
                                       app, queue, key)
            if held >= limit:
                return False
            await conn.execute("INSERT INTO slots (app, queue, key, token, expires) VALUES ($1, $2, $3, $4, $5)",
                               app, queue, key, token, expires)
            return True

    async def release_slot(self, key: str, queue: str, token: str) -> None:
        await self.db.execute("DELETE FROM slots WHERE app = $1 AND queue = $2 AND key = $3 AND token = $4",
                              self.app_name, queue, key, token)

    async def slot_holders(self, key: str, queue: str) -> list[str]:
        rows = await self.db.fetch("SELECT token FROM slots WHERE app = $1 AND queue = $2 AND key = $3",
                                   self.app_name, queue, key)
        return [r["token"] for r in rows]

    async def claim(self, key: str, ttl: float) -> bool:
        now = now_ms()
        got = await self.db.fetchval(
            "INSERT INTO claims (app, key, holder, expires) VALUES ($1, $2, '', $3) ON CONFLICT (app, key) DO UPDATE"
            " SET expires = excluded.expires WHERE claims.expires <= $4 RETURNING 1",
            self.app_name, "c:" + key, now + int(ttl * 1000), now)
        return got is not None

    # ---------------------------------------------------- fleet visibility
    async def register_worker(self, info: WorkerInfo) -> None:
        async with self.db.tx() as conn:
            await conn.execute("DELETE FROM workers WHERE app = $1 AND heartbeat < $2", self.app_name,
                               now_ms() - int(LOST_KEPT * 1000))
            await conn.execute("INSERT INTO workers (app, key, info, heartbeat) VALUES ($1, $2, $3, $4)"
                               " ON CONFLICT (app, key) DO UPDATE SET info = excluded.info,"
                               " heartbeat = excluded.heartbeat", self.app_name, info.key,
                               msgspec.msgpack.encode(info), int(info.heartbeat * 1000))

    async def unregister_worker(self, info: WorkerInfo) -> None:
        await self.db.execute("DELETE FROM workers WHERE app = $1 AND key = $2", self.app_name, info.key)

    async def workers(self, include_lost: bool = False) -> list[WorkerInfo]:
        now = now_ms()
        live = now - int(self.lease_seconds * 1000)
        oldest = now - int(LOST_KEPT * 1000) if include_lost else live
        out = []
        for r in await self.db.fetch("SELECT info, heartbeat FROM workers WHERE app = $1 AND heartbeat >= $2",
                                     self.app_name, oldest):
            try:
                info = _worker_decode(r["info"])
            except (msgspec.DecodeError, msgspec.ValidationError):  # another version's entry: left alone
                continue
            info.lost = r["heartbeat"] < live
            out.append(info)
        return out

    async def queue_depth(self, queue: str) -> QueueDepth:
        app, now = self.app_name, now_ms()
        waiting = {r[0]: r[1] for r in await self.db.fetch(
            "SELECT prio, sum(n)::bigint FROM (SELECT prio, count(*) AS n FROM messages WHERE app = $1 AND queue = $2"
            " AND consumer IS NULL GROUP BY prio UNION ALL SELECT prio, count(*) FROM delayed WHERE app = $1"
            " AND queue = $2 AND due <= $3 GROUP BY prio) AS w GROUP BY prio", app, queue, now)}
        flight = {r[0]: r[1] for r in await self.db.fetch(
            "SELECT consumer, count(*) FROM messages WHERE app = $1 AND queue = $2 AND consumer IS NOT NULL"
            " GROUP BY consumer", app, queue)}
        row = (await self.db.fetch("SELECT (SELECT count(*) FROM delayed WHERE app = $1 AND queue = $2 AND due > $3),"
                                   " (SELECT count(*) FROM dead_letters WHERE app = $1 AND queue = $2)",
                                   app, queue, now))[0]
        return QueueDepth(queue=queue, waiting_by_priority=waiting, in_flight_by_worker=flight, delayed=row[0],
                          dead=row[1])

    async def queue_stats(self, queue: str) -> QueueStats:
        app, now = self.app_name, now_ms()
        r = (await self.db.fetch(
            "SELECT (SELECT count(*) FROM messages WHERE app = $1 AND queue = $2 AND consumer IS NULL),"
            " (SELECT count(*) FROM messages WHERE app = $1 AND queue = $2 AND consumer IS NOT NULL),"
            " (SELECT count(*) FROM delayed WHERE app = $1 AND queue = $2),"
            " (SELECT count(*) FROM delayed WHERE app = $1 AND queue = $2 AND due <= $3),"
            " (SELECT count(*) FROM dead_letters WHERE app = $1 AND queue = $2)", app, queue, now))[0]
        return QueueStats(waiting=r[0] + r[3], in_flight=r[1], delayed=r[2] - r[3], dead=r[4])

    # ------------------------------------------------------ published task table
    async def publish_tasks(self, tasks: Mapping[str, TaskSpec]) -> list[str]:
        """Merge under an advisory lock on the app's table: concurrent publishers take turns."""
        async with self.db.tx() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", "tasktable:" + self.app_name)
            rows = await conn.fetch("SELECT name, spec FROM task_table WHERE app = $1", self.app_name)
            writes, kept = merge(decode_table([(r["name"], r["spec"]) for r in rows]), tasks)
            await conn.executemany("INSERT INTO task_table (app, name, spec) VALUES ($1, $2, $3)"
                                   " ON CONFLICT (app, name)"
                                   " DO UPDATE SET spec = excluded.spec",
                                   [(self.app_name, n, encode_spec(spec)) for n, spec in writes.items()])
        return kept

    async def published_tasks(self) -> dict[str, TaskSpec]:
        rows = await self.db.fetch("SELECT name, spec FROM task_table WHERE app = $1", self.app_name)
        return decode_table([(r["name"], r["spec"]) for r in rows])

    async def flush_all(self, queues: Sequence[str]) -> None:
        """Delete every row of this app (its ``app`` column, so every queue) but the worker registry."""
        async with self.db.tx() as conn:
            for table in ("messages", "delayed", "records", "dead_letters", "cancel_requests", "claims", "slots",
                          "task_table", "logs", "event_batches"):
                await conn.execute(f"DELETE FROM {table} WHERE app = $1", self.app_name)  # noqa: S608 - fixed names

    # -------------------------------------------------------------- upkeep
    async def trim_indexes(self) -> None:
        """Every worker trims its queues' feed; one worker of the fleet per :data:`SWEEP_EVERY` (a claim) deletes
        expired records, logs, claims, slots and stale cancel requests of the app."""
        app, now = self.app_name, now_ms()
        async with self.db.tx() as conn:
            for q in self._queues:
                await conn.execute(feed.TRIM, app, q, EVENTS_KEPT)
        if not await self.claim("sweep:expired", SWEEP_EVERY):
            return
        await self.sweep(now)

    async def sweep(self, now: int) -> int:
        """Delete what expired before ``now``; returns how many records went."""
        app = self.app_name
        async with self.db.tx() as conn:
            gone = await conn.fetchval("WITH d AS (DELETE FROM records WHERE app = $1 AND expires_at < $2 RETURNING 1)"
                                       " SELECT count(*) FROM d", app, now)
            await conn.execute("DELETE FROM logs WHERE app = $1 AND expires_at <= $2", app, now)
            await conn.execute("DELETE FROM claims WHERE app = $1 AND expires <= $2 AND key NOT LIKE 'c:sweep:%'",
                               app, now)
            await conn.execute("DELETE FROM slots WHERE app = $1 AND expires <= $2", app, now)
            await conn.execute("DELETE FROM cancel_requests WHERE app = $1 AND at < $2 AND NOT EXISTS"
                               " (SELECT 1 FROM messages m WHERE m.id = cancel_requests.msg_id)",
                               app, now - CANCEL_KEEP_MS)
        return int(gone)
