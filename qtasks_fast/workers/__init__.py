"""QTasks' worker components (``qtasks.workers.SyncThreadWorker``, ``AsyncWorker``), accepted as
``QueueTasks(worker=...)`` so that QTasks apps which build one, as QTasks' own test apps do::

    broker = SyncRedisBroker(name="QueueTasks")
    worker = SyncThreadWorker(name="QueueTasks", broker=broker)
    app = QueueTasks(name="QueueTasks", broker=broker, worker=worker)

run with only the import changed. Why a stand-in and not QTasks' worker: the worker here is not an object
of the app but the process that serves it (``app.run_forever()``, ``qtasks-fast run``), with leases and
at-least-once delivery; QTasks' worker holds its own queue and executor. So the object names the worker of
the app and carries nothing of its own: what it is given must agree with the app (the same ``name`` and
broker), and what only QTasks' worker could honour (its own ``log``, ``config`` or ``events``) is refused in
one line when given, never dropped. ``app.worker`` is the object, as in QTasks; an app built without one
gets the default of its client, whose ``config`` and ``broker`` are the app's (QTasks' examples read
``app.worker.config``).
"""

from __future__ import annotations

from typing import Any


class BaseWorker:
    """QTasks' worker component: the worker of one app, which runs in the process serving it."""

    def __init__(self, name: str = "QueueTasks", broker: Any = None, log: Any = None, config: Any = None,
                 events: Any = None) -> None:
        why = {"log": "pass log= to QueueTasks", "config": "pass config= to QueueTasks (app.config is the worker's)",
               "events": "pass events= to QueueTasks"}
        for option, value in (("log", log), ("config", config), ("events", events)):
            if value is not None:
                raise TypeError(f"{type(self).__name__}({option}=...): the worker here is the process serving the "
                                f"app, which uses the app's; {why[option]} and drop it here")
        self.name = name
        self._broker = broker
        self._app: Any = None

    def bind(self, app: Any) -> None:
        """Become the worker of ``app`` (``QueueTasks`` calls it): ``config`` and ``broker`` then read the app's."""
        self._app = app

    @property
    def broker(self) -> Any:
        """The broker given, else the app's (QTasks' worker holds the app's broker)."""
        if self._broker is None and self._app is not None:
            return self._app.broker
        return self._broker

    @property
    def config(self) -> Any:
        """The app's config (QTasks' worker shares it: ``app.worker.config``), None before it joins an app."""
        return self._app.config if self._app is not None else None

    def conflict(self, app_name: str, broker: Any) -> str | None:
        """Why this worker cannot be the one of an app named ``app_name`` with ``broker``, or None."""
        if self.name != app_name:
            return (f"{type(self).__name__}(name={self.name!r}) is not the worker of QueueTasks(name={app_name!r}): "
                    "give both the same name")
        if self._broker is not None and self._broker is not broker:
            return (f"{type(self).__name__}(broker=...) is not the app's broker: pass the same broker object to "
                    "QueueTasks(broker=...), or none to the worker")
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class SyncThreadWorker(BaseWorker):
    """QTasks' sync worker component (see the module docstring)."""


class AsyncWorker(BaseWorker):
    """QTasks' async worker component (see the module docstring)."""


__all__ = ["AsyncWorker", "BaseWorker", "SyncThreadWorker"]
