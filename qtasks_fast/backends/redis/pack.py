"""The Redis script's argument packing and the event feed's JSON (``_pack.pyx``): the compiled module, or its
source as Python.

See :func:`qtasks_fast._corelib.load_compiled` for when each is used; ``COMPILED`` says which one runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from qtasks_fast._corelib import load_compiled

_pack, COMPILED = load_compiled("qtasks_fast.backends.redis._pack", Path(__file__).with_name("_pack.pyx"))

if TYPE_CHECKING:
    from qtasks_fast.backends.redis._pack import enqueue_args, event_json, settle_args
else:
    enqueue_args = _pack.enqueue_args
    event_json = _pack.event_json
    settle_args = _pack.settle_args

__all__ = ["COMPILED", "enqueue_args", "event_json", "settle_args"]
