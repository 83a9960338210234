"""Documented idioms must work when a wait runs out (issue 10, item 9).

``add_task(..., timeout=N)``, ``app.wait``, and a chain's or group's ``wait`` return None when the task is
not finished in time (QTasks behaviour), so ``.returning`` read straight off such a call raises
AttributeError exactly when a user needs the code to say what happened. No snippet may teach that.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
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


def readme_block(after: str, first_line: str) -> str:
    """The first ```python block of README.md after the line ``after`` that starts with ``first_line``."""
    readme = (ROOT / "README.md").read_text()
    for block in re.findall(r"```python\n(.*?)```", readme[readme.index(after):], re.S):
        if block.startswith(first_line):
            return str(block)
    raise AssertionError(f"no python block after {after!r} starting with {first_line!r}")


def test_readme_task_control_module_sends_nothing_at_import_and_its_sender_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pasted into a module that workers import, the block must not enqueue anything at import (README, item 15)."""
    from conftest import free_port

    from qtasks_fast.testing import WorkerThread

    shop = readme_block("## Task control and plugins", "# shop.py")
    # a Redis nobody listens on: an enqueue at import would raise BrokerUnavailable here
    (tmp_path / "shop.py").write_text(shop.replace("redis://127.0.0.1:6379/0", f"redis://127.0.0.1:{free_port()}/0"))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "shop", raising=False)
    import shop as module  # type: ignore[import-not-found]

    app = module.app
    with WorkerThread(app, broker_url="memory://"):
        sent: dict[str, object] = {}
        exec(readme_block("## Task control and plugins", "# checkout.py"), sent)  # noqa: S102 - the README's code
        t = sent["t"]
        assert (rec := app.get(t.uuid)) is not None and rec.status == "cancel", rec  # type: ignore[attr-defined]
        again = module.charge.add_task(42, countdown=10, unique="charge-42")
        assert again.uuid != t.uuid  # type: ignore[attr-defined]
    sys.modules.pop("shop", None)
