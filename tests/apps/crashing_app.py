"""An app whose workers die as they start (the broker answers pings but its consumer setup fails).

``CRASH_KIND=config`` makes the failure a :class:`ConfigError` (one no restart can fix) instead of a bug.
"""

import os

from qtasks_fast import QueueTasks
from qtasks_fast.backends.redis.broker import RedisBroker
from qtasks_fast.backends.redis.storage import RedisStorage


class CrashingBroker(RedisBroker):
    async def start(self, consumer, worker_id, queues, storage):  # type: ignore[no-untyped-def]
        if os.environ.get("CRASH_KIND") == "config":
            from qtasks_fast.exceptions import ConfigError

            raise ConfigError("queue 'nowhere' is not configured on purpose: name a served queue")
        raise RuntimeError("consumer setup failed on purpose")


url = os.environ.get("QTASKS_BROKER_URL", "redis://127.0.0.1:6379/0")
broker = CrashingBroker(url, app_name=os.environ.get("TEST_APP_NAME", "crashing"))
app = QueueTasks(broker.app_name, broker=broker, storage=RedisStorage(url, connection=broker.conn))
