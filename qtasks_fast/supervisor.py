"""The supervisor: forks N worker processes, pins them, restarts the dead, drains on SIGTERM, runs the scheduler.

A restarted worker keeps its slot, hence its consumer name ``<worker-id>-<slot>``,
so it takes over its predecessor's pending messages on its first fetch instead
of waiting for their lease to run out. Signals are handled synchronously with
``sigtimedwait``: the supervisor sleeps in the kernel, it never polls.

It never gives up on a condition that time can fix. Workers wait out broker
outages themselves (see :mod:`qtasks_fast.worker.startup`); a worker that dies
anyway is restarted forever: at once after a healthy run, with capped backoff
while it keeps dying soon after starting (up to :data:`MAX_BACKOFF`, or
:data:`MAX_BACKOFF_TRANSIENT` when it died of an outage, so the fleet is back
within seconds of the broker). One line when a worker starts failing, one when it
is up again, not one per attempt. The supervisor stops only on a worker's
:data:`~qtasks_fast.worker.runner.EXIT_PERMANENT` (the app or its configuration
cannot work, e.g. a wrong broker password), saying so.

Its workers die with it: each asks the kernel for SIGTERM when the supervisor
dies (see :mod:`qtasks_fast.worker.runner`), drains and exits, and gives up its
consumer name, which a worker of another pool waits for (all workers of one
supervisor share an owner token, so its own restarted workers take it at once).

The periodic-task scheduler (:mod:`qtasks_fast.scheduler`) runs here, not in the
workers, on a private event loop in this same thread: the wait for signals ends
at the next tick, the tick is claimed and enqueued, and the wait resumes. No
thread is started, so forking a replacement worker stays safe.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from qtasks_fast.faults import describe
from qtasks_fast.log import get_logger
from qtasks_fast.worker.runner import EXIT_CRASHED, EXIT_PERMANENT, EXIT_TRANSIENT, exit_code, run_worker
from qtasks_fast.worker.startup import new_owner

if TYPE_CHECKING:
    from qtasks_fast.app import BaseQueueTasks
    from qtasks_fast.scheduler import Scheduler

log = get_logger("supervisor")
#: a worker that dies sooner than this after starting is failing: it is restarted with growing backoff
STABLE = 10.0
FIRST_BACKOFF = 0.25
#: longest wait before restarting a worker that keeps crashing (a bug: do not spin, never give up)
MAX_BACKOFF = 30.0
#: longest wait when it died of an outage (EXIT_TRANSIENT): back within seconds of the broker
MAX_BACKOFF_TRANSIENT = 5.0
SIGNALS = (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT)
#: longest a scheduler tick may block the supervisor (a hung broker must not delay a drain for long)
TICK_TIMEOUT = 10.0


class Supervisor:
    def __init__(self, app: BaseQueueTasks, processes: int, worker_id: str, concurrency: int | None,
                 queues: Sequence[str] | None, pin_cpus: bool, log_level: str | int, scheduler: bool = True) -> None:
        self.app, self.processes, self.worker_id = app, processes, worker_id
        self.concurrency, self.queues, self.pin_cpus, self.log_level = concurrency, queues, pin_cpus, log_level
        self.children: dict[int, int] = {}  # pid -> slot
        self.started: dict[int, float] = {}  # slot -> start time
        #: slot -> deaths in a row soon after starting (while > 0 the slot is "failing")
        self.failures: dict[int, int] = {}
        self.restart_at: dict[int, float] = {}
        #: shared by this supervisor's workers: the owner of their consumer names (see worker/startup.py)
        self.owner = new_owner()
        self.scheduler: Scheduler | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        if scheduler:
            from qtasks_fast.periodic import schedules

            if schedules(app):
                from qtasks_fast.scheduler import Scheduler

                self.scheduler = Scheduler(app)

    def spawn(self, slot: int) -> None:
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # child
            signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
            for s in SIGNALS:
                signal.signal(s, signal.SIG_DFL)
            code = 0
            try:
                run_worker(self.app, self.worker_id, slot, self.concurrency, self.queues, self.log_level,
                           owner=self.owner, parent=parent, processes=self.processes)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else EXIT_CRASHED
            except BaseException as exc:  # noqa: BLE001
                code = exit_code(exc)
                wlog = get_logger("worker")
                if code == EXIT_PERMANENT:
                    wlog.error("worker %s-%d cannot run: %s. No restart can fix this: correct the app or its "
                               "configuration", self.worker_id, slot, describe(exc))
                else:
                    wlog.exception("worker %s-%d crashed: %s", self.worker_id, slot, describe(exc))
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        self.children[pid] = slot
        self.started[slot] = time.monotonic()
        if self.pin_cpus:
            self._pin(pid, slot)
        # in a crash loop only the first restart is worth a line (the pid of each restart is a debug line)
        (log.debug if self.failures.get(slot, 0) > 1 else log.info)("started worker %s-%d (pid %d)",
                                                                    self.worker_id, slot, pid)

    @staticmethod
    def _pin(pid: int, slot: int) -> None:
        import psutil

        try:
            cpus = psutil.Process().cpu_affinity() or list(range(os.cpu_count() or 1))
            cpu = cpus[slot % len(cpus)]
            psutil.Process(pid).cpu_affinity([cpu])
            log.info("pinned worker slot %d (pid %d) to CPU %d", slot, pid, cpu)
        except (psutil.Error, AttributeError, OSError) as exc:
            log.warning("cannot pin worker slot %d to a CPU: %s", slot, exc)

    def run(self) -> int:
        signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        for slot in range(self.processes):
            self.spawn(slot)
        if self.scheduler is not None:
            log.info("scheduler: %d periodic task(s): %s", len(self.scheduler.entries), self.scheduler.describe())
        while True:
            timeout = 1.0
            if self.restart_at:
                timeout = max(0.01, min(self.restart_at.values()) - time.monotonic())
            if self.scheduler is not None:
                timeout = max(0.001, min(timeout, self.scheduler.next_due() - time.time()))
            info = signal.sigtimedwait(SIGNALS, timeout)
            if info is not None and info.si_signo in (signal.SIGTERM, signal.SIGINT):
                return self.drain(signal.Signals(info.si_signo).name)
            self.tick()
            self.check_recovered()
            failed = self.reap()
            if failed:
                log.error(failed)
                self.close_scheduler()
                self.stop_all(signal.SIGTERM)
                self.wait_all(self.app.config.drain_seconds + 5)
                return 1
            now = time.monotonic()
            for slot, at in list(self.restart_at.items()):
                if now >= at:
                    del self.restart_at[slot]
                    self.spawn(slot)

    def tick(self) -> None:
        """Fire the scheduler's due ticks (if any) on the supervisor's private event loop."""
        if self.scheduler is None or self.scheduler.next_due() > time.time():
            return
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(asyncio.wait_for(self.scheduler.run_due(), TICK_TIMEOUT))
        except asyncio.TimeoutError:
            log.error("a periodic tick took over %.0fs (is the broker reachable?); trying again", TICK_TIMEOUT)
        except Exception:  # a bug, not an outage (run_due handles those): keep supervising the workers
            log.exception("the periodic scheduler failed; periodic tasks are off in this supervisor until it "
                          "restarts (other supervisors still fire them)")
            self.scheduler = None

    def close_scheduler(self) -> None:
        if self._loop is not None:
            try:
                self._loop.run_until_complete(asyncio.wait_for(self.app.broker.close(), 5))
            except Exception as exc:  # noqa: BLE001 - closing is best effort at exit
                log.debug("closing the scheduler's broker connection: %s", exc)
            self._loop.close()
            self._loop = None
        self.scheduler = None

    def reap(self) -> str | None:
        """Collect dead workers and schedule their restart; return a message when it is time to give up."""
        while self.children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                return None
            slot = self.children.pop(pid, None)
            if slot is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            if code == EXIT_PERMANENT:
                return (f"worker {self.worker_id}-{slot} cannot run with this app or configuration (exit code "
                        f"{code}; its log line above says what is wrong) and no restart can fix that: stopping the "
                        "pool. Correct it and start the pool again")
            self.restart_at[slot] = time.monotonic() + self.backoff(slot, pid, code)
        return None

    def backoff(self, slot: int, pid: int, code: int) -> float:
        """Seconds before restarting ``slot``: none after a healthy run, growing while it keeps dying."""
        lived = time.monotonic() - self.started[slot]
        how = describe_exit(code)
        if lived >= STABLE:
            self.failures.pop(slot, None)
            log.warning("worker %s-%d (pid %d) %s after %.1fs; restarting it", self.worker_id, slot, pid, how, lived)
            return 0.0
        n = self.failures[slot] = self.failures.get(slot, 0) + 1
        cap = MAX_BACKOFF_TRANSIENT if code == EXIT_TRANSIENT else MAX_BACKOFF
        delay = min(FIRST_BACKOFF * 2 ** (n - 1), cap)
        if n == 1:
            why = "" if code < 0 else " — its log lines above say why it died"
            log.error("worker %s-%d (pid %d) %s %.1fs after starting; restarting it with backoff (up to %.0fs) "
                      "until it stays up%s", self.worker_id, slot, pid, how, lived, cap, why)
        else:
            log.debug("worker %s-%d (pid %d) %s again (%d in a row); restarting in %.2fs", self.worker_id, slot,
                      pid, how, n, delay)
        return delay

    def check_recovered(self) -> None:
        """Log once when a failing slot's worker has stayed up long enough to count as healthy again."""
        if not self.failures:
            return
        now = time.monotonic()
        running = set(self.children.values())
        for slot in [s for s in self.failures if s in running and now - self.started[s] >= STABLE]:
            log.info("worker %s-%d is up again (after %d failed starts)", self.worker_id, slot,
                     self.failures.pop(slot))

    def drain(self, signame: str) -> int:
        grace = self.app.config.drain_seconds
        log.info("%s received: draining %d workers (grace %.0fs)", signame, len(self.children), grace)
        self.restart_at.clear()
        self.close_scheduler()
        self.stop_all(signal.SIGTERM)
        if not self.wait_all(grace + 5):
            log.error("workers still running after the grace period; killing them (their tasks will be redelivered)")
            self.stop_all(signal.SIGKILL)
            self.wait_all(5)
        log.info("all workers stopped")
        return 0

    def stop_all(self, sig: int) -> None:
        for pid in list(self.children):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def wait_all(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.children:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            signal.sigtimedwait([signal.SIGCHLD], min(left, 0.5))
            while self.children:
                pid, _ = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
                self.children.pop(pid, None)
        return True


def describe_exit(code: int) -> str:
    """How a worker ended, for the log: its exit code and what it means (the signal that killed it)."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"exited with code {code} (killed by {name})"
    meaning = {EXIT_CRASHED: " (crashed)", EXIT_TRANSIENT: " (stopped on a broker outage)"}.get(code, "")
    return f"exited with code {code}{meaning}"
