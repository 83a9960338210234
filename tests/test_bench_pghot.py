"""The pghot benchmark suite (issue 15): the PostgreSQL worker's claim and settle alone, with the server's CPU per
task, run as ab runs it (this tree's file, either side's product) and leaving no schema behind."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import asyncpg
from conftest import PG_DSN

from qtasks_fast.benchmarks import ab

ROOT = Path(__file__).resolve().parent.parent


def test_pghot_writes_the_headline_ab_reads_and_drops_its_schema(pg_url: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    cmd = ab.suite_command(
        Path(sys.executable), ROOT, "pghot", out, ["--n", "2000", "--batch", "100", "--pg-url", PG_DSN]
    )
    assert cmd[3] == str(ROOT / "qtasks_fast" / "benchmarks" / "pghot.py")
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    for spec in ab.DEFAULT_METRICS["pghot"]:
        value = ab.metric(summary, spec)
        assert value is not None and value > 0, spec  # server CPU too: the test server runs on this machine

    async def leftovers() -> int:
        conn = await asyncpg.connect(PG_DSN)
        try:
            return int(await conn.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'qtf_pghot_%'"))
        finally:
            await conn.close()

    assert asyncio.run(leftovers()) == 0
