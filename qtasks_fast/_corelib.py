"""Loads the dispatch core: the compiled extension, or — only when asked — the same source as Python.

``QTASKS_PURE_PYTHON=1`` loads ``_core.pyx`` as plain Python (for the core
benchmark and for platforms without a compiler). When the extension is missing
and pure Python was not asked for, the fallback is used with a loud warning,
and ``QTASKS_REQUIRE_COMPILED=1`` (set in CI) turns that into an ImportError.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING


def _load_source() -> ModuleType:
    src = Path(__file__).with_name("_core.pyx")
    text = src.read_text()
    mod = ModuleType("qtasks_fast._core_py")
    mod.__file__ = str(src)
    exec(compile(text, str(src), "exec"), mod.__dict__)
    return mod


def _load() -> tuple[ModuleType, bool]:
    if os.environ.get("QTASKS_PURE_PYTHON") == "1":
        return _load_source(), False
    try:
        from qtasks_fast import _core  # type: ignore[attr-defined]

        return _core, True
    except ImportError as exc:
        if os.environ.get("QTASKS_REQUIRE_COMPILED") == "1":
            raise ImportError(
                "qtasks_fast: the compiled core qtasks_fast._core is missing and QTASKS_REQUIRE_COMPILED=1; "
                "reinstall with a C compiler available (pip install --force-reinstall --no-binary qtasks-fast .)"
            ) from exc
        warnings.warn(
            "qtasks_fast: compiled core not found, running the pure-Python core (several times slower). "
            "Reinstall with a C compiler, or set QTASKS_PURE_PYTHON=1 to silence this.",
            RuntimeWarning,
            stacklevel=2,
        )
        return _load_source(), False


core, COMPILED = _load()

if TYPE_CHECKING:
    from qtasks_fast._core import (
        Delivery,
        decode_batch,
        encode,
        encode_envelopes,
        enqueue_args,
        new_uuid,
        settle_args,
    )
else:
    Delivery = core.Delivery
    decode_batch = core.decode_batch
    encode = core.encode
    encode_envelopes = core.encode_envelopes
    enqueue_args = core.enqueue_args
    settle_args = core.settle_args
    new_uuid = core.new_uuid
