"""The test tiers (README "Tests"): a bare ``python -m pytest`` runs the fast tier, the README's test command
every tier but chaos, and CI runs exactly that command, then the chaos tier (issue 12)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_test_args() -> list[str]:
    """The pytest arguments of the README's "Run the tests" command."""
    text = (ROOT / "README.md").read_text()
    block = text[text.index("**Run the tests**"):]
    command = re.search(r"```bash\n(.*?)\n```", block, re.S)
    assert command is not None, "README's 'Run the tests' has no bash block"
    last = command.group(1).split("&&")[-1]
    words = shlex.split(last)
    assert words[:3] == [".venv/bin/python", "-m", "pytest"], last
    return words[3:]


def ci_pytest_runs() -> list[list[str]]:
    """The arguments of each ``python -m pytest`` line of .ci/run, in order."""
    runs = []
    for line in (ROOT / ".ci" / "run").read_text().splitlines():
        if line.startswith("python -m pytest"):
            runs.append(shlex.split(line, comments=True)[3:])
    return runs


def test_ci_runs_the_readme_test_command_then_the_chaos_tier() -> None:
    assert ci_pytest_runs() == [readme_test_args(), ["-m", "chaos", "tests/chaos"]]


def collected(*args: str) -> set[str]:
    run = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return {line for line in run.stdout.splitlines() if "::" in line}


def test_the_default_run_is_the_fast_tier_and_the_readme_command_runs_every_tier_but_chaos() -> None:
    fast, every = collected(), collected(*readme_test_args())
    assert fast < every
    assert not any(t.startswith("tests/chaos/") for t in every)
    assert "tests/test_contract.py::TestMemory::test_enqueue_fetch_settle_get" in fast
    slow_or_integration = {
        "tests/test_contract.py::TestRedis::test_enqueue_fetch_settle_get",  # Redis
        "tests/test_contract.py::TestSqlite::test_enqueue_fetch_settle_get",  # an SQLite file
        "tests/test_backend_sqlite.py::test_sqlite_processes_never_claim_the_same_message",  # processes
        "tests/test_contract_third_party.py::test_a_third_party_runs_the_suite_and_it_fails_broken_backends",  # slow
    }
    assert slow_or_integration <= every and not slow_or_integration & fast
