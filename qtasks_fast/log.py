"""One log vocabulary: every line names the worker id, and a line logged while a task runs names the task.

    2026-11-28 20:01:02,345 INFO myapp.billing [w1-0 charge[6f1c...]] charged order 42
    2026-11-28 20:01:02,346 WARNING qtasks_fast.worker [w1-0] task charge[6f1c...] error: ValueError: ...

The task is found through :data:`current_task`, a contextvar the executor sets around each run (its
middleware hooks included), so plain ``logging.info(...)`` in a task's code, in the threads and asyncio
tasks it starts with the context copied and in an ``executor="process"`` child, is attributed without the
user passing anything. The worker's own lines name their task in the text (:func:`task_label`), so the
bracket carries only the worker there. Records get ``worker``, ``task_name``, ``task_id``, ``task`` and
``subname`` (QTasks' component name: the task's, else the last part of the logger's name) attributes, for
formats of your own.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from qtasks_fast.schemas import Envelope

LOGGER_NAME = "qtasks_fast"
FORMAT = "%(asctime)s %(levelname)s %(name)s [%(where)s] %(message)s"
#: the logger of ``ctx.logger`` and ``self.ctx.get_logger()``: task code, not the worker's own lines
TASK_LOGGER = LOGGER_NAME + ".task"

#: the envelope of the task whose code runs in this context (None outside tasks); set by the executor
current_task: contextvars.ContextVar[Envelope | None] = contextvars.ContextVar("qtasks_fast_task", default=None)


def task_label(task_name: str, uuid: str) -> str:
    """How every log line refers to a task: ``name[uuid]``."""
    return f"{task_name}[{uuid}]"


class ContextFilter(logging.Filter):
    """Adds the worker id and the running task (from :data:`current_task`) to every record it sees."""

    def __init__(self, worker: str) -> None:
        super().__init__()
        self.worker = worker

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "worker"):
            record.worker = self.worker
        env = current_task.get()
        record.task_name = env.task_name if env is not None else "-"
        record.task_id = env.uuid if env is not None else "-"
        task = getattr(record, "task", None)  # ``ctx.logger`` passes it as ``extra``
        if task is None:
            record.task = task = task_label(env.task_name, env.uuid) if env is not None else ""
        if not hasattr(record, "subname"):  # QTasks' %(subname)s: the component (a Logger passes its own)
            record.subname = env.task_name if env is not None else record.name.rpartition(".")[2]
        own = record.name.startswith(LOGGER_NAME) and record.name != TASK_LOGGER  # names its task in the text
        worker = getattr(record, "worker", self.worker)
        record.where = f"{worker} {task}" if task and not own else worker
        return True


def _ours(handler: logging.Handler) -> bool:
    return bool(getattr(handler, "qtasks_fast", False))


def setup_logging(level: str | int = "INFO", worker: str = "-", root: bool = False,
                  fmt: str = FORMAT) -> logging.Logger:
    """Configure the ``qtasks_fast`` logger of a process (idempotent); ``root``: in a worker process, also
    the root logger, so what task code logs through the standard logging module is printed, in the same
    format, at the worker's level.

    The root is taken only when nothing else configured it (no handler but qtasks_fast's own): an app
    that calls ``logging.basicConfig(...)`` or adds handlers keeps its handlers, format and level; they
    get the filter, so a format of theirs may use ``%(worker)s``, ``%(task_id)s``, ``%(task_name)s``.
    ``fmt``: the format of our handler (``config.logs_format``).
    """
    logger = logging.getLogger(LOGGER_NAME)
    lvl = level if isinstance(level, int) else level.upper()
    logger.setLevel(lvl)
    for h in list(logger.handlers):
        logger.removeHandler(h)
    flt = ContextFilter(worker)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(fmt))
    handler.addFilter(flt)
    handler.qtasks_fast = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.propagate = False
    if root:
        top = logging.getLogger()
        for h in [h for h in top.handlers if _ours(h) and isinstance(h, logging.StreamHandler)]:
            top.removeHandler(h)  # ours from an earlier call (a forked worker inherits its supervisor's)
        foreign = [h for h in top.handlers if not _ours(h)]
        for h in foreign:
            for old in [f for f in h.filters if isinstance(f, ContextFilter)]:
                h.removeFilter(old)
            h.addFilter(flt)
        if not foreign:
            top.addHandler(handler)
            top.setLevel(lvl)
    return logger


def get_logger(name: str | None = None) -> logging.Logger:
    return logging.getLogger(LOGGER_NAME if name is None else f"{LOGGER_NAME}.{name}")
