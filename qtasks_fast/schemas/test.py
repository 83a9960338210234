"""``TestConfig`` (QTasks ``qtasks.schemas.test.TestConfig``): which parts of an app a test case runs for real.

Used with :class:`qtasks_fast.tests.SyncTestCase` / :class:`~qtasks_fast.tests.AsyncTestCase`; see there for
what each flag does in qtasks_fast (the broker and the plugins are what matter here).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class TestConfig:
    """Parts of the app a test case keeps real; a part left False is replaced for the test.

    ``broker``: False runs the case on a fresh in-process ``memory://`` backend instead of the app's own;
    ``worker``: False means the case never runs a worker (``start()`` refuses), so sent tasks stay queued;
    ``plugins``: False removes the app's plugins for the case; ``storage`` and ``global_config`` name
    QTasks components that are part of the broker's backend here and change nothing on their own (in QTasks
    1.7.3 they also only pick the stand-ins of a disabled broker).
    """

    __test__ = False  # not a pytest test class, though its name starts with "Test"

    worker: bool = False
    broker: bool = False
    storage: bool = False
    global_config: bool = False
    plugins: bool = False

    @classmethod
    def full(cls) -> TestConfig:
        """Everything real: the app as it runs in production."""
        return cls(worker=True, broker=True, storage=True, global_config=True, plugins=True)

    @classmethod
    def only_worker(cls, plugins: bool = False) -> TestConfig:
        """A worker and no broker of the app's: tasks run in this process on an in-memory backend."""
        return cls(worker=True, plugins=plugins)

    @classmethod
    def only_broker(cls, plugins: bool = False) -> TestConfig:
        """The app's broker and no worker of the case's: tasks go to the broker for a worker elsewhere."""
        return cls(broker=True, plugins=plugins)

    @classmethod
    def full_broker(cls) -> TestConfig:
        """The broker with its storage, config and plugins, and no worker of the case's."""
        return cls(broker=True, storage=True, global_config=True, plugins=True)
