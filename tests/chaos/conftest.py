"""The chaos tier: faults a fleet must survive, each driven against a private ``redis-server``.

Every test module here sets ``pytestmark = pytest.mark.chaos``; the default ``python -m pytest``
deselects the marker (pyproject ``addopts``) and ``.ci/run`` runs ``python -m pytest -m chaos``
in its bounded form. ``QTASKS_CHAOS=full`` runs the same cases longer and with more tasks.

Each case ends with a tally (``chaos_tally``): accepted = tasks the producer got a uuid for,
finished = those whose record is final, lost = accepted and unknown to the storage, stranded =
accepted, known and not final once the fleet had time to recover, duplicates = extra runs seen
by the task bodies (each run appends its tag to a file, see tests/apps/chaos_app.py). The
tallies are printed at the end of the run, one line per case.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

FULL = os.environ.get("QTASKS_CHAOS") == "full"


def scale(bounded: int | float, full: int | float) -> int | float:
    """``bounded`` in CI and the default chaos run, ``full`` under ``QTASKS_CHAOS=full``."""
    return full if FULL else bounded


@dataclass
class Tally:
    case: str
    accepted: int = 0
    finished: int = 0
    lost: int = 0
    stranded: int = 0
    duplicates: int = 0
    notes: dict[str, object] = field(default_factory=dict)

    def line(self) -> str:
        extra = "".join(f" {k}={v}" for k, v in self.notes.items())
        return (f"{self.case}: accepted={self.accepted} finished={self.finished} lost={self.lost} "
                f"stranded={self.stranded} duplicates={self.duplicates}{extra}")


_TALLIES: list[Tally] = []


@pytest.fixture
def chaos_tally(request: pytest.FixtureRequest) -> Iterator[Tally]:
    """A tally for this case, printed in the run's summary (filled in by the test)."""
    t = Tally(request.node.name)
    yield t
    _TALLIES.append(t)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _TALLIES:
        terminalreporter.section(f"chaos tallies ({'full' if FULL else 'bounded'})")
        for t in _TALLIES:
            terminalreporter.write_line(t.line())


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    """Where the chaos app's task bodies append one line per run (``CHAOS_RUNS_DIR``)."""
    d = tmp_path / "runs"
    d.mkdir()
    return d


def count_runs(runs_dir: Path) -> Counter[str]:
    """How many times each tag ran, over every worker process."""
    c: Counter[str] = Counter()
    for f in runs_dir.iterdir():
        c.update(line for line in f.read_text().splitlines() if line)
    return c


def settle_tally(t: Tally, statuses: dict[str, str | None], runs: Counter[str], tags: dict[str, str]) -> None:
    """Fill ``t`` from each accepted uuid's status (None = unknown) and the run counts by tag.

    ``tags`` maps uuid -> the tag its body writes; duplicates are runs beyond the first per tag.
    """
    t.accepted = len(statuses)
    t.finished = sum(1 for s in statuses.values() if s in ("success", "error", "cancel"))
    t.lost = sum(1 for s in statuses.values() if s is None)
    t.stranded = t.accepted - t.finished - t.lost
    t.duplicates = sum(max(0, runs[tags[u]] - 1) for u in statuses if u in tags)
