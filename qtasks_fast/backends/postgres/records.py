"""The writes broker and storage share, each one statement inside the caller's transaction: the enqueue
(records, messages, delayed, feed and the wake-up NOTIFY together), final states, status changes, unique keys.

Batches travel as arrays (``unnest``), so a batch of 10,000 is one statement and one round trip; a big batch of
fresh, undelayed tasks is cheaper to send by binary COPY (:data:`COPY_MIN`, :func:`copy_queue`: its messages,
then its feed and wake-ups, in one transaction). Every status change adds its event-feed rows in the same
statement (:mod:`~qtasks_fast.backends.postgres.feed`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from itertools import repeat
from typing import TYPE_CHECKING, Any

import asyncpg
import msgspec

from qtasks_fast._corelib import encode_envelopes
from qtasks_fast.schemas import META_RESTART_OF, unique_owner

if TYPE_CHECKING:
    from qtasks_fast.abc.broker import Outcome
    from qtasks_fast.schemas import Envelope

#: the feed rows of the status changes a CTE named ``r`` returned (queue, uuid, task_name, status, worker_id)
FEED = ("f AS (INSERT INTO event_batches (app, queue, at, n, items) SELECT $1, queue, $2, count(*),"
        " json_agg(json_build_array(uuid, task_name, status, worker_id)) FROM r GROUP BY queue)")

_ENQUEUE = """
WITH t AS (SELECT * FROM unnest($3::text[], $4::text[], $5::text[], $6::bytea[], $7::bigint[], $8::text[],
                               $9::smallint[], $10::bigint[]) WITH ORDINALITY AS t(u, q, n, b, c, ro, p, due, o)),
r AS (INSERT INTO records (uuid, app, queue, task_name, status, envelope, created, updated, awaited, restart_of)
      SELECT u, $1, q, n, 'new', b, c, $2, $11, ro FROM t WHERE $12 ORDER BY o{conflict}
      RETURNING queue, uuid, task_name, status, worker_id),
{feed},
m AS (INSERT INTO messages (app, queue, prio, uuid, body) SELECT $1, q, p, u, b FROM t
      WHERE $14 AND due <= $2 ORDER BY o),
d AS (INSERT INTO delayed (app, queue, prio, uuid, body, due) SELECT $1, q, p, u, b, due FROM t WHERE $14 AND due > $2)
SELECT pg_notify($13, 'q:' || $1 || ':' || q) FROM (SELECT DISTINCT q FROM t WHERE $14) AS woken
"""
#: the enqueue of a batch whose uuids may have been sent before: their records start over (an upsert)
ENQUEUE = _ENQUEUE.format(feed=FEED, conflict="""
      ON CONFLICT (uuid) DO UPDATE SET app = excluded.app, queue = excluded.queue, task_name = excluded.task_name,
        status = 'new', envelope = excluded.envelope, created = excluded.created, updated = excluded.updated,
        "returning" = NULL, traceback = NULL, worker_id = NULL, retry_child = NULL, awaited = excluded.awaited,
        expires_at = NULL, deliveries = 1, started = NULL, finished = NULL, restart_of = excluded.restart_of""")
#: the same for new uuids, nearly every batch: a plain insert, cheaper than the upsert's speculative insertion
#: per row; a batch it refuses (a uuid already there) is sent again as :data:`ENQUEUE`
ENQUEUE_NEW = _ENQUEUE.format(feed=FEED, conflict="")

FINISH = f"""
WITH t AS (SELECT * FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::bytea[], $8::bigint[],
                               $9::bytea[], $10::text[], $11::text[], $12::integer[], $13::text[])
           AS t(u, q, n, s, b, c, ret, tb, child, dl, ro)),
r AS (INSERT INTO records (uuid, app, queue, task_name, status, envelope, created, updated, "returning", traceback,
                           worker_id, retry_child, expires_at, deliveries, finished, restart_of)
      SELECT u, $1, q, n, s, b, c, $2, ret, tb, $14, child, $2::bigint + $15::bigint, dl, $2, ro FROM t
      ON CONFLICT (uuid) DO UPDATE SET status = excluded.status, updated = excluded.updated,
        finished = excluded.finished, "returning" = excluded."returning", traceback = excluded.traceback,
        worker_id = excluded.worker_id, retry_child = excluded.retry_child, expires_at = excluded.expires_at,
        deliveries = excluded.deliveries
      RETURNING queue, uuid, task_name, status, worker_id, awaited),
{FEED},
acked AS (DELETE FROM messages WHERE id = ANY($17::bigint[]))
SELECT pg_notify($16, 'd:' || uuid) FROM r WHERE awaited
"""

_QUEUE = """
WITH t AS (SELECT * FROM unnest($3::text[], $4::text[], $5::text[], $6::bytea[], $7::bigint[], $8::text[],
                               $9::smallint[], $10::bigint[]) WITH ORDINALITY AS t(u, q, n, b, c, ro, p, due, o)),
{forget}f AS (INSERT INTO event_batches (app, queue, at, n, items) SELECT $1, fq, $2, fn, fj
      FROM unnest($15::text[], $16::integer[], $17::json[]) AS x(fq, fn, fj) WHERE $12),
m AS (INSERT INTO messages (app, queue, prio, uuid, body, task_name, created, awaited, restart_of)
      SELECT $1, q, p, u, b, n, c, $11, ro FROM t WHERE $14 AND due <= $2 ORDER BY o),
d AS (INSERT INTO delayed (app, queue, prio, uuid, body, due, task_name, created, awaited, restart_of)
      SELECT $1, q, p, u, b, due, n, c, $11, ro FROM t WHERE $14 AND due > $2)
SELECT pg_notify($13, 'q:' || $1 || ':' || q) FROM unnest($15::text[]) AS w(q) WHERE $14
"""
#: the enqueue of a fused app (its records in this schema): a queued task is its message alone (migration 5), with
#: what the query side shows of it; a re-sent uuid's old record goes (the task starts over). ``$11`` is
#: ``awaited``; the parameters are :data:`ENQUEUE`'s, then the batch's feed as :func:`feed_rows` builds it
QUEUE = _QUEUE.format(forget="x AS (DELETE FROM records WHERE uuid IN (SELECT u FROM t)),\n")
#: the same for a batch the producer has just minted the uuids of (:class:`~qtasks_fast.schemas.Minted`, every
#: ``add_tasks`` without middlewares): none can have a record, so no delete, whose primary-key probe per task was
#: a third of the statement's server CPU on a table of 300,000 records
QUEUE_FRESH = _QUEUE.format(forget="")

#: a fused enqueue of at least this many minted tasks, none delayed, goes by binary COPY (:func:`copy_queue`): its
#: three extra round trips (BEGIN and COMMIT outside a caller's transaction, the feed's statement) cost about what
#: it saves at 128-256 tasks, and it is ahead from 512 on (1.28x at 1,000: issue 15, ``benchmarks/RESULTS.md``)
COPY_MIN = 512
#: the first part of a batch handed over in parts (:func:`stream_sizes`), and how much bigger each next one is
STREAM_FIRST = 128
STREAM_GROWTH = 2
#: the columns a queued message gets from the producer (the others keep their defaults: ready, never delivered)
MESSAGE_COLUMNS = ("app", "queue", "prio", "uuid", "body", "task_name", "created", "awaited", "restart_of")
#: the feed rows and wake-ups of a batch whose messages went by COPY: :data:`QUEUE`'s ``f`` and its NOTIFY
#: (``$4..$6`` as :func:`feed_rows` builds them; a queue may have a row per part, :func:`copy_stream`)
QUEUE_FEED = """
WITH f AS (INSERT INTO event_batches (app, queue, at, n, items) SELECT $1, fq, $2, fn, fj
      FROM unnest($4::text[], $5::integer[], $6::json[]) AS x(fq, fn, fj))
SELECT pg_notify($3, 'q:' || $1 || ':' || q) FROM (SELECT DISTINCT q FROM unnest($4::text[]) AS w(q)) AS woken
"""

#: the fused settle's usual statement: deletes the messages (``$10``: every acked message id, by primary key — a join
#: with the ids was planned as a scan of the whole queue; ``$11``: those with no envelope, deleted whatever they
#: carry) and writes the final records of those it deleted, once, from what
#: the message carries (queue, name, envelope, created, restart_of, awaited as a waiter flagged it first, start
#: time), with their feed rows and the waiters' NOTIFY; returns the uuids written. An outcome whose message was
#: gone (settled by whoever took it over) or carries nothing to show (enqueued before migration 5 or by a foreign
#: producer) is left to :data:`FINISH`, which upserts its record from the envelope the worker holds. The delete
#: and the insert are one statement: a message is gone only with its task's final state stored. A plain insert
#: (:data:`SETTLE_NEW`, nearly always: a queued task has no record) or, for a record already there, an upsert
_SETTLE = """
WITH t AS (SELECT * FROM unnest($3::text[], $4::text[], $5::bytea[], $6::text[], $7::text[], $8::integer[])
           AS t(u, s, ret, tb, child, dl)),
m AS (DELETE FROM messages WHERE messages.id = ANY($10::bigint[])
        AND (messages.task_name IS NOT NULL OR messages.id = ANY($11::bigint[]))
      RETURNING messages.id, messages.uuid, messages.queue, messages.task_name, messages.body, messages.created,
        messages.awaited, messages.restart_of, messages.started),
r AS (INSERT INTO records (uuid, app, queue, task_name, status, envelope, created, updated, "returning", traceback,
                           worker_id, retry_child, awaited, expires_at, deliveries, started, finished, restart_of)
      SELECT DISTINCT ON (t.u) t.u, $1, m.queue, m.task_name, t.s, m.body, m.created, $2, t.ret, t.tb, $9, t.child,
             m.awaited, $2::bigint + $12::bigint, t.dl, m.started, $2, m.restart_of
        FROM t JOIN m ON m.uuid = t.u ORDER BY t.u, m.id DESC{conflict}
      RETURNING queue, uuid, task_name, status, worker_id, awaited),
{feed}
SELECT r.uuid FROM r LEFT JOIN LATERAL (SELECT pg_notify($13, 'd:' || r.uuid) WHERE r.awaited) AS w ON true
"""
SETTLE = _SETTLE.format(feed=FEED, conflict="""
      ON CONFLICT (uuid) DO UPDATE SET status = excluded.status, updated = excluded.updated,
        finished = excluded.finished, "returning" = excluded."returning", traceback = excluded.traceback,
        worker_id = excluded.worker_id, retry_child = excluded.retry_child, expires_at = excluded.expires_at,
        deliveries = excluded.deliveries, awaited = records.awaited OR excluded.awaited,
        started = coalesce(excluded.started, records.started)""")
SETTLE_NEW = _SETTLE.format(feed=FEED, conflict="")

#: the record of a queued or running task (its message or delayed row, migration 5) written as it stands, before
#: a control path (cancel, purge, dead letter) ends it with the record statements of the older schema; a task
#: that has a record keeps it. ``$3`` the uuids (NULL: every waiting task of queue ``$4``), ``$2`` now
MATERIALIZE = """
INSERT INTO records (uuid, app, queue, task_name, status, envelope, created, updated, awaited, restart_of, worker_id,
                     started, deliveries)
SELECT DISTINCT ON (uuid) uuid, app, queue, task_name, 'new', body, coalesce(created, $2), $2, awaited, restart_of,
       worker_id, started, deliveries FROM (
  SELECT uuid, app, queue, task_name, body, created, awaited, restart_of, worker_id, started,
         greatest(deliveries, 1) AS deliveries, id, 0 AS src FROM messages
   WHERE app = $1 AND task_name IS NOT NULL AND (uuid = ANY($3::text[]) OR ($3 IS NULL AND queue = $4
         AND consumer IS NULL))
  UNION ALL
  SELECT uuid, app, queue, task_name, body, created, awaited, restart_of, NULL, NULL, 1, id, 1 FROM delayed
   WHERE app = $1 AND task_name IS NOT NULL AND (uuid = ANY($3::text[]) OR ($3 IS NULL AND queue = $4))) AS q
ORDER BY uuid, src, id
ON CONFLICT (uuid) DO NOTHING
"""


async def materialize(conn: asyncpg.Connection, app: str, now: int, uuids: Sequence[str] | None,
                      queue: str | None = None) -> None:
    """Write the ``new``/``process`` records of queued tasks (see :data:`MATERIALIZE`) inside ``conn``'s
    transaction, so the record statements of a rare control path find them."""
    await conn.execute(MATERIALIZE, app, now, None if uuids is None else [u for u in uuids if u], queue)


def pg_text(value: str) -> str:
    """``value`` as PostgreSQL ``text`` can hold it: NUL written ``\\x00`` and code points UTF-8 cannot encode (lone
    surrogates) backslash-escaped, so a task's odd error text, log line or name is stored, never refused (a
    refused settle would stop the worker and re-run every other task of its batch). ``docs/postgres.md`` says so."""
    if value.isascii():
        return value.replace("\x00", "\\x00") if "\x00" in value else value
    value = value.replace("\x00", "\\x00")
    try:
        value.encode()
    except UnicodeEncodeError:
        return value.encode("utf-8", "backslashreplace").decode()
    return value


def _opt(value: str | None) -> str | None:
    return None if value is None else pg_text(value)


def envelope_rows(envelopes: Sequence[Envelope], blobs: Sequence[bytes], now: int, top: int) -> list[Any]:
    """The array parameters ($3..$10) of :data:`ENQUEUE` for a batch."""
    cols: list[list[Any]] = [[], [], [], [], [], [], [], []]
    for e, b in zip(envelopes, blobs, strict=True):
        cols[0].append(e.uuid)
        cols[1].append(pg_text(e.queue))
        cols[2].append(pg_text(e.task_name))
        cols[3].append(b)
        cols[4].append(round(e.created_at * 1000) or now)
        cols[5].append(_opt(e.meta.get(META_RESTART_OF)) if e.meta else None)
        cols[6].append(min(max(e.priority, 0), top))  # out-of-range priorities are clamped, never unread
        cols[7].append(int(e.eta * 1000) if e.eta else 0)
    return cols


def feed_rows(uuids: Sequence[str], names: Sequence[str], queues: Sequence[str]) -> tuple[list[str], list[int],
                                                                                         list[str]]:
    """The feed parameters ($15..$17) of :data:`QUEUE`: each queue of the batch (first seen first), its number of
    tasks and their ``new`` events, ``[[uuid, name, "new", null], ...]`` in batch order, as JSON text encoded here
    in one C call: the server's ``json_agg`` and its two sorts were an eighth of the statement's CPU (measured,
    0.87x without them), the encoding costs the producer ~0.3 µs per task. Readers parse it (``feed.read``)."""
    by: dict[str, list[list[Any]]] = {}
    for u, n, q in zip(uuids, names, queues, strict=True):
        items = by.get(q)
        if items is None:
            items = by[q] = []
        items.append([u, n, "new", None])
    return list(by), [len(v) for v in by.values()], [_json(v).decode() for v in by.values()]


_json = msgspec.json.Encoder().encode


async def enqueue_rows(conn: asyncpg.Connection, app: str, envelopes: Sequence[Envelope], blobs: Sequence[bytes],
                       wait: bool, rec: bool, now: int, top: int, channel: str, records_only: bool = False,
                       fresh: bool = False) -> None:
    """Messages (delayed ones by due time), their ``new`` records when ``rec``, the feed and the wake-up; with
    ``records_only`` the records alone (a storage serving another broker). A uuid sent twice in one batch goes
    out in a second statement (an upsert cannot touch one row twice), as if sent again. ``fresh``: every uuid
    was just minted (:class:`~qtasks_fast.schemas.Minted`), so the fused enqueue looks for no old record.

    Outside a transaction (the producer's own enqueue) a batch is one statement, its own transaction: no
    ``BEGIN``/``COMMIT`` round trips, and a plain insert of the records first (a re-sent uuid makes it fail
    whole, and the batch goes again as the upsert). Inside one (a caller's transactional enqueue, a worker's
    retries) a failed statement would abort the caller's transaction, so the upsert is used at once."""
    runs = _distinct_runs(list(zip(envelopes, blobs, strict=True)))
    if len(runs) > 1 and not conn.is_in_transaction():
        async with conn.transaction():  # the runs commit together
            await enqueue_rows(conn, app, envelopes, blobs, wait, rec, now, top, channel, records_only, fresh)
        return
    for part in runs:
        args = (app, now, *envelope_rows([e for e, _ in part], [b for _, b in part], now, top), wait, rec, channel,
                not records_only)
        if rec and not records_only and fresh and len(part) >= COPY_MIN and max(args[9]) <= now:
            if conn.is_in_transaction():
                await copy_queue(conn, args)
            else:
                async with conn.transaction():
                    await copy_queue(conn, args)
            continue
        if rec and not records_only:  # the fused enqueue: messages alone (no record until the settle)
            await conn.execute(QUEUE_FRESH if fresh else QUEUE, *args, *feed_rows(args[2], args[4], args[3]))
            continue
        if rec and not conn.is_in_transaction():
            try:
                await conn.execute(ENQUEUE_NEW, *args)
                continue
            except asyncpg.UniqueViolationError:  # a uuid sent before: nothing of the statement was written
                pass
        await conn.execute(ENQUEUE, *args)


async def copy_queue(conn: asyncpg.Connection, args: tuple[Any, ...]) -> None:
    """The fused enqueue of a big minted batch with no delayed task (:data:`QUEUE_FRESH`'s ``args``) inside
    ``conn``'s open transaction: the messages by binary COPY, in batch order (ids stay FIFO), then their feed
    rows and wake-ups in one statement. The same rows as the statement writes; what it saves is the producer's
    encoding of eight array parameters (asyncpg's binary COPY encodes row tuples in C) and the server's
    ``unnest``, CTE and sort."""
    app, now, u, q, n, b, c, ro, p, _due, wait = args[:11]
    await conn.copy_records_to_table("messages", columns=MESSAGE_COLUMNS,
                                     records=zip(repeat(app), q, p, u, b, n, c, repeat(wait), ro, strict=False))
    await conn.execute(QUEUE_FEED, app, now, args[12], *feed_rows(u, n, q))


def stream_sizes(count: int) -> list[int]:
    """How :func:`copy_stream` wants a batch of ``count`` cut: whole below :data:`COPY_MIN`; else a first part of
    :data:`STREAM_FIRST`, each next one :data:`STREAM_GROWTH` times the one before, the last taking the rest
    (1,000: 128, 256, 616). Why growing: the server stores a part in about the time (or more) the producer takes
    to build a part twice as big (~8 against ~3.5 µs a task), so each part is ready when the one before is stored
    and the server waits only for the small first one; every part costs one more round trip, so few (equal parts
    of 100-200 were no better, measured: issue 15, ``benchmarks/RESULTS.md``)."""
    if count < COPY_MIN:
        return [count]
    sizes: list[int] = []
    size, left = STREAM_FIRST, count
    while left:
        take = size if left - size >= STREAM_GROWTH * size else left
        sizes.append(take)
        left -= take
        size = round(size * STREAM_GROWTH)
    return sizes


async def copy_stream(conn: asyncpg.Connection, app: str, parts: Iterable[Sequence[Envelope]], wait: bool, now: int,
                      top: int, channel: str) -> None:
    """The fused enqueue of one call's minted batch, handed over in parts (``PgBroker.enqueue_parts``), inside
    ``conn``'s open transaction: each part's messages by binary COPY, sent as soon as the part is built, and the
    next part built (``next(parts)``: the producer's Python) while the server inserts the previous one; then the
    whole batch's feed rows and wake-ups in one statement, as :func:`copy_queue` writes them. Why: one call's
    building (~3 µs a task) and the server's insert (~8 µs) ran one after the other; now mostly side by side, for
    one extra round trip per part (issue 15, ``benchmarks/RESULTS.md``). A part with a delayed task (none from
    ``add_tasks``, but the contract allows it) goes by :func:`enqueue_rows` with its own feed."""
    # the feed: a row per queue per part, in batch order (built here, while the server stores the part before)
    feed_q: list[str] = []
    feed_n: list[int] = []
    feed_j: list[str] = []
    sending: asyncio.Task[str] | None = None
    try:
        for part in parts:  # builds the next part while the previous one's COPY is on the server
            cols = envelope_rows(part, encode_envelopes(list(part)), now, top)
            u, q, n, b, c, ro, p, due = cols
            delayed = max(due, default=0) > now
            if not delayed:
                fq, fn, fj = feed_rows(u, n, q)
                feed_q += fq
                feed_n += fn
                feed_j += fj
            if sending is not None:
                await sending  # one statement at a time on a connection
                sending = None
            if delayed:
                await enqueue_rows(conn, app, part, b, wait, True, now, top, channel, fresh=True)
                continue
            sending = asyncio.ensure_future(conn.copy_records_to_table(
                "messages", columns=MESSAGE_COLUMNS,
                records=zip(repeat(app), q, p, u, b, n, c, repeat(wait), ro, strict=False)))
            await asyncio.sleep(0)  # the COPY writes its rows to the socket now, before the next part is built
        if sending is not None:
            await sending
            sending = None
    finally:
        if sending is not None:  # building a part failed (a bad argument): the COPY in flight ends before the rollback
            await asyncio.wait([sending])
            if not sending.cancelled():
                sending.exception()  # seen: the build's error is the one raised
    if feed_q:
        await conn.execute(QUEUE_FEED, app, now, channel, feed_q, feed_n, feed_j)


def _distinct_runs(items: list[tuple[Envelope, bytes]]) -> list[list[tuple[Envelope, bytes]]]:
    """``items`` in order, cut where a uuid repeats: each run holds a uuid at most once (one run, nearly always)."""
    runs: list[list[tuple[Envelope, bytes]]] = [[]]
    seen: set[str] = set()
    for item in items:
        if item[0].uuid in seen:
            runs.append([])
            seen = set()
        seen.add(item[0].uuid)
        runs[-1].append(item)
    return runs


async def finish_records(conn: asyncpg.Connection, app: str, outcomes: Sequence[Outcome], worker_id: str, now: int,
                         ttl_ms: int, channel: str, ack: Sequence[int] = ()) -> None:
    """Final states (an upsert: a message whose record is gone still reports); wakes awaited ones' waiters; deletes
    the messages ``ack`` names in the same statement (the fused settle: one round trip)."""
    cols: list[list[Any]] = [[] for _ in range(11)]
    # one outcome per uuid (the last): an upsert cannot touch a row twice, and a worker retrying a settle after an
    # outage may hold two outcomes of one task (its message was handed out again meanwhile); every message is acked
    last = {o[0].envelope.uuid: o for o in outcomes if o[0].envelope is not None}
    for d, status, ret, tb, child in last.values():
        env = d.envelope
        assert env is not None, "settled deliveries always carry their envelope"
        raw = d.raw if isinstance(d.raw, bytes) else msgspec.msgpack.encode(env)
        for col, value in zip(cols, (env.uuid, pg_text(d.queue), pg_text(env.task_name), status, raw,
                                     round(env.created_at * 1000) or now, ret, pg_text(tb) or None,
                                     _opt(child) or None, d.deliveries or 1,
                                     _opt(env.meta.get(META_RESTART_OF)) if env.meta else None),
                              strict=True):
            col.append(value)
    await conn.execute(FINISH, app, now, *cols, _opt(worker_id) or None, ttl_ms, channel, list(ack))


async def settle_records(conn: asyncpg.Connection, app: str, outcomes: Sequence[Outcome], worker_id: str, now: int,
                         ttl_ms: int, channel: str) -> None:
    """The fused settle: final states, feed, waiters' NOTIFY and the ack of every outcome's message. One
    statement (:data:`SETTLE`, atomic by itself) when every message is still there, which is nearly always; the
    outcomes whose message is gone (settled or ended by someone else meanwhile) then go through
    :func:`finish_records`, which upserts their records from the envelopes held here. A message is acked only in
    the statement that stored its task's final state."""
    last = {o[0].envelope.uuid: o for o in outcomes if o[0].envelope is not None}
    cols: list[list[Any]] = [[] for _ in range(6)]
    for d, status, ret, tb, child in last.values():
        for col, value in zip(cols, (d.envelope.uuid, status, ret, pg_text(tb) or None, _opt(child) or None,
                                     d.deliveries or 1), strict=True):
            col.append(value)
    ids = [o[0].msg_id for o in outcomes]
    bare = [o[0].msg_id for o in outcomes if o[0].envelope is None]
    args = (app, now, *cols, _opt(worker_id) or None, ids, bare, ttl_ms, channel)
    rows = None
    if not conn.is_in_transaction():  # a failed statement would abort a caller's transaction
        try:
            rows = await conn.fetch(SETTLE_NEW, *args)
        except asyncpg.UniqueViolationError:  # a record already there: nothing of the statement was written
            pass
    if rows is None:
        rows = await conn.fetch(SETTLE, *args)
    if len(rows) < len(last):
        written = {r["uuid"] for r in rows}
        gone = [o for o in outcomes if o[0].envelope is not None and o[0].envelope.uuid not in written]
        await finish_records(conn, app, gone, worker_id, now, ttl_ms, channel, ack=[o[0].msg_id for o in gone])


async def changed(conn: asyncpg.Connection, app: str, now: int, sql: str, *args: Any) -> list[Any]:
    """Run ``sql`` (an UPDATE ... RETURNING queue, uuid, task_name, status, worker_id) with its feed rows in
    the same statement; ``$1``/``$2`` are the app and now. Returns the changed rows."""
    return list(await conn.fetch(f"WITH r AS ({sql}), {FEED} SELECT * FROM r", app, now, *args))


async def cancel_records(conn: asyncpg.Connection, app: str, uuids: Sequence[str], reason: str, now: int,
                         ttl_ms: int, channel: str) -> None:
    """Existing records of ``uuids`` to ``cancel`` (the reason where a traceback would be); wakes waiters."""
    rows = await changed(conn, app, now, "UPDATE records SET status = 'cancel', traceback = $3, \"returning\" = NULL,"
                         " updated = $2, finished = $2, expires_at = $2::bigint + $4::bigint"
                         " WHERE app = $1 AND uuid = ANY($5::text[])"
                         " RETURNING queue, uuid, task_name, status, worker_id, awaited",
                         pg_text(reason), ttl_ms, [u for u in uuids if u])
    await notify_done(conn, channel, [r["uuid"] for r in rows if r["awaited"]])


async def notify_done(conn: asyncpg.Connection, channel: str, uuids: Sequence[str]) -> None:
    if uuids:
        await conn.execute("SELECT pg_notify($1, 'd:' || u) FROM unnest($2::text[]) AS u", channel, list(uuids))


async def claim_unique(conn: asyncpg.Connection, app: str, envelopes: Sequence[Envelope], now: int,
                       default_ttl: float) -> dict[str, str]:
    """Claim the ``META_UNIQUE`` keys of a batch (per queue); ``{skipped uuid: holder uuid}`` for held ones."""
    from qtasks_fast.schemas import META_UNIQUE

    skipped: dict[str, str] = {}
    for env in envelopes:
        spec = env.meta.get(META_UNIQUE) if env.meta else None
        if not spec:
            continue
        key, ttl = pg_text(f"u:{env.queue}:{spec[0]}"), (spec[1] if len(spec) > 1 and spec[1] else default_ttl)
        holder = await conn.fetchval(
            "INSERT INTO claims (app, key, holder, expires) VALUES ($1, $2, $3, $4) ON CONFLICT (app, key) DO UPDATE"
            " SET holder = excluded.holder, expires = excluded.expires WHERE claims.expires <= $5 RETURNING holder",
            app, key, env.uuid, now + int(float(ttl) * 1000), now)
        if holder is None:
            skipped[env.uuid] = await conn.fetchval("SELECT holder FROM claims WHERE app = $1 AND key = $2", app, key)
    return skipped


async def unclaim_unique(conn: asyncpg.Connection, app: str, envelopes: Sequence[Envelope]) -> None:
    """Give back the keys :func:`claim_unique` took for ``envelopes`` (an enqueue that failed after claiming)."""
    from qtasks_fast.schemas import META_UNIQUE

    rows = [(app, pg_text(f"u:{env.queue}:{spec[0]}"), env.uuid) for env in envelopes
            if env.meta and (spec := env.meta.get(META_UNIQUE))]
    if rows:
        await conn.executemany("DELETE FROM claims WHERE app = $1 AND key = $2 AND holder = $3", rows)


async def release_unique(conn: asyncpg.Connection, app: str, envelopes: Iterable[Envelope | None]) -> None:
    """Give back the callers' unique keys of tasks that ended in error or cancel, each only while it still names
    its holder (a key claimed again since belongs to the new call)."""
    rows = [(app, pg_text(f"u:{env.queue}:{owner[0]}"), owner[1]) for env in envelopes
            if env is not None and env.meta and (owner := unique_owner(env)) is not None]
    if rows:
        await conn.executemany("DELETE FROM claims WHERE app = $1 AND key = $2 AND holder = $3", rows)
