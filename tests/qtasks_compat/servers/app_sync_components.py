"""QTasks' own sync test app in the shape its repository writes it (a Redis broker, a SyncThreadWorker built on
it, both passed to QueueTasks), with only the imports changed; run as a plain ``python app_sync_components.py``.

The name and Redis URL come from the environment (QTasks' are "QueueTasks" and redis://localhost:6379/0) so that
test runs never share keys.
"""

import os

from qtasks_fast import QueueTasks
from qtasks_fast.brokers import SyncRedisBroker
from qtasks_fast.workers import SyncThreadWorker

NAME = os.environ.get("COMPAT_APP_NAME", "QueueTasks")
broker = SyncRedisBroker(name=NAME, url=os.environ.get("COMPAT_REDIS_URL", "redis://localhost:6379/0"))
worker = SyncThreadWorker(name=NAME, broker=broker)

app = QueueTasks(name=NAME, broker=broker, worker=worker)


@app.task(name="test")
def sample_task(id: int) -> str:
    return f"user {id} recorded"


@app.task(name="error_task")
def error_zero() -> float:
    return 1 / 0


if __name__ == "__main__":
    app.run_forever()
