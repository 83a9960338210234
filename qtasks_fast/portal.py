"""A private event loop in a daemon thread, for running async components from sync code.

The sync ``QueueTasks`` uses it only for components that have no sync fast path
(custom brokers and storages); the built-in Redis backend talks sync Redis directly.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class Portal:
    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="qtasks-portal", daemon=True)
        self._thread.start()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The helper loop (a backend's sync ``close()`` drops what it opened there)."""
        return self._loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()


_portal: Portal | None = None
_lock = threading.Lock()


def started_portal() -> Portal | None:
    """The helper loop if something started it, else None (closing need not start one)."""
    return _portal


def portal() -> Portal:
    global _portal
    with _lock:
        if _portal is None:
            _portal = Portal()
        return _portal
