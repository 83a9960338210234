"""The package's import architecture (issue 12): backends plug into the core through the registry, never the
reverse, are independent of each other and have no import cycles. The contracts live in pyproject.toml
([tool.importlinter]); this runs them so the README's test command checks them."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import ROOT


def test_import_contracts_are_kept() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    assert lint.exists(), f"{lint} is missing: pip install -e '.[test]' (it brings import-linter)"
    proc = subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml")], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout and "4 kept" in proc.stdout, proc.stdout[-2000:]


def test_an_app_imports_only_the_backend_it_uses(tmp_path: Path) -> None:
    """A memory:// app never loads the Redis or SQLite backend modules: the registry imports factories lazily."""
    code = textwrap.dedent("""
        import json, sys
        import qtasks_fast.brokers, qtasks_fast.storages
        from qtasks_fast import QueueTasks
        app = QueueTasks("arch", broker_url="memory://")
        app.broker
        print(json.dumps(sorted(m for m in sys.modules if m.startswith("qtasks_fast.backends."))))
        """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded = json.loads(proc.stdout)
    assert loaded and all(m.startswith(("qtasks_fast.backends.memory", "qtasks_fast.backends._local",
                                        "qtasks_fast.backends.location")) for m in loaded), loaded
