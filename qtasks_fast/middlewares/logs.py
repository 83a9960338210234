"""Log capture: the log lines a task emits while it runs, stored with the task for an operator to read later.

    from qtasks_fast.middlewares import LogCapture
    app.add_middleware(LogCapture)                       # or LogCapture(max_lines=500, level=logging.DEBUG)

    app.get_logs(uuid)                                   # -> ["2026-... INFO myapp: fetched 3 rows", ...]
    qtasks-fast -A app logs UUID [--json]

What is captured: every record that reaches the ``qtasks_fast`` logger (``ctx.logger`` of middlewares,
``self.ctx.get_logger()`` of an ``echo=True`` task) or the root logger (``logging.info(...)``,
``logging.getLogger(__name__)`` and any other logger that propagates to the root) while the task runs,
at ``level`` or above, including the worker's own line about the task's failure or retry. A logger's
own level still applies first: a record your logger drops never reaches any handler. In a worker
started by ``qtasks-fast run`` the root logger follows ``--log-level`` (INFO) unless the app configured
logging itself (see :mod:`qtasks_fast.log`), so ``logging.getLogger("x").info`` is captured there with
no setup; DEBUG lines need ``--log-level debug`` or a level on their logger. In a process of your own
(``WorkerThread``) your logging configuration decides.

The task is found through a contextvar set for its call, so async tasks, ``executor="inline"`` and
thread tasks (default) are captured, each run with only its own lines even when concurrent async tasks
interleave, including what they log from tasks or threads they start with the context copied
(``asyncio.create_task``, ``asyncio.to_thread``); ``executor="process"`` tasks are not
(their lines go to the worker's output, naming the task).

Hook order is the chain's (see :mod:`qtasks_fast.middleware`): the capture starts in LogCapture's
``before_execute`` and ends in its ``after_execute``. A middleware added after LogCapture runs inside it,
so what its hooks log is captured; one added before it wraps it, so what its hooks log is not (it is in
the worker's output, attributed to the task). Add LogCapture first to capture every middleware's lines.

Caps: the last ``max_lines`` lines (200) and ``max_bytes`` (64 KiB) of a run are kept; a first line
says how many were dropped. Lines are stored after the call, before the result (so they are there
when ``add_task(..., timeout=)`` returns), and expire with the record (``result_ttl``). A retry is a
new task with its own lines. A storage without task logs (see ``Storage.append_logs``) is reported
once and the lines are dropped; a failing store never changes the task's outcome.
"""

from __future__ import annotations

import contextvars
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

from qtasks_fast.abc.broker import NotSupported
from qtasks_fast.log import LOGGER_NAME, get_logger, task_label
from qtasks_fast.middleware import Middleware

if TYPE_CHECKING:
    from qtasks_fast.worker.context import ExecContext

log = get_logger("logs")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: where a run's buffer waits in ``ctx.data`` between the hooks
DATA_KEY = "qtasks_fast.log_capture"

#: the capture buffer of the task running in this context (None outside tasks)
current: contextvars.ContextVar[_Buffer | None] = contextvars.ContextVar("qtasks_fast_log_capture", default=None)


class _Buffer:
    """The last ``max_lines`` lines of one run within ``max_bytes``, and how many were dropped."""

    __slots__ = ("lines", "size", "dropped", "max_lines", "max_bytes", "level")

    def __init__(self, max_lines: int, max_bytes: int, level: int) -> None:
        self.lines: deque[str] = deque()
        self.size = 0
        self.dropped = 0
        self.max_lines, self.max_bytes, self.level = max_lines, max_bytes, level

    def add(self, line: str) -> None:
        if len(line) > self.max_bytes:
            line = line[:self.max_bytes - 20] + " [...line cut]"
        self.lines.append(line)
        self.size += len(line)
        while len(self.lines) > self.max_lines or self.size > self.max_bytes:
            self.size -= len(self.lines.popleft())
            self.dropped += 1

    def result(self) -> list[str]:
        if not self.dropped:
            return list(self.lines)
        return [f"[{self.dropped} earlier line(s) dropped: LogCapture keeps the last {self.max_lines} lines "
                f"/ {self.max_bytes} bytes]", *self.lines]


class CaptureHandler(logging.Handler):
    """Adds each record to the buffer of the task running in the current context; one per process.

    On the root logger it would also hide Python's last-resort output (warnings printed to stderr
    when no handler is configured), so it hands records to ``logging.lastResort`` while it is the
    root's only handler, as if it were not there.
    """

    #: not a handler of the user's: ``setup_logging`` may still take the root (see qtasks_fast.log)
    qtasks_fast = True

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter(FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "_qtf_seen", False):  # reached root after qtasks_fast (a process without setup_logging)
            return
        record._qtf_seen = True
        buf = current.get()
        if buf is not None and record.levelno >= buf.level:
            try:
                buf.add(self.format(record))
            except Exception:  # noqa: BLE001 - a bad format string must not break the task
                self.handleError(record)
        root = logging.getLogger()
        last = logging.lastResort
        if (record.name != LOGGER_NAME and not record.name.startswith(LOGGER_NAME + ".") and last is not None
                and root.handlers == [self] and record.levelno >= last.level):
            last.handle(record)


_handler: CaptureHandler | None = None


def install() -> CaptureHandler:
    """Put the capture handler on the root and ``qtasks_fast`` loggers (idempotent)."""
    global _handler
    if _handler is None:
        _handler = CaptureHandler()
    for name in (None, LOGGER_NAME):
        lg = logging.getLogger(name)
        if _handler not in lg.handlers:
            lg.addHandler(_handler)
    return _handler


class LogCapture(Middleware):
    """Captures what a task logs while it runs and stores it with the task (see the module doc)."""

    def __init__(self, max_lines: int = 200, max_bytes: int = 64 * 1024, level: int | str = logging.DEBUG) -> None:
        if max_lines < 1 or max_bytes < 100:
            raise ValueError(f"LogCapture: max_lines must be >= 1 and max_bytes >= 100, not {max_lines}/{max_bytes}")
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.level = logging.getLevelName(level.upper()) if isinstance(level, str) else level
        if not isinstance(self.level, int):
            raise ValueError(f"LogCapture: unknown level {level!r}")
        self._unsupported = False

    def before_execute(self, ctx: ExecContext) -> None:
        install()  # here, not at import: setup_logging of the worker process replaces qtasks_fast's handlers
        buf = _Buffer(self.max_lines, self.max_bytes, self.level)
        ctx.data[DATA_KEY] = buf
        current.set(buf)  # the call runs in this context (a copy of it, for a thread task)

    async def after_execute(self, ctx: ExecContext, status: str, result: Any) -> None:
        buf: _Buffer | None = ctx.data.get(DATA_KEY)
        current.set(None)
        if buf is None or not buf.lines or self._unsupported:
            return
        storage = ctx.app.storage
        try:
            await storage.append_logs(ctx.uuid, ctx.envelope.queue, buf.result())
        except NotSupported:
            self._unsupported = True
            log.warning("%s keeps no task logs: LogCapture drops what tasks log (implement "
                        "Storage.append_logs/get_logs, or use the Redis, SQLite or memory backend)",
                        type(storage).__name__)
        except Exception as exc:  # noqa: BLE001 - losing log lines must not fail the task
            log.warning("could not store %d log line(s) of task %s: %s: %s", len(buf.lines),
                        task_label(ctx.task_name, ctx.uuid), type(exc).__name__, exc)
