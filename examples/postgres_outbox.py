"""Transactional enqueue on PostgreSQL: the task exists only if your transaction commits (the outbox pattern).

Run it against a server (trust auth here; any URL works), with the extra installed::

    pip install -e '.[postgres]'
    QTASKS_PG_URL=postgresql://postgres@127.0.0.1:5432/test python examples/postgres_outbox.py

It creates a temporary ``orders`` table (gone with the connection), places one order whose transaction
fails (no order, no e-mail task) and one that commits (both), runs a worker in this process and prints the task's
result. The backend's own tables live in the schema ``qtasks_fast`` (``QTASKS_PG_SCHEMA``, the URL's ``?schema=``).
"""

from __future__ import annotations

import asyncio
import os

import asyncpg

from qtasks_fast.asyncio import QueueTasks
from qtasks_fast.testing import WorkerThread

URL = os.environ.get("QTASKS_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
#: where the backend keeps its tables (your own tables stay where they are)
SCHEMA = os.environ.get("QTASKS_PG_SCHEMA", "qtasks_fast")
app = QueueTasks("shop", broker_url=f"{URL}{'&' if '?' in URL else '?'}schema={SCHEMA}")  # URL may have a query


@app.task
def send_confirmation(order_id: int) -> str:
    return f"mail sent for order {order_id}"


async def place_order(conn: asyncpg.Connection, item: str, fail: bool = False) -> str | None:
    """Insert the order and enqueue its e-mail in ONE transaction: both or neither."""
    try:
        async with conn.transaction():
            order_id = await conn.fetchval("INSERT INTO orders (item) VALUES ($1) RETURNING id", item)
            task = await app.add_task("send_confirmation", order_id, connection=conn)
            if fail:
                raise RuntimeError("payment declined")  # rolls back the order and the task together
            return str(task.uuid)
    except RuntimeError as exc:
        print(f"order of {item!r} failed ({exc}): no order row, no task")
        return None


async def main() -> None:
    conn = await asyncpg.connect(URL)
    try:
        await conn.execute("CREATE TEMP TABLE orders (id serial PRIMARY KEY, item text NOT NULL)")
        await place_order(conn, "broken lamp", fail=True)
        uuid = await place_order(conn, "desk")
        assert uuid is not None
        with WorkerThread(app):  # in production: qtasks-fast -A postgres_outbox:app run
            done = await app.wait(uuid, timeout=10)
        print(done.returning if done is not None else "not finished in 10 s")
    finally:
        await conn.close()
        await app.close()


if __name__ == "__main__":
    asyncio.run(main())
