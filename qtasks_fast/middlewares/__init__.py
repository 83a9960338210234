"""Built-in plugins of the task layer, each applied only to the tasks that use it.

- :mod:`~qtasks_fast.middlewares.retries`: ``retry=N`` with ``retry_on_exc``, exponential backoff and jitter.
- :mod:`~qtasks_fast.middlewares.arguments`: wire signature, validation, ``Depends``/``State``/pydantic placement.
- :mod:`~qtasks_fast.middlewares.hooked`: the executor's path for tasks with middleware hooks, event
  handlers, injected parameters or ``executor="process"``.
- :mod:`~qtasks_fast.middlewares.metrics`: ``Metrics``, Prometheus counts and durations per task
  (``app.add_middleware(Metrics, port=9100)``; extra ``metrics``).
- :mod:`~qtasks_fast.middlewares.logs`: ``LogCapture``, what a task logs while it runs, stored with it as it comes
  (``app.get_logs(uuid)``, ``qtasks-fast -A app logs UUID``, the WebView follows a running task).
- :mod:`~qtasks_fast.middlewares.task`: ``TaskMiddleware``, QTasks' middleware classes run unchanged
  (``middlewares_before``/``middlewares_after``).
- Plugins with named triggers (:mod:`qtasks_fast.plugins`) reach tasks through middlewares too.
- Time limits (``max_time``) live in the executor, and the hard limit of ``executor="process"`` in
  :mod:`qtasks_fast.worker.procexec`.
"""

from qtasks_fast.middlewares.logs import LogCapture
from qtasks_fast.middlewares.metrics import Metrics
from qtasks_fast.middlewares.retries import retry_child, retry_delay
from qtasks_fast.middlewares.task import TaskMiddleware

__all__ = ["LogCapture", "Metrics", "TaskMiddleware", "retry_child", "retry_delay"]
