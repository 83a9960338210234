"""The SQLite benchmark suite: it measures real workers on a fresh file, and ab can run it against any revision."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from qtasks_fast.benchmarks import ab
from qtasks_fast.benchmarks.sqlite import PAGES

ROOT = Path(__file__).resolve().parent.parent


def test_standalone_run_writes_the_headline_ab_reads(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "qtasks_fast.benchmarks.sqlite", "--n", "2000", "--repeats", "1",
                           "--processes", "1", "--page-records", "400", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    for spec in ab.DEFAULT_METRICS["sqlite"]:
        value = ab.metric(summary, spec)
        assert value is not None and value > 0, spec
    rows = json.loads((out / "sqlite.json").read_text())["rows"]
    assert [r["n"] for r in rows[:2]] == [2000, 2000]
    pages = summary["headlines"]["sqlite"]["page_ms"]
    assert len(pages) == len(PAGES) + 1 and all(ms > 0 for ms in pages.values())  # + the count


def test_ab_runs_the_heads_file_with_the_bases_interpreter(tmp_path: Path) -> None:
    """Both sides run this tree's sqlite.py (a base may predate it), from the side's tree, with no
    benchmarks folder on sys.path (its profile.py/io.py would shadow the standard library)."""
    cmd = ab.suite_command(Path(sys.executable), tmp_path, "sqlite", tmp_path / "o", ["--n", "5"])
    assert cmd[3] == str(ROOT / "qtasks_fast" / "benchmarks" / "sqlite.py")
    assert cmd[4:] == ["--repeats", "1", "--out", str(tmp_path / "o"), "--n", "5"]
    probe = tmp_path / "sub" / "probe.py"
    probe.parent.mkdir()
    probe.write_text("import json, os, sys\n"
                     "print(json.dumps([__name__, sys.argv, os.path.dirname(__file__) in sys.path]))\n")
    res = subprocess.run([cmd[0], "-c", ab.RUN_FILE, str(probe), "--x"], cwd=tmp_path, capture_output=True,
                         text=True, check=True)
    assert json.loads(res.stdout) == ["__main__", [str(probe), "--x"], False]
