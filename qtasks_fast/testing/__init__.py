"""Run a worker inside the current process, for tests of user code.

    from tasks import app, add                   # an app that hard-codes its Redis URL

    def test_add():
        with WorkerThread(app, broker_url="memory://"):
            task = add.add_task(1, 2, timeout=5)  # None when not finished within 5 s
            assert task is not None and task.returning == 3

``broker_url="memory://"`` (or :func:`use_broker`) points the app, producer and
worker alike, at an in-process broker for the block, whatever URL the app was
built with, and gives the app its own backend back afterwards: tests need no
server. Without it the worker uses the app's own broker (a real Redis URL to
test against the real broker). ``feed()`` generators and ``executor="process"``
tasks work here as under ``qtasks-fast run``: the children of the process
executor import the app's module with this process' ``sys.path`` (an app defined
in ``__main__`` cannot be imported by them: define it in a module).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

from qtasks_fast.backends import make_backend
from qtasks_fast.worker.worker import Worker

if TYPE_CHECKING:
    from qtasks_fast.app import BaseQueueTasks

App = TypeVar("App", bound="BaseQueueTasks")


@contextmanager
def use_broker(app: App, url: str = "memory://") -> Iterator[App]:
    """Within the block, ``app`` sends, reads and runs its tasks through a fresh backend for ``url``.

    Why: a test must not reach the Redis that ``tasks.py`` hard-codes, and reaching into ``app._broker``
    couples it to internals. Every producer call and every worker started inside the block (a
    :class:`WorkerThread`) use the new backend; on exit the app's own broker and storage come back.
    Each block with ``memory://`` starts empty.
    """
    saved = (app.broker_url, app._broker, app._storage)
    app._broker, app._storage = make_backend(url, app.name, app.config)
    app.broker_url = url
    try:
        yield app
    finally:
        app.broker_url, app._broker, app._storage = saved


class WorkerThread:
    """A worker on its own event loop in a daemon thread; stops (draining) on exit of the ``with`` block.

    ``broker_url`` runs the block under :func:`use_broker` (``"memory://"``: no server needed).
    """

    def __init__(self, app: BaseQueueTasks, worker_id: str = "test", slot: int = 0, concurrency: int | None = None,
                 queues: Sequence[str] | None = None, broker_url: str | None = None) -> None:
        self.app, self.worker_id, self.slot = app, worker_id, slot
        self.concurrency, self.queues = concurrency, queues
        self.broker_url = broker_url
        self._backend: AbstractContextManager[BaseQueueTasks] | None = None
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
        finally:  # what the worker started (child processes, pipes) is closed on this loop, not by the GC later
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        worker = Worker(self.app, worker_id=self.worker_id, slot=self.slot, concurrency=self.concurrency,
                        queues=self.queues, block_seconds=0.2)
        self._ready.set()
        await worker.run(self._stop)

    def __enter__(self) -> WorkerThread:
        if self.broker_url is not None:
            self._backend = use_broker(self.app, self.broker_url)
            self._backend.__enter__()
        self._thread.start()
        self._ready.wait(10)
        if self._error:
            self._restore()
            raise self._error
        return self

    def stop(self) -> None:
        try:
            if self._stop is not None and self._thread.is_alive():
                self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(60)
        finally:
            self._restore()
        if self._error:
            raise self._error

    def _restore(self) -> None:
        backend, self._backend = self._backend, None
        if backend is not None:
            backend.__exit__(None, None, None)

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
