"""Documented idioms must work when a wait runs out (issue 10, item 9).

``add_task(..., timeout=N)``, ``app.wait``, and a chain's or group's ``wait`` return None when the task is
not finished in time (QTasks behaviour), so ``.returning`` read straight off such a call raises
AttributeError exactly when a user needs the code to say what happened. No snippet may teach that.
"""

from __future__ import annotations

import re
from pathlib import Path

from conftest import ROOT

# ``<call>(...).returning`` where the call may return None; arguments may hold one level of parentheses
RETURNING_OFF_A_WAIT = re.compile(r"\b(add_task|wait)\((?:[^()]|\([^()]*\))*\)\.returning")


def documented_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "examples").glob("*.py")),
            *sorted((ROOT / "qtasks_fast").rglob("*.py"))]


def test_no_snippet_reads_returning_off_a_call_that_may_return_none() -> None:
    found = [f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)}"
             for path in documented_files() for text in [path.read_text()]
             for m in RETURNING_OFF_A_WAIT.finditer(text)]
    assert found == [], "read .returning only after checking for None:\n" + "\n".join(found)


def test_the_pattern_catches_the_idioms_it_is_for() -> None:
    for bad in ('add.add_task(1, 2, timeout=5).returning', 'app.add_task("add", 1, 2, timeout=5).returning',
                'res.wait(10).returning', 'app.wait(t.uuid, timeout=f(5)).returning'):
        assert RETURNING_OFF_A_WAIT.search(bad), bad
    assert not RETURNING_OFF_A_WAIT.search("task.returning if task else None")
