"""Smoke test of the benchmark CLI: ``qtasks_fast.benchmarks --quick`` runs and writes sane JSON (no timing asserts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SUITES = ("drain", "scaling", "enqueue", "latency", "dispatch", "io-redis", "core", "ceiling")


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Path:
    out = tmp_path_factory.mktemp("bench")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    proc = subprocess.run(
        [sys.executable, "-m", "qtasks_fast.benchmarks", "--quick", "--suite", ",".join(SUITES), "--out", str(out),
         "--redis-url", redis_url],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    tail = f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"
    assert proc.returncode == 0, f"exit {proc.returncode}\n{tail}"
    return out


def load(out: Path, name: str) -> dict:
    path = out / f"{name}.json"
    assert path.exists(), f"{name}.json was not written; folder has {sorted(p.name for p in out.iterdir())}"
    return json.loads(path.read_text())


def positive(value: object) -> bool:
    return isinstance(value, (int, float)) and value > 0


def test_every_suite_wrote_json_and_markdown(results: Path) -> None:
    for name in SUITES:
        data = load(results, name)
        assert data["suite"] == name
        assert {"rows", "headline", "params", "notes", "meta"} <= data.keys()
        assert data["rows"], f"{name} has no rows"
        assert (results / f"{name}.md").read_text().startswith(f"## {name}")
    assert (results / "summary.md").exists()


def test_run_metadata(results: Path) -> None:
    meta = load(results, "run")
    assert meta["quick"] is True
    assert "python -m qtasks_fast.benchmarks" in meta["command"] and "--quick" in meta["command"]
    assert positive(meta["machine"]["cores_logical"]) and meta["machine"]["cpu_model"]
    for key in ("python", "qtasks_fast", "redis_py", "hiredis", "msgspec"):
        assert key in meta["versions"]
    assert meta["redis"]["version"] and "appendonly" in meta["redis"] and "save" in meta["redis"]


def test_rates_are_positive(results: Path) -> None:
    ceiling = load(results, "ceiling")["headline"]
    for key in ("xadd_rate", "drain_rate", "consume_rate", "rt_p50_us"):
        assert positive(ceiling[key]), (key, ceiling)
    drain = load(results, "drain")["headline"]
    assert drain["rate_by_processes"] and all(positive(v) for v in drain["rate_by_processes"].values())
    assert positive(drain["index_off_rate"])
    enqueue = load(results, "enqueue")["headline"]
    for key in ("one_rate", "bulk_rate", "async_rate"):
        assert positive(enqueue[key]), (key, enqueue)
    latency = load(results, "latency")["headline"]
    for key in ("p50_idle_us", "p99_idle_us", "p50_load_us"):
        assert positive(latency[key]), (key, latency)
    assert latency["idle_cpu_pct"] >= 0
    dispatch = load(results, "dispatch")["headline"]
    for key in ("start_p50_us", "raw_streams_p50_us", "raw_list_p50_us", "start_over_raw_streams"):
        assert positive(dispatch[key]), (key, dispatch)
    scaling = load(results, "scaling")  # every task of the two-queue cases ran (the suite checks their statuses)
    assert {(r["queues"], r["processes"]) for r in scaling["rows"]} == {(q, p) for q in (1, 2) for p in (1, 2, 4)}
    assert all(positive(r["tasks/s"]) and r["redis CPU µs/task"] >= 0 for r in scaling["rows"]), scaling["rows"]
    ioredis = load(results, "io-redis")["headline"]
    for key in ("ratio", "rate", "loop_rate", "loop_us", "cpu_ratio"):  # the loop's CPU is measured too
        assert positive(ioredis[key]), (key, ioredis)
    core = load(results, "core")["headline"]
    assert positive(core["ns_compiled"]) and positive(core["ns_pure"])


def test_summary_has_targets_with_ratios(results: Path) -> None:
    summary = json.loads((results / "summary.json").read_text())
    targets = {row["target"].split(",")[0].split(" (")[0]: row for row in summary["targets"]}
    for name in ("drain", "bulk enqueue", "latency p50", "enqueue -> body starts p50", "io-redis"):
        assert name in targets, sorted(targets)
        assert targets[name]["status"] in ("PASS", "MISS")
        assert targets[name]["ratio"] != "n/a"
    assert not summary["failed"]


def test_resummarize_rebuilds_the_targets_of_a_finished_run(results: Path) -> None:
    before = json.loads((results / "summary.json").read_text())["targets"]
    (results / "summary.md").unlink()
    proc = subprocess.run([sys.executable, "-m", "qtasks_fast.benchmarks", "--resummarize", str(results)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "## Targets" in (results / "summary.md").read_text()
    assert json.loads((results / "summary.json").read_text())["targets"] == before
