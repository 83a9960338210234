"""Task control on the embedded SQLite backend: cancel, dead letters, purge, slots, claims, the task table.

Split from ``sqlite.py`` to keep the hot path (enqueue/fetch/settle) short to
read; the rare worker paths (dead-lettering, release after a drain) live here
too. Everything here is rare or user-driven, so clarity wins over speed: a
cancel looks its uuid up by scanning the queue (no uuid index on ``messages``,
which every enqueue would pay for).

Records are updated in this file's ``records`` table when they are there (the
fused, default case). ``requeue_dead`` and ``purge`` take no storage argument,
so with a foreign storage only a started worker's broker (which knows its
storage) keeps that storage's records in step.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from qtasks_fast.abc.broker import LOST_KEPT, DeadLetter, Delivery, Outcome, QueueStats, WorkerInfo
from qtasks_fast.abc.query import QueueDepth
from qtasks_fast.backends._local import LocalBroker, body_outcome, decoded, task_name_of, text
from qtasks_fast.backends.sqlite import feed
from qtasks_fast.backends.sqlite.db import SqliteConnection, cancel_records, changed, now_ms, release_unique
from qtasks_fast.querylib import EVENTS_KEPT
from qtasks_fast.tasktable import TaskSpec, decode_table, encode_spec, merge

if TYPE_CHECKING:
    import sqlite3

    from qtasks_fast.abc.storage import Storage

#: seconds between two looks at ``cancel_requests`` by a running worker
CANCEL_POLL = 0.5
#: a cancel request is kept at least this long (every worker polls far more often), then while its message lives
CANCEL_KEEP_MS = 60_000
PURGED = "purged"
_worker_decode = msgspec.msgpack.Decoder(WorkerInfo).decode


class SqliteControl(LocalBroker):
    """The optional task-control methods of :class:`~qtasks_fast.backends.sqlite.broker.SqliteBroker`."""

    conn: SqliteConnection
    _closed: bool

    @property
    def _ttl_ms(self) -> int:
        return int(self.result_ttl * 1000)

    # ------------------------------------------------------- rare worker paths
    def _to_dead(self, db: sqlite3.Connection, queue: str, msg_id: int, prio: int, uuid: str, body: bytes,
                 reason: str, now: int, rec: bool, deliveries: int = 1) -> None:
        db.execute("INSERT INTO dead_letters (app, queue, prio, uuid, body, reason, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                   (self.app_name, queue, prio, uuid, body, reason, now))
        if rec and uuid:  # the worker is the message's last consumer (a fetch writes no record, see held.py)
            changed(db, now, db.execute(
                "UPDATE records SET status = 'error', traceback = ?, updated = ?, finished = ?, expires_at = ?,"
                " deliveries = ?, worker_id = coalesce((SELECT consumer FROM messages WHERE id = ?), worker_id)"
                " WHERE uuid = ? RETURNING app, queue, uuid, task_name, worker_id",
                ("dead-lettered: " + reason, now, now, now + self._ttl_ms, max(deliveries, 1), msg_id,
                 uuid)).fetchall(), "error")
        db.execute("DELETE FROM messages WHERE id = ?", (msg_id,))
        release_unique(db, self.app_name, decoded(body))

    async def dead_letter(self, items: Sequence[tuple[Delivery, str]], storage: Storage) -> None:
        rec = await self.save_dead_records(items, storage)
        now = now_ms()
        async with self.conn.atx(patience=None) as db:
            for d, reason in items:
                row = db.execute("SELECT queue, prio, uuid, body, deliveries FROM messages WHERE id = ?",
                                 (d.msg_id,)).fetchone()
                if row is not None:  # gone = settled or dead-lettered by whoever took it over
                    self._to_dead(db, row[0], d.msg_id, row[1], row[2], row[3], reason, now, rec, row[4])

    def _cancelled_on_redelivery(self, db: sqlite3.Connection, queue: str, msg_id: int, prio: int, uuid: str,
                                 body: bytes, delivered: int, now: int, rec: bool, dead: list[Outcome]) -> bool:
        """A message cancelled while its worker ran it, handed out again (that worker died): finish it as
        ``cancel`` instead of running it. Only redeliveries pay this lookup."""
        row = db.execute("SELECT reason FROM cancel_requests WHERE msg_id = ? AND app = ?",
                         (msg_id, self.app_name)).fetchone()
        if row is None:
            return False
        db.execute("DELETE FROM messages WHERE id = ?", (msg_id,))
        release_unique(db, self.app_name, decoded(body))
        if rec:
            cancel_records(db, self.app_name, [uuid], row[0], now, self._ttl_ms)
        else:
            dead += body_outcome(queue, prio, msg_id, body, delivered, "cancel", row[0])
        return True

    async def release(self, deliveries: Sequence[Delivery]) -> None:
        """Back to ready at their old position; the hand-out did not run, so it does not count as a delivery.

        One whose cancel was asked meanwhile is finished as ``cancel`` instead of going back.
        """
        if not deliveries:
            return
        rec = self.fused(self._storage)
        cancelled: list[Outcome] = []
        async with self.conn.atx(patience=None) as db:
            for d in deliveries:
                row = db.execute("SELECT queue, prio, uuid, body, deliveries FROM messages WHERE id = ?"
                                 " AND consumer = ?", (d.msg_id, self._consumer)).fetchone()
                if row is not None and self._cancelled_on_redelivery(db, row[0], d.msg_id, row[1], row[2], row[3],
                                                                     row[4], now_ms(), rec, cancelled):
                    continue
                db.execute("UPDATE messages SET consumer = NULL, lease_until = NULL,"
                           " deliveries = max(deliveries - 1, 0) WHERE id = ? AND consumer = ?",
                           (d.msg_id, self._consumer))
                if rec and row is not None:  # waiting again, run by no one: its record says so
                    now = now_ms()
                    changed(db, now, db.execute(
                        "UPDATE records SET status = 'new', worker_id = NULL, started = NULL, updated = ?"
                        " WHERE uuid = ? AND status IN ('new', 'process') RETURNING app, queue, uuid, task_name",
                        (now, row[2])).fetchall(), "new")
        if cancelled and self._storage is not None:
            await self._storage.save(cancelled, self._worker_id)

    # ------------------------------------------------------------------ cancel
    async def cancel(self, uuid: str, queue: str, reason: str, storage: Storage) -> str:
        rec = self.fused(storage)
        app, now = self.app_name, now_ms()
        outcomes: list[Outcome] = []
        status = ""
        async with self.conn.atx() as db:
            row = db.execute("SELECT id, prio, body, consumer, lease_until, deliveries FROM messages"
                             " WHERE app = ? AND queue = ? AND uuid = ? ORDER BY consumer IS NULL, id LIMIT 1",
                             (app, queue, uuid)).fetchone()
            if row is not None and row[3] is not None:
                db.execute("INSERT INTO cancel_requests (app, uuid, msg_id, reason, at) VALUES (?, ?, ?, ?, ?)",
                           (app, uuid, row[0], reason, now))
                if row[4] is not None and row[4] >= now:
                    return "running"  # its worker hears of it through cancel_requests()
                # lease ran out: its worker is gone (the request above stops it, should it still be alive)
                db.execute("DELETE FROM messages WHERE id = ?", (row[0],))
            elif row is None:
                row = db.execute("SELECT id, prio, body, NULL, NULL, 0 FROM delayed WHERE app = ? AND queue = ?"
                                 " AND uuid = ?", (app, queue, uuid)).fetchone()
            if row is not None:
                db.execute("DELETE FROM messages WHERE app = ? AND queue = ? AND uuid = ? AND consumer IS NULL",
                           (app, queue, uuid))
                db.execute("DELETE FROM delayed WHERE app = ? AND queue = ? AND uuid = ?", (app, queue, uuid))
                release_unique(db, app, decoded(row[2]))
                if rec:
                    cancel_records(db, app, [uuid], reason, now, self._ttl_ms, row[3])
                else:
                    outcomes = body_outcome(queue, row[1], row[0], row[2], row[5], "cancel", reason)
                status = "queued"
        if status:
            if outcomes:
                await storage.save(outcomes, "")
            return status
        task = await storage.get(uuid, [queue])
        return "finished" if task is not None and task.finished else "unknown"

    async def cancel_requests(self) -> AsyncIterator[tuple[str, str]]:
        """Cancels of running tasks, for this worker to act on.

        SQLite cannot push across processes, so this polls the small
        ``cancel_requests`` table every :data:`CANCEL_POLL` seconds — and only
        re-reads it when ``PRAGMA data_version`` says the file changed — while a
        worker iterates (producers and idle files pay nothing). Requests still
        pending for a live message are yielded first, so a worker that starts
        listening after it fetched does not miss one.
        """
        app = self.app_name
        last = self.conn.read("SELECT coalesce(max(id), 0) FROM cancel_requests")[0][0]
        rows = self.conn.read("SELECT c.id, c.uuid, c.reason FROM cancel_requests c WHERE c.app = ? AND c.id <= ?"
                              " AND EXISTS (SELECT 1 FROM messages m WHERE m.id = c.msg_id) ORDER BY c.id",
                              (app, last))
        version = self.conn.version()
        while not self._closed:
            for _, uuid, reason in rows:
                yield uuid, reason
            await asyncio.sleep(CANCEL_POLL)
            rows = []
            if self.conn.version() != version:
                version = self.conn.version()
                rows = self.conn.read("SELECT id, uuid, reason FROM cancel_requests WHERE app = ? AND id > ?"
                                      " ORDER BY id", (app, last))
                if rows:
                    last = rows[-1][0]

    # ------------------------------------------------------------ dead letters
    async def dead_letters(self, queue: str, count: int = 100) -> list[DeadLetter]:
        # text columns read as bytes: one that holds bytes that are not UTF-8 (written by another tool)
        # would make sqlite3 fail the whole listing; text() shows them escaped instead
        rows = self.conn.read("SELECT id, CAST(uuid AS BLOB), CAST(body AS BLOB), CAST(reason AS BLOB), at, prio"
                              " FROM dead_letters WHERE app = ? AND queue = ? ORDER BY id DESC LIMIT ?",
                              (self.app_name, queue, count))
        return [DeadLetter(id=str(r[0]), uuid=text(r[1]), queue=queue, reason=text(r[3]), at=(r[4] or 0) / 1000,
                           priority=r[5] or 0, task_name=task_name_of(r[2] or b""), body=r[2] or b"") for r in rows]

    def _dead_rows(self, db: sqlite3.Connection, queue: str, ids: Sequence[str] | None) -> list[Any]:
        sql = "SELECT id, prio, uuid, body FROM dead_letters WHERE app = ? AND queue = ?"
        if ids is None:
            return db.execute(sql + " ORDER BY id", (self.app_name, queue)).fetchall()
        rows = []
        for i in ids:
            # an id of another backend, or past SQLite's integers, cannot be here
            if str(i).isascii() and str(i).isdigit() and int(i) < 2**63:
                rows += db.execute(sql + " AND id = ?", (self.app_name, queue, int(i))).fetchall()
        return rows

    async def requeue_dead(self, queue: str, ids: Sequence[str] | None = None) -> int:
        storage = self._storage
        if storage is not None and not self.fused(storage):  # a started worker's foreign storage: records first
            async with self.conn.atx() as db:
                envs = [env for r in self._dead_rows(db, queue, ids) for env in decoded(r[3])]
            if envs:
                await storage.create(envs)
        now = now_ms()
        async with self.conn.atx() as db:
            rows = self._dead_rows(db, queue, ids)
            db.executemany("INSERT INTO messages (app, queue, prio, uuid, body) VALUES (?, ?, ?, ?, ?)",
                           [(self.app_name, queue, prio, uuid, body) for _, prio, uuid, body in rows])
            db.executemany("DELETE FROM dead_letters WHERE id = ?", [(r[0],) for r in rows])
            for r in rows:
                if r[2]:
                    changed(db, now, db.execute(
                        "UPDATE records SET status = 'new', traceback = NULL, \"returning\" = NULL, retry_child = NULL,"
                        " worker_id = NULL, expires_at = NULL, started = NULL, finished = NULL, updated = ?"
                        " WHERE uuid = ? AND app = ? RETURNING app, queue, uuid, task_name",
                        (now, r[2], self.app_name)).fetchall(), "new")
        return len(rows)

    async def purge_dead(self, queue: str, ids: Sequence[str] | None = None) -> int:
        async with self.conn.atx() as db:
            rows = self._dead_rows(db, queue, ids)
            db.executemany("DELETE FROM dead_letters WHERE id = ?", [(r[0],) for r in rows])
        return len(rows)

    # ------------------------------------------------------------------- purge
    async def purge(self, queue: str) -> int:
        app, now = self.app_name, now_ms()
        storage = self._storage
        rec = storage is None or self.fused(storage)
        async with self.conn.atx() as db:
            rows = db.execute("SELECT id, prio, uuid, body FROM messages WHERE app = ? AND queue = ?"
                              " AND consumer IS NULL", (app, queue)).fetchall()
            rows += db.execute("SELECT id, prio, uuid, body FROM delayed WHERE app = ? AND queue = ?",
                               (app, queue)).fetchall()
            db.execute("DELETE FROM messages WHERE app = ? AND queue = ? AND consumer IS NULL", (app, queue))
            db.execute("DELETE FROM delayed WHERE app = ? AND queue = ?", (app, queue))
            release_unique(db, app, (env for r in rows for env in decoded(r[3])))
            cancel_records(db, app, [r[2] for r in rows], PURGED, now, self._ttl_ms)
        if not rec and storage is not None:
            outcomes = [o for r in rows for o in body_outcome(queue, r[1], r[0], r[3], 0, "cancel", PURGED)]
            if outcomes:
                await storage.save(outcomes, "")
        return len(rows)

    # --------------------------------------------------------- slots and claims
    async def acquire(self, key: str, queue: str, limit: int, token: str, ttl: float) -> bool:
        app, now = self.app_name, now_ms()
        expires = now + int(ttl * 1000)
        async with self.conn.atx(patience=None) as db:
            db.execute("DELETE FROM slots WHERE app = ? AND queue = ? AND key = ? AND expires <= ?",
                       (app, queue, key, now))
            if db.execute("UPDATE slots SET expires = ? WHERE app = ? AND queue = ? AND key = ? AND token = ?",
                          (expires, app, queue, key, token)).rowcount:
                return True  # a renewal
            held = db.execute("SELECT count(*) FROM slots WHERE app = ? AND queue = ? AND key = ?",
                              (app, queue, key)).fetchone()[0]
            if held >= limit:
                return False
            db.execute("INSERT INTO slots (app, queue, key, token, expires) VALUES (?, ?, ?, ?, ?)",
                       (app, queue, key, token, expires))
            return True

    async def release_slot(self, key: str, queue: str, token: str) -> None:
        async with self.conn.atx(patience=None) as db:
            db.execute("DELETE FROM slots WHERE app = ? AND queue = ? AND key = ? AND token = ?",
                       (self.app_name, queue, key, token))

    async def slot_holders(self, key: str, queue: str) -> list[str]:
        rows = self.conn.read("SELECT token FROM slots WHERE app = ? AND queue = ? AND key = ?",
                              (self.app_name, queue, key))
        return [r[0] for r in rows]

    async def claim(self, key: str, ttl: float) -> bool:
        app, now = self.app_name, now_ms()
        async with self.conn.atx(patience=None) as db:
            if db.execute("SELECT 1 FROM claims WHERE app = ? AND key = ? AND expires > ?",
                          (app, "c:" + key, now)).fetchone():
                return False
            db.execute("INSERT OR REPLACE INTO claims (app, key, holder, expires) VALUES (?, ?, '', ?)",
                       (app, "c:" + key, now + int(ttl * 1000)))
            return True

    # ---------------------------------------------------- fleet visibility
    async def register_worker(self, info: WorkerInfo) -> None:
        """Upsert the entry, and delete the entries lost for longer than LOST_KEPT: one short write."""
        beat = int(info.heartbeat * 1000)
        async with self.conn.atx(patience=None) as db:
            db.execute("DELETE FROM workers WHERE app = ? AND heartbeat < ?",
                       (self.app_name, now_ms() - int(LOST_KEPT * 1000)))
            db.execute("INSERT OR REPLACE INTO workers (app, key, info, heartbeat) VALUES (?, ?, ?, ?)",
                       (self.app_name, info.key, msgspec.msgpack.encode(info), beat))

    async def unregister_worker(self, info: WorkerInfo) -> None:
        async with self.conn.atx(patience=None) as db:
            db.execute("DELETE FROM workers WHERE app = ? AND key = ?", (self.app_name, info.key))

    async def workers(self, include_lost: bool = False) -> list[WorkerInfo]:
        now = now_ms()
        live = now - int(self.lease_seconds * 1000)
        oldest = now - int(LOST_KEPT * 1000) if include_lost else live
        rows = self.conn.read("SELECT info, heartbeat FROM workers WHERE app = ? AND heartbeat >= ?",
                              (self.app_name, oldest))
        out = []
        for blob, beat in rows:
            try:
                info = _worker_decode(blob)
            except (msgspec.DecodeError, msgspec.ValidationError):  # another version's entry: left alone
                continue
            info.lost = beat < live
            out.append(info)
        return out

    async def queue_depth(self, queue: str) -> QueueDepth:
        app, now = self.app_name, now_ms()
        waiting = dict(self.conn.read(
            "SELECT prio, sum(n) FROM (SELECT prio, count(*) AS n FROM messages WHERE app = ?1 AND queue = ?2"
            " AND consumer IS NULL GROUP BY prio UNION ALL SELECT prio, count(*) FROM delayed WHERE app = ?1"
            " AND queue = ?2 AND due <= ?3 GROUP BY prio) GROUP BY prio", (app, queue, now)))
        flight = dict(self.conn.read("SELECT consumer, count(*) FROM messages WHERE app = ? AND queue = ?"
                                     " AND consumer IS NOT NULL GROUP BY consumer", (app, queue)))
        delayed, dead = self.conn.read(
            "SELECT (SELECT count(*) FROM delayed WHERE app = ?1 AND queue = ?2 AND due > ?3),"
            " (SELECT count(*) FROM dead_letters WHERE app = ?1 AND queue = ?2)", (app, queue, now))[0]
        return QueueDepth(queue=queue, waiting_by_priority=waiting, in_flight_by_worker=flight, delayed=delayed,
                          dead=dead)

    async def queue_stats(self, queue: str) -> QueueStats:
        app, now = self.app_name, now_ms()
        waiting, in_flight, delayed, due, dead = self.conn.read(
            "SELECT (SELECT count(*) FROM messages WHERE app = ?1 AND queue = ?2 AND consumer IS NULL),"
            " (SELECT count(*) FROM messages WHERE app = ?1 AND queue = ?2 AND consumer IS NOT NULL),"
            " (SELECT count(*) FROM delayed WHERE app = ?1 AND queue = ?2),"
            " (SELECT count(*) FROM delayed WHERE app = ?1 AND queue = ?2 AND due <= ?3),"
            " (SELECT count(*) FROM dead_letters WHERE app = ?1 AND queue = ?2)", (app, queue, now))[0]
        return QueueStats(waiting=waiting + due, in_flight=in_flight, delayed=delayed - due, dead=dead)

    # ------------------------------------------------------ published task table
    async def publish_tasks(self, tasks: Mapping[str, TaskSpec]) -> list[str]:
        """Merge into ``task_table`` inside one write transaction: concurrent publishers take turns."""
        async with self.conn.atx() as db:
            rows = db.execute("SELECT name, spec FROM task_table WHERE app = ?", (self.app_name,)).fetchall()
            writes, kept = merge(decode_table(rows), tasks)
            db.executemany("INSERT OR REPLACE INTO task_table (app, name, spec) VALUES (?, ?, ?)",
                           [(self.app_name, n, encode_spec(spec)) for n, spec in writes.items()])
        return kept

    async def published_tasks(self) -> dict[str, TaskSpec]:
        return decode_table(self.conn.read("SELECT name, spec FROM task_table WHERE app = ?", (self.app_name,)))

    async def flush_all(self, queues: Sequence[str]) -> None:
        """Delete every row of this app (its ``app`` column; every queue, so ``queues`` is not needed) but the
        worker registry and ``meta`` (facts about the file, such as that a worker has served it)."""
        async with self.conn.atx() as db:
            for table in ("messages", "delayed", "records", "dead_letters", "cancel_requests", "claims", "slots",
                          "task_table", "logs"):
                db.execute(f"DELETE FROM {table} WHERE app = ?", (self.app_name,))  # noqa: S608 - fixed names
            feed.drop(db, self.app_name)

    # -------------------------------------------------------------- upkeep
    async def trim_indexes(self) -> None:
        """Delete expired records, claims and slots, cancel requests whose message is gone, and events past
        the last :data:`EVENTS_KEPT` of each of this worker's queues (called by the worker's lease keeper every
        minute)."""
        app, now = self.app_name, now_ms()
        async with self.conn.atx(patience=None) as db:
            for q in self._queues:
                feed.trim(db, app, q, EVENTS_KEPT)
            db.execute("DELETE FROM records WHERE expires_at < ? AND app = ?", (now, app))
            db.execute("DELETE FROM claims WHERE expires <= ? AND app = ?", (now, app))
            db.execute("DELETE FROM slots WHERE expires <= ? AND app = ?", (now, app))
            db.execute("DELETE FROM cancel_requests WHERE app = ? AND at < ? AND NOT EXISTS"
                       " (SELECT 1 FROM messages m WHERE m.id = cancel_requests.msg_id)", (app, now - CANCEL_KEEP_MS))
