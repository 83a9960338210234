"""Names a package exports from a module imported on first use (QTasks' paths whose module needs an optional
extra or would cycle at import): one ``__getattr__`` maker instead of a copy per package."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping


def lazy_names(package: str, names: Mapping[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` for ``package`` that imports ``names[name]`` (a module path) when ``name`` is
    first asked for, and raises the usual ``AttributeError`` for any other name."""

    def __getattr__(name: str) -> object:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    return __getattr__
