"""Task records in the ``records`` table of a PostgreSQL schema, usable on their own with any broker.

With ``PgBroker`` on the same database the broker writes records inside its own transactions (fused); with
another broker (Redis, say) the worker calls :meth:`PgStorage.save` and friends. ``wait`` needs no polling:
it flags the record as awaited and sleeps on ``LISTEN``; whoever finishes an awaited record (a settle, a
cancel, a dead letter, this storage's ``save``) notifies ``d:<uuid>`` in the same statement. The sync client's
``*_sync`` calls run these same coroutines on its helper loop (the ``Storage`` defaults), one implementation each.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from qtasks_fast.abc.storage import Storage
from qtasks_fast.backends.postgres.db import PgDb, at_boundary, now_ms, wait_event, watching
from qtasks_fast.backends.postgres.migrations import Migrating
from qtasks_fast.backends.postgres.query import STATUS, PgQueries
from qtasks_fast.backends.postgres.records import changed, enqueue_rows, finish_records, pg_text
from qtasks_fast.schemas import Envelope, Task, TaskStatus, task_from_envelope, ts_to_dt

if TYPE_CHECKING:
    from qtasks_fast.abc.broker import Delivery, Outcome

_env_decode = msgspec.msgpack.Decoder(Envelope).decode
COLUMNS = (f"{STATUS} AS status, envelope, created, updated, \"returning\", traceback, worker_id, retry_child, queue,"
           " expires_at, deliveries")
#: the longest a waiter sleeps without re-reading its record (a NOTIFY lost to a reconnect costs this)
WAIT_RECHECK = 2.0
_FINISHED = "app = $1 AND queue = ANY($2::text[]) AND status IN ('success', 'error', 'cancel')"
#: ``delete_finished``'s logs: ``logs.uuid`` and ``records.uuid`` share the "C" collation (migration 6), else the
#: join compares in "C" and cannot use ``logs_task`` (a scan of every log line)
DELETE_FINISHED_LOGS = f"DELETE FROM logs WHERE app = $1 AND uuid IN (SELECT uuid FROM records WHERE {_FINISHED})"  # noqa: S608


def row_to_task(row: Sequence[Any]) -> Task:
    """Build a ``Task`` from a ``records`` row selected as :data:`COLUMNS`."""
    status, blob, created, updated, raw, tb, worker, child, queue = row[:9]
    env = _env_decode(blob)
    return task_from_envelope(env, status, updated=(updated or created or 0) / 1000, returning=raw or b"",
                              traceback=tb, retry_child=child, worker_id=worker, queue=queue,
                              created=ts_to_dt(created / 1000) if created else None, deliveries=row[10] or 1)


@at_boundary
class PgStorage(PgQueries, Migrating, Storage):
    """Records in a PostgreSQL schema; built on the broker's :class:`PgDb` (or the same URL) to fuse writes."""

    def __init__(self, url: str, *, app_name: str = "QueueTasks", db: PgDb | None = None,
                 result_ttl: float = 86400.0) -> None:
        self.url = url
        self.db = db or PgDb.for_url(url)
        self.app_name = app_name
        self.result_ttl = result_ttl

    # writes for a foreign broker; PgBroker on the same database does them in its own transactions
    async def create(self, envelopes: Sequence[Envelope], wait: bool = False) -> None:
        """``new`` records only (no message: the broker queues it), with their feed rows."""
        blobs = [msgspec.msgpack.encode(e) for e in envelopes]
        async with self.db.acquire() as conn:  # one statement, its own transaction (see enqueue_rows)
            await enqueue_rows(conn, self.app_name, [e for e in envelopes], blobs, wait, True, now_ms(), 0,
                               self.db.channel, records_only=True)

    async def save(self, outcomes: Sequence[Outcome], worker_id: str) -> None:
        async with self.db.tx() as conn:
            await finish_records(conn, self.app_name, outcomes, worker_id, now_ms(), int(self.result_ttl * 1000),
                                 self.db.channel)

    async def mark_started(self, deliveries: Sequence[Delivery], worker_id: str) -> None:
        uuids = [d.envelope.uuid for d in deliveries if d.envelope is not None]
        if uuids:
            async with self.db.tx() as conn:
                await changed(conn, self.app_name, now_ms(), "UPDATE records SET worker_id = $3, updated = $2,"
                              " started = $2 WHERE app = $1 AND uuid = ANY($4::text[]) AND status = 'new'"
                              " RETURNING queue, uuid, task_name, 'process' AS status, worker_id", worker_id, uuids)

    async def append_logs(self, uuid: str, queue: str, lines: Sequence[str]) -> None:
        if lines:
            expires = now_ms() + int(self.result_ttl * 1000)
            await self.db.execute("INSERT INTO logs (app, queue, uuid, line, expires_at) SELECT $1, $2, $3, l, $4"
                                  " FROM unnest($5::text[]) WITH ORDINALITY AS t(l, o) ORDER BY o",
                                  self.app_name, pg_text(queue), uuid, expires, [pg_text(x) for x in lines])

    async def get_logs(self, uuid: str, queue: str) -> list[str]:
        rows = await self.db.fetch("SELECT line FROM logs WHERE app = $1 AND uuid = $2 AND queue = $3"
                                   " AND expires_at > $4 ORDER BY id", self.app_name, uuid, queue, now_ms())
        return [r["line"] for r in rows]

    async def delete_finished(self, queues: Sequence[str]) -> int:
        if not queues:
            return 0
        async with self.db.tx() as conn:
            await conn.execute(DELETE_FINISHED_LOGS, self.app_name, list(queues))
            return int(await conn.fetchval(f"WITH d AS (DELETE FROM records WHERE {_FINISHED} RETURNING 1)"  # noqa: S608
                                           " SELECT count(*) FROM d", self.app_name, list(queues)))

    # ------------------------------------------------------------------ reads
    async def get(self, uuid: str, queues: Sequence[str]) -> Task | None:
        """From the view ``tasks``: one snapshot sees a task exactly once (delayed, queued or running, or its
        record: the settle deletes the message and writes the record in one statement)."""
        rows = await self.db.fetch(f"SELECT {COLUMNS} FROM tasks WHERE uuid = $1 AND app = $2"  # noqa: S608
                                   " AND (expires_at IS NULL OR expires_at > $3)", uuid, self.app_name, now_ms())
        if not rows or (queues and rows[0]["queue"] not in queues):
            return None  # records are per queue, as in Redis
        return row_to_task(rows[0])

    async def _watch(self, uuid: str, queues: Sequence[str]) -> Task | None:
        """The task, flagged as awaited so whoever finishes it notifies. A task moves one way, delayed, then
        messages, then records (each move one statement that carries the flag: a move committing meanwhile waits
        for this update's row lock and then reads the flag), so flagging the three in that order, each in a
        statement of its own (its own snapshot), never misses it; then it is read."""
        app = self.app_name
        await self.db.execute("UPDATE delayed SET awaited = true WHERE uuid = $1 AND app = $2 AND NOT awaited"
                              " AND task_name IS NOT NULL", uuid, app)
        # a claim meanwhile skips the row this locks (FOR UPDATE SKIP LOCKED) and its worker may go idle: the
        # NOTIFY (delivered at this statement's commit, the lock released) has it claim again. A task enqueued
        # with ``wait=True`` is flagged already: no lock, no NOTIFY
        await self.db.execute("WITH u AS (UPDATE messages SET awaited = true WHERE uuid = $1 AND app = $2"
                              " AND NOT awaited AND task_name IS NOT NULL RETURNING queue, consumer)"
                              " SELECT pg_notify($3, 'q:' || $2 || ':' || queue) FROM u WHERE consumer IS NULL",
                              uuid, app, self.db.channel)
        await self.db.execute("UPDATE records SET awaited = true WHERE uuid = $1 AND app = $2", uuid, app)
        return await self.get(uuid, queues)

    async def wait(self, uuid: str, queues: Sequence[str], timeout: float, fresh: bool = False) -> Task | None:
        deadline = time.monotonic() + timeout
        last: Task | None = None
        while True:
            async with watching(self.db, ["d:" + uuid]) as done:
                task = await self._watch(uuid, queues)
                if task is None:
                    return last  # a vanished retry child: the failed parent is the answer
                while not task.finished:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return task
                    await wait_event(done, min(left, WAIT_RECHECK))
                    task = await self.get(uuid, queues) or task
            if not (task.status == TaskStatus.ERROR.value and task.retry_child_uuid and time.monotonic() < deadline):
                return task
            uuid, queues, last = str(task.retry_child_uuid), [task.queue], task  # follow the retry chain

    async def close(self) -> None:
        """Close this loop's pool and listener (they reopen on the next use)."""
        await self.db.close()

    def close_sync(self) -> None:
        """Close the sync client's pool (on its helper loop)."""
        from qtasks_fast.portal import started_portal

        p = started_portal()
        if p is not None:
            self.db.terminate_on(p.loop)
