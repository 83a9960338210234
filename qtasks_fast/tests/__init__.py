"""Test cases of QTasks' API (``qtasks.tests``): :class:`SyncTestCase`, :class:`AsyncTestCase`.

For tests of user code without QTasks habits, :mod:`qtasks_fast.testing` (``WorkerThread``, ``use_broker``)
is the direct way; these cases wrap it the QTasks way (``case.settings(TestConfig.full())``).
"""

from qtasks_fast.tests.async_testcase import AsyncTestCase
from qtasks_fast.tests.sync_testcase import SyncTestCase

__all__ = ["AsyncTestCase", "SyncTestCase"]
