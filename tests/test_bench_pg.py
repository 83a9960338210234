"""The pg benchmark suite's bulk enqueue with two ``add_tasks`` in flight (issue 15): it must send exactly the tasks
it times (a count off by a chunk would inflate the rate it reports), as queued messages of its own app."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
from conftest import PG_DSN

from qtasks_fast.benchmarks import pg


def test_two_in_flight_enqueue_sends_every_task_once(pg_url: str) -> None:
    schema = f"qtf_test_bench_{uuid.uuid4().hex[:8]}"
    try:
        result = pg.bulk_enqueue_inflight2(f"{PG_DSN}?schema={schema}", 2500, 1000)  # 2 chunks + a part one
        assert result["rate"] > 0 and result["producer_us"] >= 0

        async def count() -> tuple[int, int]:
            conn = await asyncpg.connect(PG_DSN)
            try:
                row = await conn.fetchrow(f'SELECT count(*) AS n, count(DISTINCT uuid) AS u FROM "{schema}".messages '
                                          "WHERE app LIKE 'bench-enqueue2-%'")
                return int(row["n"]), int(row["u"])
            finally:
                await conn.close()

        assert asyncio.run(count()) == (2510, 2510)  # the 10 of the warm-up call, outside the clock, and the 2,500
    finally:
        pg._sql(PG_DSN, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
