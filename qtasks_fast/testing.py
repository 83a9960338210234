"""Run a worker inside the current process, for tests of user code.

    with WorkerThread(app):
        assert my_task.add_task(2, timeout=5).returning == 4

Pair it with ``broker_url="memory://"`` for tests without any server, or with a
real Redis URL to test against the real broker.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING

from qtasks_fast.worker.worker import Worker

if TYPE_CHECKING:
    from qtasks_fast.app import BaseQueueTasks


class WorkerThread:
    """A worker on its own event loop in a daemon thread; stops (draining) on exit of the ``with`` block."""

    def __init__(self, app: BaseQueueTasks, worker_id: str = "test", slot: int = 0, concurrency: int | None = None,
                 queues: Sequence[str] | None = None) -> None:
        self.app, self.worker_id, self.slot = app, worker_id, slot
        self.concurrency, self.queues = concurrency, queues
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name=f"qtasks-worker-{worker_id}", daemon=True)

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        worker = Worker(self.app, worker_id=self.worker_id, slot=self.slot, concurrency=self.concurrency,
                        queues=self.queues, block_seconds=0.2)
        self._ready.set()
        await worker.run(self._stop)

    def __enter__(self) -> WorkerThread:
        self._thread.start()
        self._ready.wait(10)
        if self._error:
            raise self._error
        return self

    def stop(self) -> None:
        if self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)
        if self._error:
            raise self._error

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
