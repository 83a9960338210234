"""Built-in plugins of the task layer, each applied only to the tasks that use it.

- :mod:`~qtasks_fast.middlewares.retries`: ``retry=N`` with ``retry_on_exc``, exponential backoff and jitter.
- :mod:`~qtasks_fast.middlewares.arguments`: wire signature, validation, ``Depends``/``State``/pydantic placement.
- :mod:`~qtasks_fast.middlewares.hooked`: the executor's path for tasks with middleware hooks, event
  handlers, injected parameters or ``executor="process"``.
- Time limits (``max_time``) live in the executor, and the hard limit of ``executor="process"`` in
  :mod:`qtasks_fast.worker.procexec`.
"""

from qtasks_fast.middlewares.retries import retry_child, retry_delay

__all__ = ["retry_child", "retry_delay"]
