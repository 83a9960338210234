"""The worker's summary line: at INFO, one line per ``config.log_summary_seconds`` instead of one per task.

    ... INFO qtasks_fast.worker [w1-0] 1520 tasks in 60s (25.3/s): 1490 ok, 20 failed, 6 retried, 4 cancelled

Why: a line per success drowns the failures and costs a busy worker more than the tasks; a summary
says the worker is alive and how it is doing. Nothing is logged for an interval without tasks, and
the rest of the last interval is logged when the worker stops. Every failure still has a line of its
own (``task add[uuid] error: ...``, its traceback at DEBUG), so do retries and cancels.

Counting stays off the hot path: the settler adds the size of each settled batch, and the executor
counts only the outcomes that are not a success (a slow path already). ``ok`` is the difference, so
a failure that is counted just before an interval ends and settled just after it moves one task
between two neighbouring lines; the sums over lines are exact.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from qtasks_fast.log import get_logger

if TYPE_CHECKING:
    from qtasks_fast.worker.worker import Worker

log = get_logger("worker")


class Summary:
    """Counts of one worker process since the last interval ended (an idle one ends too, so a rate is
    over the interval its tasks ended in)."""

    def __init__(self, w: Worker) -> None:
        self.w = w
        self.since = time.monotonic()
        self.last = (0, 0, 0, 0)

    def _now(self) -> tuple[int, int, int, int]:
        ex = self.w.executor
        return self.w.settled, ex.n_failed, ex.n_retried, ex.n_cancelled

    def line(self) -> str | None:
        """The line for the interval that ends now (None when no task ended in it); starts the next one."""
        now, t = self._now(), time.monotonic()
        settled, failed, retried, cancelled = (a - b for a, b in zip(now, self.last))
        seconds = t - self.since
        self.last, self.since = now, t
        if not (settled or failed or retried or cancelled):
            return None
        ok = max(0, settled - failed - retried - cancelled)
        return (f"{settled} tasks in {seconds:.0f}s ({settled / max(seconds, 1e-3):.1f}/s): {ok} ok, {failed} "
                f"failed, {retried} retried, {cancelled} cancelled")

    def flush(self) -> None:
        """Log the line of the interval so far, if any task ended in it."""
        text = self.line()
        if text is not None:
            log.info("%s", text)

    async def run(self, every: float) -> None:
        """Log a line every ``every`` seconds while tasks end (the worker cancels this when it stops)."""
        while True:
            await asyncio.sleep(every)
            self.flush()
