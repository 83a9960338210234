"""What :class:`~qtasks_fast.tests.SyncTestCase` and :class:`~qtasks_fast.tests.AsyncTestCase` share (QTasks
``qtasks.tests.base.BaseTestCase``): the :class:`~qtasks_fast.schemas.test.TestConfig` and the parts of the
app it replaces for the test, given back by ``stop()``.

Why not QTasks' stand-ins: QTasks swaps a disabled broker or worker for one that does nothing, so a test
can "send" without a server and nothing happens. Here a disabled broker is an in-process ``memory://``
backend (:func:`qtasks_fast.testing.use_broker`): sends, records and a worker of the case (``start``,
``start_in_background``) really run, with no server, and nothing reaches the app's own broker.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from qtasks_fast.plugins import BasePlugin
from qtasks_fast.schemas.test import TestConfig
from qtasks_fast.testing import WorkerThread, use_broker

if TYPE_CHECKING:
    from qtasks_fast.app import BaseQueueTasks


class BaseTestCase:
    """A test case of ``app``: :meth:`settings` picks the real parts, ``add_task``/``get`` use them."""

    def __init__(self, app: BaseQueueTasks, name: str | None = None) -> None:
        self.app = app
        #: QTasks' project name of the case's components; kept for the log lines of this case
        self.name = name
        self.test_config = TestConfig()
        self._backend: AbstractContextManager[Any] | None = None
        self._plugins: dict[str, list[BasePlugin]] | None = None
        self._thread: WorkerThread | None = None

    def settings(self, test_config: TestConfig | None = None, awaiting: bool | None = False) -> None:
        """Use ``test_config`` (None: the one set before) from now until :meth:`stop`. ``awaiting`` picks
        QTasks' async stand-ins; the stand-ins here serve sync and async clients alike."""
        if test_config is not None:
            self.test_config = test_config
        self._restore()
        if not self.test_config.broker:
            self._backend = use_broker(self.app, "memory://")
            self._backend.__enter__()
        if not self.test_config.plugins:  # emptied in place: the trigger middlewares hold this very object
            plugins = self.app.plugins
            self._plugins, plugins.by_trigger = plugins.by_trigger, {}

    def _check_sends(self) -> None:
        """Sending needs a broker or a worker of the case (QTasks printed a line and returned None)."""
        if not (self.test_config.broker or self.test_config.worker):
            raise RuntimeError(f"test case {self.name or self.app.name!r}: TestConfig enables neither the broker nor "
                               "the worker, so a task sent here could never run: enable one, e.g. TestConfig.full()")

    def _check_worker(self) -> None:
        if not self.test_config.worker:
            raise RuntimeError(f"test case {self.name or self.app.name!r}: TestConfig(worker=False) runs no worker: "
                               "enable it (TestConfig.full() or TestConfig.only_worker()) to start one")

    def start_in_background(self, starter: Any = None, num_workers: int | None = None,
                            reset_config: bool = True) -> None:
        """Run a worker of the app in a daemon thread until :meth:`stop` (QTasks: ``run_forever`` in a thread).
        ``num_workers``: tasks run at once (``config.concurrency`` when None)."""
        self._check_worker()
        if starter is not None or not reset_config:
            raise TypeError("start_in_background: starter= and reset_config=False are not supported by qtasks_fast "
                            "(no starters; a worker always uses app.config): drop them")
        if self._thread is None:
            self._thread = WorkerThread(self.app, worker_id=self.name or "testcase", concurrency=num_workers)
            self._thread.__enter__()

    def _stop_parts(self) -> None:
        thread, self._thread = self._thread, None
        try:
            if thread is not None:
                thread.stop()
        finally:
            self._restore()

    def _restore(self) -> None:
        """Give the app back its own broker and plugins."""
        backend, self._backend = self._backend, None
        if backend is not None:
            backend.__exit__(None, None, None)
        if self._plugins is not None:  # the app's plugins back, with any added while the case ran
            plugins, saved, self._plugins = self.app.plugins, self._plugins, None
            for name, listeners in plugins.by_trigger.items():
                kept = saved.setdefault(name, [])
                kept.extend(p for p in listeners if p not in kept)
            plugins.by_trigger = saved
