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

Live tail: lines are stored while the task runs, in batches (50 lines, or half a second after the
first waiting line, whichever comes first), so ``app.get_logs``, ``qtasks-fast logs`` and the WebView
follow a running task; a task that logs nothing writes nothing. What is still waiting is stored after
the call, before the result (so every line is there when ``add_task(..., timeout=)`` returns). Lines
expire with the record (``result_ttl``). A retry is a new task with its own lines.

Caps: ``max_lines`` (200) and ``max_bytes`` (64 KiB) per run, half for its first lines and half for its
last. The first half is stored as it comes; once it is full, later lines keep only the newest within
the other half and are stored when the call ends, after a line saying how many were dropped there
(stored lines cannot be taken back, so a live tail cannot also keep only "the last N"). A line longer
than half of ``max_bytes`` is cut. A storage without task logs (see ``Storage.append_logs``) is
reported once and the lines are dropped; a failing store is reported in the worker's log, stops the
live writes of that run (its lines, the failed batch too, are tried again when the call ends) and never
changes the task's outcome.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
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
#: a run's pending lines are written as soon as this many wait, else at most FLUSH_INTERVAL seconds after
#: the first of them: a live tail within about half a second, and few writes for a chatty fleet
BATCH_LINES = 50
FLUSH_INTERVAL = 0.5
#: guards the buffers against a thread task logging while the loop takes a batch (held for a few
#: list operations; one for all buffers, so a task that logs nothing never creates one)
_LOCK = threading.Lock()

#: the capture buffer of the task running in this context (None outside tasks)
current: contextvars.ContextVar[_Buffer | None] = contextvars.ContextVar("qtasks_fast_log_capture", default=None)


class _Buffer:
    """One run's lines: a head written while the task runs (live tail), then the last lines of the rest.

    ``add`` may be called from any thread (a thread task logs from its pool thread); writes happen on the
    worker's event loop. The first half of the caps (``max_lines``, ``max_bytes``) is the head: its lines
    are written in batches as they come (``BATCH_LINES`` at once, or after ``FLUSH_INTERVAL``, whichever is
    first), so an operator can follow them. What comes after keeps only its newest lines within the other
    half, written when the call ends after a line saying how many were dropped: stored lines cannot be
    taken back, so a live tail and "the last N lines" meet this way. A run that logs nothing never wakes
    the loop and never writes.
    """

    __slots__ = ("pending", "size", "count", "tail", "tail_size", "dropped", "max_lines", "max_bytes", "level",
                 "loop", "owner", "ctx", "timer", "flushing", "started", "closed")

    def __init__(self, owner: LogCapture, ctx: ExecContext, loop: asyncio.AbstractEventLoop | None) -> None:
        # only what every run needs: the rest is set by the first line (``_start``), so a task that logs
        # nothing pays for five attributes
        self.level = owner.level
        self.owner: LogCapture | None = owner  # None once a store failed: the rest waits for the end of the call
        self.ctx, self.loop = ctx, loop  # no loop: lines wait for the end of the call
        self.started = self.closed = False

    def _start(self) -> None:
        self.pending: list[str] = []  # head lines not written yet
        self.size = self.count = 0  # of the head, written or pending
        self.tail: deque[str] | None = None  # set once the head is full: every later line goes here
        self.tail_size = self.dropped = 0
        owner = self.owner
        assert owner is not None  # set in __init__, cleared only by a write, after a first line
        self.max_lines, self.max_bytes = owner.max_lines, owner.max_bytes
        self.timer: asyncio.TimerHandle | None = None
        self.flushing: asyncio.Task[None] | None = None
        self.started = True

    def add(self, line: str) -> None:
        with _LOCK:
            if not self.started:
                self._start()
            half = self.max_bytes // 2
            if len(line) > half:
                line = line[:half - 20] + " [...line cut]"
            if self.tail is None and self.count < (self.max_lines + 1) // 2 and self.size + len(line) <= half:
                self.pending.append(line)
                self.count += 1
                self.size += len(line)
                wake = len(self.pending)
            else:
                self._add_tail(line)
                return
        if (wake == 1 or wake == BATCH_LINES) and self.loop is not None and not self.closed:
            # a fresh context: the flush must not capture its own warnings into this buffer
            try:
                self.loop.call_soon_threadsafe(self._kick, wake >= BATCH_LINES, context=contextvars.Context())
            except RuntimeError:  # the worker's loop is closed: the lines wait for a close that may not come
                pass

    def _add_tail(self, line: str) -> None:
        if self.tail is None:
            self.tail = deque()
        self.tail.append(line)
        self.tail_size += len(line)
        while len(self.tail) > self.max_lines // 2 or self.tail_size > self.max_bytes - self.max_bytes // 2:
            self.tail_size -= len(self.tail.popleft())
            self.dropped += 1

    def _kick(self, now: bool) -> None:
        """On the loop: write the pending lines now, or arm the timer that will (a running write goes on)."""
        if self.closed or self.flushing is not None or self.loop is None or self.owner is None:
            return
        if now:
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            self.flushing = self.loop.create_task(self._flush())
        elif self.timer is None:
            self.timer = self.loop.call_later(FLUSH_INTERVAL, self._kick, True)

    async def _flush(self) -> None:
        try:
            while self.owner is not None:
                with _LOCK:
                    batch, self.pending = self.pending, []
                if not batch:
                    return
                if not await self.owner.store(self.ctx, batch):
                    self.owner = None  # the storage failed: these lines and the rest wait for the end of the call
                    with _LOCK:
                        self.pending[:0] = batch
                    return
                if len(self.pending) < BATCH_LINES:
                    return
        finally:
            self.flushing = None
            if self.pending and self.owner is not None:
                self._kick(False)  # lines came during the write: they wait at most one interval

    async def close(self) -> list[str]:
        """Stop writing while the task runs, wait for a write under way; the lines still to store, in order."""
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
        if self.flushing is not None:
            await self.flushing
        with _LOCK:
            rest, self.pending = self.pending, []
            if self.tail:
                if self.dropped:
                    rest.append(f"[{self.dropped} line(s) dropped here: LogCapture keeps the first and the last "
                                f"lines of a run, {self.max_lines} lines / {self.max_bytes} bytes in all]")
                rest.extend(self.tail)
            elif self.dropped:
                rest.append(f"[{self.dropped} later line(s) dropped: LogCapture keeps the first and the last "
                            f"lines of a run, {self.max_lines} lines / {self.max_bytes} bytes in all]")
        return rest


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
        loop = None if self._unsupported else asyncio.get_running_loop()  # hooks run on the worker's loop
        buf = _Buffer(self, ctx, loop)
        ctx.data[DATA_KEY] = buf
        current.set(buf)  # the call runs in this context (a copy of it, for a thread task)

    async def after_execute(self, ctx: ExecContext, status: str, result: Any) -> None:
        buf: _Buffer | None = ctx.data.get(DATA_KEY)
        current.set(None)
        if buf is None:
            return
        if not buf.started:  # logged nothing: nothing to wait for or to store
            buf.closed = True
            return
        rest = await buf.close()
        if rest:
            await self.store(ctx, rest)

    async def store(self, ctx: ExecContext, lines: list[str]) -> bool:
        """Append ``lines`` to the task's log; False (said once in the worker's log) when they could not be."""
        if self._unsupported:
            return False
        storage = ctx.app.storage
        try:
            await storage.append_logs(ctx.uuid, ctx.envelope.queue, lines)
        except NotSupported:
            self._unsupported = True
            log.warning("%s keeps no task logs: LogCapture drops what tasks log (implement "
                        "Storage.append_logs/get_logs, or use the Redis, SQLite, PostgreSQL or memory backend)",
                        type(storage).__name__)
            return False
        except Exception as exc:  # noqa: BLE001 - losing log lines must not fail the task
            log.warning("could not store %d log line(s) of task %s: %s: %s", len(lines),
                        task_label(ctx.task_name, ctx.uuid), type(exc).__name__, exc)
            return False
        return True
