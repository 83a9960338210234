"""docs/architecture.md is the map contributors follow: every module, object and file it names must exist."""

from __future__ import annotations

import importlib
import re

import pytest
from conftest import ROOT

DOC = (ROOT / "docs" / "architecture.md").read_text()
#: `qtasks_fast.a.b` or `qtasks_fast.a.b.Name` in backticks (trailing call parentheses ignored)
DOTTED = sorted(set(re.findall(r"`(qtasks_fast(?:\.\w+)+)", DOC)))
#: `worker/executor.py`, `backends/redis/script.py`, `qtasks_fast/middlewares/` ...
FILES = sorted(set(re.findall(r"`((?:qtasks_fast/)?(?:\w+/)+(?:\w+\.(?:py|lua|pyx))?)`", DOC)))


def resolve(dotted: str) -> object:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):  # the longest importable module, then attributes
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ModuleNotFoundError(dotted)


def test_the_map_names_things() -> None:
    assert len(DOTTED) > 15 and len(FILES) > 5, (DOTTED, FILES)


@pytest.mark.parametrize("dotted", DOTTED)
def test_every_named_module_or_object_exists(dotted: str) -> None:
    assert resolve(dotted) is not None


@pytest.mark.parametrize("path", FILES)
def test_every_named_file_exists(path: str) -> None:
    base = ROOT if path.startswith("qtasks_fast/") else ROOT / "qtasks_fast"
    alt = ROOT / path
    assert (base / path).exists() or alt.exists(), path
