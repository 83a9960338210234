"""Task control on the PostgreSQL backend: dead letters, release, cancel, purge (the fleet-wide capabilities are
in :mod:`~qtasks_fast.backends.postgres.fleet`).

Everything here is rare or user-driven, so clarity wins over speed. Records are updated in the same
transaction when the storage is this database's (the fused case); with a foreign storage its records are
kept in step through the Storage API, as the SQLite backend does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from qtasks_fast.abc.broker import DeadLetter, Delivery, Outcome
from qtasks_fast.backends._local import body_outcome, decoded, task_name_of, text
from qtasks_fast.backends.postgres.db import listen, now_ms, wait_set
from qtasks_fast.backends.postgres.fleet import PgFleet
from qtasks_fast.backends.postgres.records import (
    cancel_records,
    changed,
    materialize,
    notify_done,
    pg_text,
    release_unique,
)

if TYPE_CHECKING:
    import asyncpg

    from qtasks_fast.abc.storage import Storage

PURGED = "purged"
#: the longest a cancel listener that cannot LISTEN goes without re-reading ``cancel_requests``
CANCEL_RECHECK = 2.0
#: a wait bounded by nothing but a NOTIFY, a lost listener or ``close()``
_FOREVER = 1e9


class PgControl(PgFleet):
    """The rare worker paths and the task-control methods of :class:`~qtasks_fast.backends.postgres.broker.PgBroker`."""

    _closed: bool
    #: the events of running :meth:`cancel_requests`, set by ``close()`` to end them
    _wakers: set[asyncio.Event]

    # ------------------------------------------------------- rare worker paths
    async def _to_dead(self, conn: asyncpg.Connection, queue: str, msg_id: int, prio: int, uuid: str, body: bytes,
                       reason: str, now: int, rec: bool, deliveries: int, dead: list[Outcome]) -> None:
        if rec and uuid:  # a queued or running task has no record yet (migration 5): write it, then end it
            await materialize(conn, self.app_name, now, [uuid])
        await conn.execute("INSERT INTO dead_letters (app, queue, prio, uuid, body, reason, at)"
                           " VALUES ($1, $2, $3, $4, $5, $6, $7)", self.app_name, queue, prio, uuid, body, reason, now)
        await conn.execute("DELETE FROM messages WHERE id = $1", msg_id)
        await release_unique(conn, self.app_name, decoded(body))
        if not rec:
            dead += body_outcome(queue, prio, msg_id, body, deliveries, "error", "dead-lettered: " + reason)
        elif uuid:
            rows = await changed(conn, self.app_name, now, "UPDATE records SET status = 'error', traceback = $3,"
                                 " updated = $2, finished = $2, expires_at = $2::bigint + $4::bigint, deliveries = $5"
                                 " WHERE uuid = $6"
                                 " RETURNING queue, uuid, task_name, status, worker_id, awaited",
                                 "dead-lettered: " + reason, self._ttl_ms, max(deliveries, 1), uuid)
            await notify_done(conn, self.db.channel, [r["uuid"] for r in rows if r["awaited"]])

    async def dead_letter(self, items: Sequence[tuple[Delivery, str]], storage: Storage) -> None:
        rec = await self.save_dead_records(items, storage)
        now = now_ms()
        async with self.db.tx() as conn:
            for d, reason in items:
                row = await conn.fetchrow("SELECT queue, prio, uuid, body, deliveries FROM messages WHERE id = $1"
                                          " FOR UPDATE", d.msg_id)
                if row is not None:  # gone = settled or dead-lettered by whoever took it over
                    await self._to_dead(conn, row["queue"], d.msg_id, row["prio"], row["uuid"], row["body"], reason,
                                        now, rec, row["deliveries"], [])

    async def _cancelled_on_redelivery(self, conn: asyncpg.Connection, queue: str, msg_id: int, prio: int, uuid: str,
                                       body: bytes, delivered: int, now: int, rec: bool, dead: list[Outcome]) -> bool:
        """A message cancelled while its worker ran it, handed out again (that worker died): finish it as
        ``cancel`` instead of running it. Only redeliveries pay this lookup."""
        reason = await conn.fetchval("SELECT reason FROM cancel_requests WHERE msg_id = $1 AND app = $2 LIMIT 1",
                                     msg_id, self.app_name)
        if reason is None:
            return False
        if rec:
            await materialize(conn, self.app_name, now, [uuid])
        await conn.execute("DELETE FROM messages WHERE id = $1", msg_id)
        await release_unique(conn, self.app_name, decoded(body))
        if rec:
            await cancel_records(conn, self.app_name, [uuid], reason, now, self._ttl_ms, self.db.channel)
        else:
            dead += body_outcome(queue, prio, msg_id, body, delivered, "cancel", reason)
        return True

    async def release(self, deliveries: Sequence[Delivery]) -> None:
        """Back to ready at their old position, not counted as a delivery; a cancelled one ends ``cancel``."""
        if not deliveries:
            return
        rec = self.fused(self._storage)
        cancelled: list[Outcome] = []
        now = now_ms()
        async with self.db.tx() as conn:
            for d in deliveries:
                row = await conn.fetchrow("SELECT queue, prio, uuid, body, deliveries FROM messages WHERE id = $1"
                                          " AND consumer = $2 FOR UPDATE", d.msg_id, self._consumer)
                if row is None:
                    continue  # not ours any more
                if await self._cancelled_on_redelivery(conn, row["queue"], d.msg_id, row["prio"], row["uuid"],
                                                       row["body"], row["deliveries"], now, rec, cancelled):
                    continue
                # waiting again, run by no one: the message says so, and the feed (fused) too
                await changed(conn, self.app_name, now, "UPDATE messages SET consumer = NULL, lease_until = NULL,"
                              " deliveries = greatest(deliveries - 1, 0), worker_id = NULL, started = NULL"
                              " WHERE id = $3 RETURNING queue, uuid, task_name, 'new' AS status, worker_id",
                              d.msg_id) if rec else await conn.execute(
                    "UPDATE messages SET consumer = NULL, lease_until = NULL, deliveries = greatest(deliveries - 1, 0),"
                    " worker_id = NULL, started = NULL WHERE id = $1", d.msg_id)
                await conn.execute("SELECT pg_notify($1, 'q:' || $2 || ':' || $3)", self.db.channel, self.app_name,
                                   row["queue"])
        if cancelled and self._storage is not None:
            await self._storage.save(cancelled, self._worker_id)

    # ------------------------------------------------------------------ cancel
    async def cancel(self, uuid: str, queue: str, reason: str, storage: Storage) -> str:
        rec = self.fused(storage)
        app, now = self.app_name, now_ms()
        outcomes: list[Outcome] = []
        status = ""
        async with self.db.tx() as conn:
            row: Any = await conn.fetchrow(
                "SELECT id, prio, body, consumer, lease_until, deliveries FROM messages WHERE app = $1 AND queue = $2"
                " AND uuid = $3 ORDER BY consumer IS NULL, id LIMIT 1 FOR UPDATE", app, queue, uuid)
            if row is not None and row["consumer"] is not None:
                await conn.execute("INSERT INTO cancel_requests (app, uuid, msg_id, reason, at) VALUES ($1, $2, $3, $4,"
                                   " $5)", app, uuid, row["id"], pg_text(reason), now)
                await conn.execute("SELECT pg_notify($1, 'c:' || $2)", self.db.channel, app)
                if row["lease_until"] is not None and row["lease_until"] >= now:
                    return "running"  # its worker hears of it through cancel_requests()
                if rec:  # its record (none while it runs, migration 5) is written before its message goes
                    await materialize(conn, app, now, [uuid])
                await conn.execute("DELETE FROM messages WHERE id = $1", row["id"])  # lease ran out: worker gone
            elif row is None:
                row = await conn.fetchrow("SELECT id, prio, body, 0 AS deliveries FROM delayed WHERE app = $1"
                                          " AND queue = $2 AND uuid = $3 FOR UPDATE", app, queue, uuid)
            if row is not None:
                if rec:  # its record (none while queued, migration 5) is written, then cancelled
                    await materialize(conn, app, now, [uuid])
                await conn.execute("DELETE FROM messages WHERE app = $1 AND queue = $2 AND uuid = $3"
                                   " AND consumer IS NULL", app, queue, uuid)
                await conn.execute("DELETE FROM delayed WHERE app = $1 AND queue = $2 AND uuid = $3", app, queue, uuid)
                await release_unique(conn, app, decoded(row["body"]))
                if rec:
                    await cancel_records(conn, app, [uuid], reason, now, self._ttl_ms, self.db.channel)
                else:
                    outcomes = body_outcome(queue, row["prio"], row["id"], row["body"], row["deliveries"], "cancel",
                                            reason)
                status = "queued"
        if status:
            if outcomes:
                await storage.save(outcomes, "")
            return status
        task = await storage.get(uuid, [queue])
        return "finished" if task is not None and task.finished else "unknown"

    async def cancel_requests(self) -> AsyncIterator[tuple[str, str]]:
        """Cancels of running tasks, read on NOTIFY ``c:<app>`` only (an idle worker runs no transaction here);
        requests still pending for a live message are yielded first, so a worker that starts listening after it
        fetched does not miss one. A lost listener wakes it: it listens again, then reads what it missed."""
        app = self.app_name
        woken = asyncio.Event()
        self._wakers.add(woken)
        lst, stops = await listen(self.db, ["c:" + app], woken)
        try:
            last = await self.db.fetchval("SELECT coalesce(max(id), 0) FROM cancel_requests")
            rows = await self.db.fetch("SELECT c.id, c.uuid, c.reason FROM cancel_requests c WHERE c.app = $1"
                                       " AND c.id <= $2 AND EXISTS (SELECT 1 FROM messages m WHERE m.id = c.msg_id)"
                                       " ORDER BY c.id", app, last)
            while not self._closed:
                for r in rows:
                    yield r["uuid"], r["reason"]
                await wait_set(woken, CANCEL_RECHECK if lst is None else _FOREVER)
                woken.clear()
                if self._closed:
                    break
                if lst is None or lst.broken:  # listen again before reading: nothing is missed in between
                    for stop in stops:
                        stop()
                    lst, stops = await listen(self.db, ["c:" + app], woken)
                rows = await self.db.fetch("SELECT id, uuid, reason FROM cancel_requests WHERE app = $1 AND id > $2"
                                           " ORDER BY id", app, last)
                if rows:
                    last = rows[-1]["id"]
        finally:
            for stop in stops:
                stop()
            self._wakers.discard(woken)

    # ------------------------------------------------------------ dead letters
    async def dead_letters(self, queue: str, count: int = 100) -> list[DeadLetter]:
        rows = await self.db.fetch("SELECT id, uuid, body, reason, at, prio FROM dead_letters WHERE app = $1"
                                   " AND queue = $2 ORDER BY id DESC LIMIT $3", self.app_name, queue, count)
        return [DeadLetter(id=str(r["id"]), uuid=text(r["uuid"]), queue=queue, reason=text(r["reason"]),
                           at=(r["at"] or 0) / 1000, priority=r["prio"] or 0, task_name=task_name_of(r["body"] or b""),
                           body=r["body"] or b"") for r in rows]

    async def _dead_rows(self, conn: asyncpg.Connection, queue: str, ids: Sequence[str] | None) -> list[Any]:
        sql = "SELECT id, prio, uuid, body FROM dead_letters WHERE app = $1 AND queue = $2"
        if ids is None:
            return list(await conn.fetch(sql + " ORDER BY id FOR UPDATE", self.app_name, queue))
        nums = [int(i) for i in ids if str(i).isascii() and str(i).isdigit() and int(i) < 2**63]
        return list(await conn.fetch(sql + " AND id = ANY($3::bigint[]) ORDER BY id FOR UPDATE", self.app_name, queue,
                                     nums))

    async def requeue_dead(self, queue: str, ids: Sequence[str] | None = None) -> int:
        storage = self._storage
        if storage is not None and not self.fused(storage):  # a started worker's foreign storage: records first
            async with self.db.tx() as conn:
                envs = [env for r in await self._dead_rows(conn, queue, ids) for env in decoded(r["body"])]
            if envs:
                await storage.create(envs)
        now = now_ms()
        async with self.db.tx() as conn:
            rows = await self._dead_rows(conn, queue, ids)
            # queued again, its record (fused: in this schema) gone until the settle, as a new task's (migration 5)
            gone = {r["uuid"]: r for r in await changed(
                conn, self.app_name, now, "DELETE FROM records WHERE app = $1 AND uuid = ANY($3::text[])"
                " RETURNING queue, uuid, task_name, 'new' AS status, NULL::text AS worker_id, created, awaited,"
                " restart_of", [r["uuid"] for r in rows if r["uuid"]])}
            await conn.executemany(
                "INSERT INTO messages (app, queue, prio, uuid, body, task_name, created, awaited, restart_of)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, coalesce($8, false), $9)",
                [(self.app_name, queue, r["prio"], r["uuid"], r["body"], *self._shown(r, gone.get(r["uuid"]), storage))
                 for r in rows])
            await conn.execute("DELETE FROM dead_letters WHERE id = ANY($1::bigint[])", [r["id"] for r in rows])
            if rows:
                await conn.execute("SELECT pg_notify($1, 'q:' || $2 || ':' || $3)", self.db.channel, self.app_name,
                                   queue)
        return len(rows)

    def _shown(self, row: Any, record: Any, storage: Storage | None) -> tuple[Any, ...]:
        """What the query side shows of a requeued dead letter's message: its old record's, or its envelope's
        when that record expired (nothing with a foreign storage: the task is shown there)."""
        if record is not None:
            return record["task_name"], record["created"], record["awaited"], record["restart_of"]
        envs = decoded(row["body"]) if storage is None or self.fused(storage) else []
        if not envs:
            return None, None, None, None
        return pg_text(envs[0].task_name), round(envs[0].created_at * 1000), False, None

    async def purge_dead(self, queue: str, ids: Sequence[str] | None = None) -> int:
        async with self.db.tx() as conn:
            rows = await self._dead_rows(conn, queue, ids)
            await conn.execute("DELETE FROM dead_letters WHERE id = ANY($1::bigint[])", [r["id"] for r in rows])
        return len(rows)

    # ------------------------------------------------------------------- purge
    async def purge(self, queue: str) -> int:
        app, now = self.app_name, now_ms()
        storage = self._storage
        rec = storage is None or self.fused(storage)
        async with self.db.tx() as conn:
            await materialize(conn, app, now, None, queue)  # their records, then cancelled (see cancel_records)
            rows = list(await conn.fetch("DELETE FROM messages WHERE app = $1 AND queue = $2 AND consumer IS NULL"
                                         " RETURNING id, prio, uuid, body", app, queue))
            rows += await conn.fetch("DELETE FROM delayed WHERE app = $1 AND queue = $2 RETURNING id, prio, uuid, body",
                                     app, queue)
            await release_unique(conn, app, (env for r in rows for env in decoded(r["body"])))
            await cancel_records(conn, app, [r["uuid"] for r in rows], PURGED, now, self._ttl_ms, self.db.channel)
        if not rec and storage is not None:
            outcomes = [o for r in rows
                        for o in body_outcome(queue, r["prio"], r["id"], r["body"], 0, "cancel", PURGED)]
            if outcomes:
                await storage.save(outcomes, "")
        return len(rows)

