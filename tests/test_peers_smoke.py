"""Fast checks of the peer-comparison harness; needs neither the peers venv nor Redis."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

import qtasks_fast.benchmarks.peers as peers
from qtasks_fast.benchmarks.peers import runner


def test_harness_imports() -> None:
    assert callable(peers.run)
    assert set(peers.PEERS) == set(runner.PEER_DBS)
    assert len(set(runner.PEER_DBS.values())) == len(runner.PEER_DBS), "each peer needs its own Redis db"
    assert not set(runner.PEER_DBS.values()) & runner.PROTECTED_DBS


def test_missing_peer_python_gives_error_rows(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("QTASKS_PEERS_PYTHON", str(tmp_path / "no-such-python"))
    monkeypatch.delenv("QTASKS_PEERS_PYTHON_HUEY", raising=False)
    args = SimpleNamespace(n=10, repeats=1, quick=True, peers="huey", log_dir=str(tmp_path / "logs"))
    rows = peers.run(args, None)
    assert [r["workload"] for r in rows] == ["enqueue", "latency", "drain"]
    for r in rows:
        assert r["peer"] == "huey"
        assert r["rate"] is None and r["p50_ms"] is None
        assert "no-such-python" in r["error"]


def test_unknown_peer_is_an_error_row_with_progress(tmp_path: Path) -> None:
    from rich.progress import Progress

    args = SimpleNamespace(n=10, repeats=2, quick=False, peers="nope", log_dir=str(tmp_path / "logs"))
    with Progress(disable=True) as progress:
        rows = peers.run(args, progress)
        assert progress.tasks[0].completed == progress.tasks[0].total == 6
    assert len(rows) == 3
    assert all("unknown peer" in r["error"] for r in rows)
