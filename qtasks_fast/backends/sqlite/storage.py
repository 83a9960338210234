"""Task records in the ``records`` table of the embedded SQLite file.

Shares :class:`~qtasks_fast.backends.sqlite.broker.SqliteConnection` with ``SqliteBroker``
on the same file, so the broker writes records inside its own transactions and
this class mostly reads. ``wait`` polls: unlike Redis (BLPOP) there is no
server that could push a "finished" notice across processes, so the waiter
re-reads one primary-key row with a backoff from 5 ms to 50 ms — cheap, and a
result shows up at most ~50 ms late. Expired records (``expires_at`` passed)
read as absent and are deleted on sight; ``SqliteBroker.trim_indexes`` sweeps
the rest.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from qtasks_fast.abc.storage import Storage
from qtasks_fast.backends.sqlite import seen as sqlite_seen
from qtasks_fast.backends.sqlite.db import (
    SqliteConnection,
    append_logs,
    at_boundary,
    finish_records,
    insert_records,
    mark_process,
    now_ms,
    suppress_locked,
)
from qtasks_fast.backends.sqlite.held import holder, running
from qtasks_fast.backends.sqlite.query import SqliteQueries
from qtasks_fast.schemas import Envelope, Task, TaskStatus, task_from_envelope, ts_to_dt
from qtasks_fast.steps import Sleep, Steps, run, run_sync

if TYPE_CHECKING:
    from qtasks_fast.abc.broker import Delivery, Outcome

_env_decode = msgspec.msgpack.Decoder(Envelope).decode
COLUMNS = ("status, envelope, created, updated, \"returning\", traceback, worker_id, retry_child, queue, expires_at,"
           " deliveries")
#: first and longest pause of the polling ``wait``
POLL_MIN, POLL_MAX = 0.005, 0.05


def row_to_task(row: Sequence[Any]) -> Task:
    """Build a ``Task`` from a ``records`` row selected as :data:`COLUMNS`."""
    status, blob, created, updated, raw, tb, worker, child, queue = row[:9]
    env = _env_decode(blob)
    return task_from_envelope(env, status, updated=(updated or created or 0) / 1000, returning=raw or b"",
                              traceback=tb, retry_child=child, worker_id=worker, queue=queue,
                              created=ts_to_dt(created / 1000) if created else None, deliveries=row[10] or 1)


@at_boundary
class SqliteStorage(SqliteQueries, Storage):
    """Records in a SQLite file; pass the broker's ``conn`` (or the same path) to fuse writes. The query side:
    :mod:`~qtasks_fast.backends.sqlite.query`."""

    def __init__(self, path: str, *, app_name: str = "QueueTasks", connection: SqliteConnection | None = None,
                 result_ttl: float = 86400.0) -> None:
        self.path = path
        self.conn = connection or SqliteConnection.for_path(path)
        self.app_name = app_name
        self.result_ttl = result_ttl

    def __repr__(self) -> str:
        return f"SqliteStorage({self.path!r}, app={self.app_name!r})"

    # Writes for a foreign broker; SqliteBroker on the same file does them in its own transactions.
    def create_sync(self, envelopes: Sequence[Envelope], wait: bool = False) -> None:
        blobs = [msgspec.msgpack.encode(e) for e in envelopes]
        with self.conn.tx() as db:
            insert_records(db, self.app_name, envelopes, blobs, wait, now_ms())

    async def create(self, envelopes: Sequence[Envelope], wait: bool = False) -> None:
        await self.conn.retrying(self.create_sync, envelopes, wait)

    # the worker's writes wait for a lock as long as it is held (patience=None), never blocking its loop
    async def save(self, outcomes: Sequence[Outcome], worker_id: str) -> None:
        async with self.conn.atx(patience=None) as db:
            finish_records(db, self.app_name, outcomes, worker_id, now_ms(), int(self.result_ttl * 1000))

    async def mark_started(self, deliveries: Sequence[Delivery], worker_id: str) -> None:
        uuids = [d.envelope.uuid for d in deliveries if d.envelope is not None]
        if uuids:
            async with self.conn.atx(patience=None) as db:
                mark_process(db, uuids, worker_id, now_ms())

    async def append_logs(self, uuid: str, queue: str, lines: Sequence[str]) -> None:
        if lines:
            async with self.conn.atx(patience=None) as db:
                append_logs(db, self.app_name, queue, uuid, lines, now_ms(), int(self.result_ttl * 1000))

    async def get_logs(self, uuid: str, queue: str) -> list[str]:
        return self.get_logs_sync(uuid, queue)

    def get_logs_sync(self, uuid: str, queue: str) -> list[str]:
        rows = self.conn.read("SELECT line FROM logs WHERE app = ? AND uuid = ? AND queue = ? AND expires_at > ? "
                              "ORDER BY id", (self.app_name, uuid, queue, now_ms()))
        return [r[0] for r in rows]

    async def delete_finished(self, queues: Sequence[str]) -> int:
        if not queues:
            return 0
        marks = ",".join("?" * len(queues))
        where = f"app = ? AND queue IN ({marks}) AND status IN ('success', 'error', 'cancel')"
        params = (self.app_name, *queues)
        async with self.conn.atx(patience=None) as db:
            db.execute(f"DELETE FROM logs WHERE app = ? AND uuid IN (SELECT uuid FROM records WHERE {where})",
                       (self.app_name, *params))
            return int(db.execute(f"DELETE FROM records WHERE {where}", params).rowcount)

    # ------------------------------------------------------------------ reads
    def get_sync(self, uuid: str, queues: Sequence[str]) -> Task | None:
        rows = self.conn.read(f"SELECT {COLUMNS} FROM records WHERE uuid = ? AND app = ?", (uuid, self.app_name))
        if not rows:
            return None
        row = rows[0]
        if row[9] is not None and row[9] <= now_ms():
            with suppress_locked():  # expired: gone, as a Redis key with a TTL would be (the sweep retries)
                with self.conn.tx() as db:
                    db.execute("DELETE FROM records WHERE uuid = ? AND expires_at <= ?", (uuid, now_ms()))
            return None
        if queues and row[8] not in queues:
            return None  # records are per queue, as in Redis
        if row[0] == "new" and (who := holder(self.conn, self.app_name, row[8], uuid)) is not None:
            row = running(row, 0, 6, 3, who)  # handed out: running (the fetch wrote no record, see held.py)
        return row_to_task(row)

    async def get(self, uuid: str, queues: Sequence[str]) -> Task | None:
        return self.get_sync(uuid, queues)

    def _watch(self, uuid: str, queues: Sequence[str]) -> Task | None:
        """The record, flagged as awaited (kept for dashboards; no push channel depends on it here)."""
        task = self.get_sync(uuid, queues)
        if task is not None and not task.finished:
            with suppress_locked():  # a dashboard hint only: not worth waiting for a lock
                with self.conn.tx() as db:
                    db.execute("UPDATE records SET awaited = 1 WHERE uuid = ?", (uuid,))
        return task

    def _next(self, task: Task, deadline: float) -> str | None:
        """The uuid to wait on next: the retry child of a failed attempt while time is left, else None."""
        if task.status == TaskStatus.ERROR.value and task.retry_child_uuid and time.monotonic() < deadline:
            return str(task.retry_child_uuid)
        return None

    def _waiting(self, uuid: str, queues: Sequence[str], timeout: float) -> Steps[Task | None]:
        """The polling wait, as steps (qtasks_fast.steps): yields the pauses, returns the answer.

        One loop for :meth:`wait` and :meth:`wait_sync`, which differ only in how they sleep. SQLite has
        no push channel across processes, so this polls with backoff (``POLL_MIN`` .. ``POLL_MAX``).
        """
        deadline = time.monotonic() + timeout
        task = self._watch(uuid, queues)
        delay = POLL_MIN
        while task is not None:
            if task.finished:
                child = self._next(task, deadline)
                if child is None:
                    return task
                uuid, queues = child, [task.queue]  # follow the retry chain
                task = self._watch(uuid, queues) or task  # a vanished child: the failed parent is the answer
                if str(task.uuid) != uuid:
                    return task
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                sqlite_seen.timed_out(self.conn, self.app_name)  # when no worker ever used the file: say so
                return task
            yield Sleep(min(delay, left))
            delay = min(delay * 2, POLL_MAX)
            task = self.get_sync(uuid, queues) or task
        return None

    async def wait(self, uuid: str, queues: Sequence[str], timeout: float, fresh: bool = False) -> Task | None:
        return await run(self._waiting(uuid, queues, timeout))

    def wait_sync(self, uuid: str, queues: Sequence[str], timeout: float, fresh: bool = False) -> Task | None:
        return run_sync(self._waiting(uuid, queues, timeout))

    async def close(self) -> None:
        """The handle is shared with the broker and reopens lazily; nothing to do per storage."""

    def close_sync(self) -> None:
        """Close the file handle (the client's ``close()``); it reopens lazily."""
        self.conn.close()
