"""docs/from-qtasks.md stays true (issue 11): every qtasks_fast name its tables give resolves, and every name they
mark "not yet: issue 11" does not; every command of its command-line table exists, and none is "not yet".

What a user relies on: the porting guide is the list they port by. A row that names a qtasks_fast equivalent
must import (a renamed or removed name fails here, not in a user's port); a row marked "not yet" must not
import, so the day it lands the guide has to say so instead of still sending users elsewhere.
"""

from __future__ import annotations

import importlib
import re

import pytest
from conftest import ROOT

DOC = (ROOT / "docs" / "from-qtasks.md").read_text()


def rows() -> list[tuple[str, str, str]]:
    """``(QTasks cell, qtasks_fast path, status cell)`` of each table row whose second cell names a path."""
    out = []
    for line in DOC.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[1].startswith("`qtasks_fast."):
            continue
        out.append((cells[0], cells[1].split("`")[1], cells[2]))
    return out


def resolves(path: str) -> bool:
    """Whether ``path`` (``package.module.Attr.attr``) imports: the longest importable module, then attributes."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


ROWS = rows()


def test_the_guide_has_its_tables() -> None:
    assert len(ROWS) >= 40, ROWS


@pytest.mark.parametrize(("qtasks", "path", "status"), ROWS, ids=[r[1] for r in ROWS])
def test_each_row_is_true(qtasks: str, path: str, status: str) -> None:
    assert re.fullmatch(r"qtasks_fast(\.\w+)+", path), path
    if status.startswith("not yet: issue 11"):
        assert not resolves(path), f"{path} exists now: update its row in docs/from-qtasks.md ({qtasks})"
    else:
        assert resolves(path), f"{path} (for {qtasks}) does not import: fix docs/from-qtasks.md or the code"


def command_rows() -> list[tuple[str, str]]:
    """``(QTasks cell, qtasks_fast command word)`` of each row of "The command line" whose second cell is a command."""
    table = DOC.split("## The command line", 1)[1].split("\n## ", 1)[0]
    out = []
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        m = re.match(r"`python -m qtasks_fast -(?:A|app) mod:app (\w+)", cells[1]) if len(cells) == 3 else None
        if m:
            out.append((cells[0], m.group(1)))
    return out


def test_each_command_row_names_a_command_of_the_cli() -> None:
    from qtasks_fast.cli import build_parser

    rows = command_rows()
    assert {"run", "web", "stats"} <= {word for _, word in rows}, rows
    commands = next(a for a in build_parser()._actions if a.dest == "command").choices
    for qtasks, word in rows:
        assert word in commands, f"{qtasks}: the guide names 'qtasks-fast {word}', which the CLI does not have"
    assert "not yet" not in DOC.split("## The command line", 1)[1].split("\n## ", 1)[0]
