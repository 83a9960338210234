"""Every public import path of QTasks 1.7.3 resolves under qtasks_fast, or the porting guide says why not
(issue 11).

What a user relies on: porting means changing ``qtasks`` to ``qtasks_fast`` in imports. The inventory
(``data/qtasks_1_7_3_paths.txt``) is every module of QTasks' installed package and every public class or function
it defines or re-exports, walked systematically by ``data/walk_qtasks.py``, not picked by hand. Each path must
import here with the same name, or be named in a table of docs/from-qtasks.md (whose row says what to use
instead and why), so no QTasks path is silently missing: a user either gets it, or finds it in the guide.
"""

from __future__ import annotations

import importlib
import re

import pytest
from conftest import ROOT

DATA = ROOT / "tests" / "qtasks_compat" / "data" / "qtasks_1_7_3_paths.txt"
PATHS = [line for line in DATA.read_text().splitlines() if line and not line.startswith("#")]
DOC = (ROOT / "docs" / "from-qtasks.md").read_text()


def resolves(entry: str) -> bool:
    """``qtasks.x.y[:Name]`` imports as ``qtasks_fast.x.y`` and has ``Name``."""
    module, _, name = entry.partition(":")
    try:
        found = importlib.import_module("qtasks_fast" + module[len("qtasks"):])
    except ImportError:
        return False
    return not name or hasattr(found, name)


def named_in_the_guide(entry: str) -> bool:
    """A row's QTasks cell names the path: whole (``qtasks.a.b.Name``), by a ``qtasks.a.*`` prefix, a module by a
    path below it, or a name beside its module (``qtasks.a.b.SyncX``, ``AsyncX`` names both)."""
    module, _, name = entry.partition(":")
    full = f"{module}.{name}" if name else module
    for line in DOC.splitlines():
        if not line.startswith("|"):
            continue
        cell = line.strip().strip("|").split("|")[0]
        words = [w.split("(")[0].strip() for w in re.findall(r"`([^`]+)`", cell)]
        for word in words:
            if word == full or (word.endswith(".*") and (full + ".").startswith(word[:-1])):
                return True
            if not name and word.startswith(module + "."):
                return True
        if name and any(w == name or w.endswith("." + name) for w in words) and any(
                w == module or w.startswith(module + ".") for w in words):
            return True
    return False


def test_the_inventory_is_qtasks_whole() -> None:
    """The walk found QTasks' packages and their names (a truncated file would make the next test vacuous)."""
    assert len(PATHS) >= 300 and len([p for p in PATHS if ":" in p]) >= 200
    for expected in ("qtasks.enums.task_status:TaskStatusEnum", "qtasks.plugins.grpc:SyncgRPCPlugin",
                     "qtasks.brokers.async_kafka:AsyncKafkaBroker", "qtasks.contrib.django:autodiscover_tasks"):
        assert expected in PATHS


@pytest.mark.parametrize("entry", PATHS)
def test_each_qtasks_path_resolves_or_the_guide_says_why(entry: str) -> None:
    assert resolves(entry) or named_in_the_guide(entry), (
        f"{entry}: neither {'qtasks_fast' + entry[len('qtasks'):]} imports nor does docs/from-qtasks.md name it")
