"""Versioned schema migrations of the PostgreSQL backend, applied on start and by ``qtasks-fast migrate``.

Each migration is ``(version, name, sql)``; applied versions are rows of ``schema_migrations``. They run in one
transaction under an advisory lock on the schema's name, so workers starting together apply each exactly once
and a failed one leaves nothing half done. Add a migration at the end; never edit one that shipped.

Tables (times are milliseconds since the epoch, ``bigint``): ``messages`` holds only unfinished work (ready:
``consumer IS NULL``; handed out until ``lease_until``) and is the only table a claim reads, so finished tasks
never slow a claim down: a settle deletes the message and writes the ``records`` row. ``delayed`` holds
messages until their ``due``; ``records`` the task records (the query side's indexes; half of each page left
free, so the claim's ``process`` mark is an in-page HOT update); ``event_batches`` the
event feed (one row per queue per written batch, ``tx`` = the writing transaction's id, see
:mod:`~qtasks_fast.backends.postgres.feed`); the rest are as in the SQLite backend. The function ``claim_ready``
(migration 4, rewritten by 5) is a busy worker's claim in one round trip (``PgBroker``'s ``CLAIM``).

Since migration 5 a queued task is its ``messages`` (or ``delayed``) row alone, carrying what the query side shows
of it (``task_name``, ``created``, ``awaited``, ``restart_of``, and once claimed ``worker_id``/``started``): its
``records`` row is written once, by the statement that settles it and deletes the message (or by a control path
that ends it while queued: cancel, purge, dead letter). The view ``tasks`` is what the query side reads: the
records, plus the queued and running tasks that have none (a uuid sent again while queued has one once its first
message settles); that test is a scalar subquery, a primary-key probe per queued row, because a ``NOT EXISTS``
may be planned as a hash anti-join that reads every record. A queued task thus costs its enqueue one table's row
and two small indexes instead of two rows and five index entries, and its claim one row update, not two.

Migration 6 makes the claim and the settle cheaper for the server (issue 15): the key text columns of
``records``, ``messages`` and ``delayed`` (uuid, app, queue, task name, status, consumer) compare by bytes
(collation ``"C"``, the order of code points in UTF-8: what uuids and names need, and no locale lookup per
comparison in each index insert), and so do those of ``logs``, ``dead_letters`` and ``cancel_requests`` (uuid,
app, queue): a join of a "C" column with a default-collation one compares in "C" and cannot use the other's
index (``delete_finished``'s ``logs.uuid IN (SELECT uuid FROM records ...)`` read all the logs). The
finish-time index stays a btree: a BRIN one saved ~1.3 µs of server CPU per settled record, but the ranges
written since the last vacuum are unsummarized and the ranges refilled after expiry sweeps widen, so the
dashboard's last-minute count (up to 4 times a second per counts feed) read most of the table. The consumer
index goes (a consumer's messages are found through ``messages_held``, only at a worker's start), and
``claim_ready`` updates the rows it locked by primary key (a join with them was planned as a scan of the whole
queue). A feed row of up to ~8 kB (a batch of ~110 tasks) stays in its page as written: ``toast_tuple_target``
at its maximum, where the default 2 kB made every batch's row compressed (pglz) and moved to the TOAST table.
Equality and the query side's orders are unchanged (uuid ties aside on a non-C database). A view or rule of the
user's over those tables would block the change (PostgreSQL refuses it): the migration names them and says what to
do; the grants on ``tasks`` (dropped and re-made) are given again.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

#: the view the query side reads (migration 5's, re-created by 6 after its columns' collation changed)
TASKS_VIEW = """
CREATE VIEW tasks AS
  SELECT uuid, app, queue, task_name, status, envelope, created, updated, "returning", traceback, worker_id,
         retry_child, awaited, expires_at, deliveries, started, finished, restart_of FROM records
  UNION ALL
  SELECT m.uuid, m.app, m.queue, m.task_name, 'new'::text, m.body, m.created, coalesce(m.started, m.created),
         NULL::bytea, NULL::text, m.worker_id, NULL::text, m.awaited, NULL::bigint, greatest(m.deliveries, 1),
         m.started, NULL::bigint, m.restart_of
    FROM messages m WHERE m.task_name IS NOT NULL AND (SELECT 1 FROM records r WHERE r.uuid = m.uuid) IS NULL
  UNION ALL
  SELECT d.uuid, d.app, d.queue, d.task_name, 'new'::text, d.body, d.created, d.created, NULL::bytea, NULL::text,
         NULL::text, NULL::text, d.awaited, NULL::bigint, 1, NULL::bigint, NULL::bigint, d.restart_of
    FROM delayed d WHERE d.task_name IS NOT NULL AND (SELECT 1 FROM records r WHERE r.uuid = d.uuid) IS NULL;
"""

#: the tables whose columns migration 6 changes (and its view ``tasks``, dropped and re-created)
_ALTERED = "'records', 'messages', 'delayed', 'logs', 'dead_letters', 'cancel_requests', 'tasks'"

#: before migration 6 changes anything: a view or rule of someone else's over those tables would make PostgreSQL
#: refuse the column changes (or ``DROP VIEW tasks``) with a message that does not say what to do, so name them
#: and say it; and keep the grants on ``tasks`` (a dropped view loses them) to give them again after it is re-made
DEPENDENTS = f"""
DO $check$
DECLARE blockers text;
BEGIN
  SELECT string_agg(DISTINCT format('%s (%s over %s)', v.oid::regclass,
           CASE v.relkind WHEN 'm' THEN 'materialized view' WHEN 'v' THEN 'view' ELSE 'rule' END,
           d.refobjid::regclass), ', ')
    INTO blockers
    FROM pg_depend d JOIN pg_rewrite rw ON rw.oid = d.objid JOIN pg_class v ON v.oid = rw.ev_class
   WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
     AND d.refobjid IN (SELECT to_regclass(t) FROM unnest(ARRAY[{_ALTERED}]) AS t)
     AND v.oid <> 'tasks'::regclass;
  IF blockers IS NOT NULL THEN
    RAISE EXCEPTION USING MESSAGE = 'qtasks_fast migration 6 cannot run: it changes the collation of key columns'
      || ' and re-creates the view tasks, and these depend on them: ' || blockers,
      HINT = 'Save their definitions (SELECT pg_get_viewdef(''name'')) and grants, DROP them, run'
      || ' qtasks-fast migrate, then create them again (docs/postgres.md, upgrade notes).';
  END IF;
  PERFORM set_config('qtasks_fast.tasks_acl', coalesce((SELECT relacl::text FROM pg_class
    WHERE oid = 'tasks'::regclass), ''), true);
END
$check$;
"""

#: after migration 6 re-made ``tasks``: the grants it had (its owner's own aside), given again
REGRANT = """
DO $regrant$
DECLARE g record;
BEGIN
  FOR g IN SELECT a.privilege_type, a.grantee, a.is_grantable
             FROM aclexplode(nullif(current_setting('qtasks_fast.tasks_acl'), '')::aclitem[]) AS a
            WHERE a.grantee <> (SELECT relowner FROM pg_class WHERE oid = 'tasks'::regclass) LOOP
    EXECUTE format('GRANT %s ON tasks TO %s%s', g.privilege_type,
      CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(g.grantee)) END,
      CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
  END LOOP;
END
$regrant$;
"""

MIGRATIONS: list[tuple[int, str, str]] = [
    (1, "initial schema", """
CREATE TABLE messages (
    id bigserial PRIMARY KEY, app text NOT NULL, queue text NOT NULL, prio smallint NOT NULL, uuid text NOT NULL,
    body bytea NOT NULL, consumer text, lease_until bigint, deliveries integer NOT NULL DEFAULT 0);
CREATE INDEX messages_ready ON messages (app, queue, prio, id) WHERE consumer IS NULL;
CREATE INDEX messages_redo ON messages (app, queue, prio, id) WHERE consumer IS NULL AND deliveries > 0;
CREATE INDEX messages_held ON messages (app, queue, lease_until) WHERE consumer IS NOT NULL;
CREATE INDEX messages_consumer ON messages (app, consumer) WHERE consumer IS NOT NULL;
CREATE TABLE delayed (
    id bigserial PRIMARY KEY, app text NOT NULL, queue text NOT NULL, prio smallint NOT NULL, uuid text NOT NULL,
    body bytea NOT NULL, due bigint NOT NULL);
CREATE INDEX delayed_due ON delayed (app, queue, due);
CREATE TABLE records (
    uuid text PRIMARY KEY, app text NOT NULL, queue text NOT NULL, task_name text NOT NULL, status text NOT NULL,
    envelope bytea NOT NULL, created bigint NOT NULL, updated bigint NOT NULL, "returning" bytea, traceback text,
    worker_id text, retry_child text, awaited boolean NOT NULL DEFAULT false, expires_at bigint,
    deliveries integer NOT NULL DEFAULT 1, started bigint, finished bigint, restart_of text);
CREATE INDEX records_expiry ON records (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX records_status ON records (app, queue, status, created, uuid);
CREATE INDEX records_name ON records (app, queue, task_name, created, uuid);
CREATE INDEX records_finished ON records (app, queue, finished, status) WHERE finished IS NOT NULL;
CREATE INDEX records_restart ON records (restart_of) WHERE restart_of IS NOT NULL;
CREATE TABLE event_batches (
    id bigserial PRIMARY KEY, tx xid8 NOT NULL DEFAULT pg_current_xact_id(), app text NOT NULL,
    queue text NOT NULL, at bigint NOT NULL, n integer NOT NULL, items jsonb NOT NULL);
CREATE INDEX event_batches_queue ON event_batches (app, queue, tx, id);
CREATE TABLE dead_letters (
    id bigserial PRIMARY KEY, app text NOT NULL, queue text NOT NULL, prio smallint NOT NULL, uuid text NOT NULL,
    body bytea NOT NULL, reason text NOT NULL, at bigint NOT NULL);
CREATE INDEX dead_letters_queue ON dead_letters (app, queue, id);
CREATE TABLE cancel_requests (
    id bigserial PRIMARY KEY, app text NOT NULL, uuid text NOT NULL, msg_id bigint NOT NULL, reason text NOT NULL,
    at bigint NOT NULL);
CREATE INDEX cancel_requests_msg ON cancel_requests (msg_id);
CREATE INDEX cancel_requests_app ON cancel_requests (app, id);
CREATE TABLE claims (app text NOT NULL, key text NOT NULL, holder text NOT NULL, expires bigint NOT NULL,
    PRIMARY KEY (app, key));
CREATE TABLE slots (app text NOT NULL, queue text NOT NULL, key text NOT NULL, token text NOT NULL,
    expires bigint NOT NULL, PRIMARY KEY (app, queue, key, token));
CREATE TABLE workers (app text NOT NULL, key text NOT NULL, info bytea NOT NULL, heartbeat bigint NOT NULL,
    PRIMARY KEY (app, key));
CREATE TABLE task_table (app text NOT NULL, name text NOT NULL, spec bytea NOT NULL, PRIMARY KEY (app, name));
CREATE TABLE logs (id bigserial PRIMARY KEY, app text NOT NULL, queue text NOT NULL, uuid text NOT NULL,
    line text NOT NULL, expires_at bigint NOT NULL);
CREATE INDEX logs_task ON logs (app, uuid, id);
CREATE INDEX logs_expiry ON logs (expires_at);
"""),
    (2, "records keep room for the claim's in-page (HOT) update", """
ALTER TABLE records SET (fillfactor = 80);
"""),
    (3, "audit log", """
CREATE TABLE audit (id bigserial PRIMARY KEY, app text NOT NULL, at bigint NOT NULL, entry bytea NOT NULL);
CREATE INDEX audit_app ON audit (app, id);
"""),
    (4, "one-round-trip claim; records pages half free for the claim's HOT update; feed items as json", """
ALTER TABLE records SET (fillfactor = 50);
ALTER TABLE event_batches ALTER items TYPE json;
CREATE FUNCTION claim_ready(text, bigint, text, text, bigint, text, boolean, integer, integer)
RETURNS TABLE (id bigint, prio smallint, body bytea, deliveries integer) LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
BEGIN
  WITH d AS (DELETE FROM delayed WHERE id IN (SELECT id FROM delayed WHERE app = $1 AND queue = $3 AND due <= $2
      FOR UPDATE SKIP LOCKED) RETURNING queue, prio, uuid, body, due, id)
    INSERT INTO messages (app, queue, prio, uuid, body) SELECT $1, queue, prio, uuid, body FROM d ORDER BY due, id;
  RETURN QUERY WITH c AS (SELECT id FROM messages WHERE app = $1 AND queue = $3 AND consumer IS NULL
      AND deliveries < $8 ORDER BY prio, id LIMIT $9 FOR UPDATE SKIP LOCKED),
    m AS (UPDATE messages SET consumer = $4, lease_until = $5, deliveries = messages.deliveries + 1 FROM c
      WHERE messages.id = c.id RETURNING messages.id, messages.prio, messages.uuid, messages.body, messages.deliveries),
    r AS (UPDATE records SET worker_id = $6, updated = $2, started = $2 WHERE $7 AND uuid IN (SELECT uuid FROM m)
      RETURNING queue, uuid, task_name, 'process' AS status, worker_id),
    f AS (INSERT INTO event_batches (app, queue, at, n, items) SELECT $1, queue, $2, count(*),
      json_agg(json_build_array(uuid, task_name, status, worker_id)) FROM r GROUP BY queue)
    SELECT m.id, m.prio, m.body, m.deliveries FROM m ORDER BY m.prio, m.id;
END
$fn$;
"""),
    (5, "a queued task is its message alone: its record is written once, at settle", """
ALTER TABLE messages ADD COLUMN task_name text, ADD COLUMN created bigint, ADD COLUMN awaited boolean NOT NULL
    DEFAULT false, ADD COLUMN restart_of text, ADD COLUMN worker_id text, ADD COLUMN started bigint;
ALTER TABLE delayed ADD COLUMN task_name text, ADD COLUMN created bigint, ADD COLUMN awaited boolean NOT NULL
    DEFAULT false, ADD COLUMN restart_of text;
CREATE INDEX messages_uuid ON messages USING hash (uuid);
CREATE INDEX delayed_uuid ON delayed USING hash (uuid);
UPDATE messages m SET task_name = r.task_name, created = r.created, awaited = r.awaited, restart_of = r.restart_of,
    worker_id = r.worker_id, started = r.started FROM records r WHERE r.uuid = m.uuid AND r.app = m.app
    AND r.status = 'new';
UPDATE delayed d SET task_name = r.task_name, created = r.created, awaited = r.awaited, restart_of = r.restart_of
    FROM records r WHERE r.uuid = d.uuid AND r.app = d.app AND r.status = 'new';
DELETE FROM records r WHERE r.status = 'new' AND (
    EXISTS (SELECT 1 FROM messages m WHERE m.uuid = r.uuid AND m.app = r.app AND m.task_name IS NOT NULL)
    OR EXISTS (SELECT 1 FROM delayed d WHERE d.uuid = r.uuid AND d.app = r.app AND d.task_name IS NOT NULL));
ALTER TABLE records SET (fillfactor = 100);
CREATE VIEW tasks AS
  SELECT uuid, app, queue, task_name, status, envelope, created, updated, "returning", traceback, worker_id,
         retry_child, awaited, expires_at, deliveries, started, finished, restart_of FROM records
  UNION ALL
  SELECT m.uuid, m.app, m.queue, m.task_name, 'new'::text, m.body, m.created, coalesce(m.started, m.created),
         NULL::bytea, NULL::text, m.worker_id, NULL::text, m.awaited, NULL::bigint, greatest(m.deliveries, 1),
         m.started, NULL::bigint, m.restart_of
    FROM messages m WHERE m.task_name IS NOT NULL AND (SELECT 1 FROM records r WHERE r.uuid = m.uuid) IS NULL
  UNION ALL
  SELECT d.uuid, d.app, d.queue, d.task_name, 'new'::text, d.body, d.created, d.created, NULL::bytea, NULL::text,
         NULL::text, NULL::text, d.awaited, NULL::bigint, 1, NULL::bigint, NULL::bigint, d.restart_of
    FROM delayed d WHERE d.task_name IS NOT NULL AND (SELECT 1 FROM records r WHERE r.uuid = d.uuid) IS NULL;
CREATE OR REPLACE FUNCTION claim_ready(text, bigint, text, text, bigint, text, boolean, integer, integer)
RETURNS TABLE (id bigint, prio smallint, body bytea, deliveries integer) LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
BEGIN
  WITH d AS (DELETE FROM delayed WHERE id IN (SELECT id FROM delayed WHERE app = $1 AND queue = $3 AND due <= $2
      FOR UPDATE SKIP LOCKED) RETURNING queue, prio, uuid, body, due, id, task_name, created, awaited, restart_of)
    INSERT INTO messages (app, queue, prio, uuid, body, task_name, created, awaited, restart_of)
      SELECT $1, queue, prio, uuid, body, task_name, created, awaited, restart_of FROM d ORDER BY due, id;
  RETURN QUERY WITH c AS (SELECT id FROM messages WHERE app = $1 AND queue = $3 AND consumer IS NULL
      AND deliveries < $8 ORDER BY prio, id LIMIT $9 FOR UPDATE SKIP LOCKED),
    m AS (UPDATE messages SET consumer = $4, lease_until = $5, deliveries = messages.deliveries + 1,
        worker_id = $6, started = $2 FROM c WHERE messages.id = c.id
      RETURNING messages.id, messages.prio, messages.body, messages.deliveries, messages.queue, messages.uuid,
        messages.task_name, messages.worker_id),
    f AS (INSERT INTO event_batches (app, queue, at, n, items) SELECT $1, queue, $2, count(*),
      json_agg(json_build_array(uuid, task_name, 'process', worker_id)) FROM m WHERE $7 AND task_name IS NOT NULL
      GROUP BY queue)
    SELECT m.id, m.prio, m.body, m.deliveries FROM m ORDER BY m.prio, m.id;
END
$fn$;
"""),
    (6, "cheaper claim and settle: C collation on the keys, claimed rows by primary key", DEPENDENTS + """
DROP VIEW tasks;
ALTER TABLE records ALTER uuid TYPE text COLLATE "C", ALTER app TYPE text COLLATE "C",
    ALTER queue TYPE text COLLATE "C", ALTER task_name TYPE text COLLATE "C", ALTER status TYPE text COLLATE "C";
ALTER TABLE messages ALTER uuid TYPE text COLLATE "C", ALTER app TYPE text COLLATE "C",
    ALTER queue TYPE text COLLATE "C", ALTER task_name TYPE text COLLATE "C", ALTER consumer TYPE text COLLATE "C";
ALTER TABLE delayed ALTER uuid TYPE text COLLATE "C", ALTER app TYPE text COLLATE "C",
    ALTER queue TYPE text COLLATE "C", ALTER task_name TYPE text COLLATE "C";
ALTER TABLE logs ALTER uuid TYPE text COLLATE "C", ALTER app TYPE text COLLATE "C", ALTER queue TYPE text COLLATE "C";
ALTER TABLE dead_letters ALTER uuid TYPE text COLLATE "C", ALTER app TYPE text COLLATE "C",
    ALTER queue TYPE text COLLATE "C";
ALTER TABLE cancel_requests ALTER uuid TYPE text COLLATE "C", ALTER app TYPE text COLLATE "C";
DROP INDEX messages_consumer;
ALTER TABLE event_batches SET (toast_tuple_target = 8160);
CREATE OR REPLACE FUNCTION claim_ready(text, bigint, text, text, bigint, text, boolean, integer, integer)
RETURNS TABLE (id bigint, prio smallint, body bytea, deliveries integer) LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
BEGIN
  WITH d AS (DELETE FROM delayed WHERE id IN (SELECT id FROM delayed WHERE app = $1 AND queue = $3 AND due <= $2
      FOR UPDATE SKIP LOCKED) RETURNING queue, prio, uuid, body, due, id, task_name, created, awaited, restart_of)
    INSERT INTO messages (app, queue, prio, uuid, body, task_name, created, awaited, restart_of)
      SELECT $1, queue, prio, uuid, body, task_name, created, awaited, restart_of FROM d ORDER BY due, id;
  RETURN QUERY WITH c AS (SELECT id FROM messages WHERE app = $1 AND queue = $3 AND consumer IS NULL
      AND deliveries < $8 ORDER BY prio, id LIMIT $9 FOR UPDATE SKIP LOCKED),
    m AS (UPDATE messages SET consumer = $4, lease_until = $5, deliveries = messages.deliveries + 1,
        worker_id = $6, started = $2 WHERE messages.id = ANY(ARRAY(SELECT c.id FROM c))
      RETURNING messages.id, messages.prio, messages.body, messages.deliveries, messages.queue, messages.uuid,
        messages.task_name, messages.worker_id),
    f AS (INSERT INTO event_batches (app, queue, at, n, items) SELECT $1, queue, $2, count(*),
      json_agg(json_build_array(uuid, task_name, 'process', worker_id)) FROM m WHERE $7 AND task_name IS NOT NULL
      GROUP BY queue)
    SELECT m.id, m.prio, m.body, m.deliveries FROM m ORDER BY m.prio, m.id;
END
$fn$;
""" + TASKS_VIEW + REGRANT),
]
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def check_schema(schema: str) -> str:
    """``schema`` if it is a plain identifier (it is spliced into DDL), else a one-line ``ValueError``."""
    if not _IDENT.fullmatch(schema):
        raise ValueError(f"PostgreSQL schema {schema!r} is not a plain name: use letters, digits and '_' "
                         "(?schema=qtasks_fast)")
    return schema


async def pending(conn: asyncpg.Connection, schema: str) -> list[tuple[int, str]]:
    """The migrations not applied yet to ``schema`` (all of them when it does not exist)."""
    exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f'"{check_schema(schema)}".schema_migrations')
    done = set() if not exists else {r[0] for r in await conn.fetch(
        f'SELECT version FROM "{schema}".schema_migrations')}  # noqa: S608 - checked identifier
    return [(v, name) for v, name, _ in MIGRATIONS if v not in done]


async def migrate(conn: asyncpg.Connection, schema: str) -> list[tuple[int, str]]:
    """Apply the pending migrations of ``schema`` (created if missing); returns those applied."""
    check_schema(schema)
    if not await pending(conn, schema):
        return []
    applied: list[tuple[int, str]] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", "qtasks_fast:migrate:" + schema)
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(f'SET LOCAL search_path = "{schema}"')
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY,"
                           " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
        done = {r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, name, sql in MIGRATIONS:
            if version in done:
                continue
            await conn.execute(sql)
            await conn.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name)
            applied.append((version, name))
    return applied


class Migrating:
    """:class:`~qtasks_fast.abc.backend.Migrations` of a PostgreSQL broker or storage (``self.db``, a PgDb)."""

    db: Any

    @property
    def migration_target(self) -> str:
        from qtasks_fast.url import redact

        return f"{redact(self.db.dsn)} schema {self.db.schema}"

    async def migrations(self) -> list[tuple[int, str, bool]]:
        async with self._connection() as conn:
            todo = {v for v, _ in await pending(conn, self.db.schema)}
        return [(v, name, v not in todo) for v, name, _ in MIGRATIONS]

    async def migrate(self) -> list[tuple[int, str]]:
        async with self._connection() as conn:
            return await migrate(conn, self.db.schema)

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection of its own (not the pool: the pool's first use migrates), errors mapped to ours."""
        try:
            conn = await self.db.connect()
            try:
                yield conn
            finally:
                await conn.close()
        except Exception as exc:
            mapped = self.db.translate(self, exc)
            if mapped is None:
                raise
            raise mapped from exc
