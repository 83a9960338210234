"""Loads the dispatch core: the compiled extension, or — only when asked — the same source as Python.

``QTASKS_PURE_PYTHON=1`` loads ``_core.pyx`` as plain Python (for the core
benchmark and for platforms without a compiler). When the extension is missing
and pure Python was not asked for, the fallback is used with a loud warning,
and ``QTASKS_REQUIRE_COMPILED=1`` (set in CI) turns that into an ImportError.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import warnings
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING


def _load_source(src: Path, name: str) -> ModuleType:
    mod = ModuleType(name)
    mod.__file__ = str(src)
    exec(compile(src.read_text(), str(src), "exec"), mod.__dict__)
    return mod


def load_compiled(name: str, src: Path) -> tuple[ModuleType, bool]:
    """The extension ``name`` built from ``src`` (a ``.pyx`` in the Python subset of Cython), or ``src`` run as
    Python under the rules above; ``(module, compiled)``. Backends load their own hot modules with it
    (``qtasks_fast.backends.redis.pack``)."""
    if os.environ.get("QTASKS_PURE_PYTHON") == "1":
        return _load_source(src, name + "_py"), False
    try:
        return importlib.import_module(name), True
    except ImportError as exc:
        if os.environ.get("QTASKS_REQUIRE_COMPILED") == "1":
            raise ImportError(
                f"qtasks_fast: the compiled module {name} is missing and QTASKS_REQUIRE_COMPILED=1; "
                "reinstall with a C compiler available (pip install --force-reinstall --no-binary qtasks-fast .)"
            ) from exc
        warnings.warn(
            f"qtasks_fast: compiled module {name} not found, running its pure-Python source (several times "
            "slower). Reinstall with a C compiler, or set QTASKS_PURE_PYTHON=1 to silence this.",
            RuntimeWarning,
            stacklevel=3,
        )
        return _load_source(src, name + "_py"), False


def compiled(name: str) -> bool:
    """Whether :func:`load_compiled` would give the extension ``name`` (not its source run as Python), found
    without importing it: ``qtasks-fast info`` reports the backends' hot modules without loading the backends."""
    if os.environ.get("QTASKS_PURE_PYTHON") == "1":
        return False
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:
        return False


core, COMPILED = load_compiled("qtasks_fast._core", Path(__file__).with_name("_core.pyx"))

if TYPE_CHECKING:
    from qtasks_fast._core import (
        Delivery,
        add_entries,
        decode_batch,
        encode,
        encode_envelopes,
        new_uuid,
    )
else:
    Delivery = core.Delivery
    add_entries = core.add_entries
    decode_batch = core.decode_batch
    encode = core.encode
    encode_envelopes = core.encode_envelopes
    new_uuid = core.new_uuid
