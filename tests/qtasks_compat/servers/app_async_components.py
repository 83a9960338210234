"""QTasks' own async test app in the shape its repository writes it (an AsyncRedisBroker, an AsyncWorker built on
it, both passed to QueueTasks), with only the imports changed; run as a plain ``python app_async_components.py``.
Name and Redis URL from the environment, as in app_sync_components.py.
"""

import os

from qtasks_fast.asyncio import QueueTasks
from qtasks_fast.brokers import AsyncRedisBroker
from qtasks_fast.workers import AsyncWorker

NAME = os.environ.get("COMPAT_APP_NAME", "QueueTasks")
broker = AsyncRedisBroker(name=NAME, url=os.environ.get("COMPAT_REDIS_URL", "redis://localhost:6379/0"))
worker = AsyncWorker(name=NAME, broker=broker)

app = QueueTasks(name=NAME, broker=broker, worker=worker)


@app.task(name="test")
async def sample_task(id: int) -> str:
    return f"user {id} recorded"


@app.task(name="error_task")
async def error_zero() -> float:
    return 1 / 0


if __name__ == "__main__":
    app.run_forever()
