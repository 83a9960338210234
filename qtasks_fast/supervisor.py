"""The supervisor: forks N worker processes, pins them, restarts the dead, drains on SIGTERM, runs the scheduler.

A restarted worker keeps its slot, hence its consumer name ``<worker-id>-<slot>``,
so it takes over its predecessor's pending messages on its first fetch instead
of waiting for their lease to run out. Signals are handled synchronously with
``sigtimedwait``: the supervisor sleeps in the kernel, it never polls.

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

from qtasks_fast.log import get_logger

if TYPE_CHECKING:
    from qtasks_fast.app import BaseQueueTasks
    from qtasks_fast.scheduler import Scheduler

log = get_logger("supervisor")
INSTANT = 2.0  # a worker that dies sooner than this after starting counts as an instant death
MAX_INSTANT_DEATHS = 5
SIGNALS = (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT)
#: longest a scheduler tick may block the supervisor (a hung broker must not delay a drain for long)
TICK_TIMEOUT = 10.0


class Supervisor:
    def __init__(self, app: BaseQueueTasks, processes: int, worker_id: str, concurrency: int | None,
                 queues: Sequence[str] | None, pin_cpus: bool, log_level: str, scheduler: bool = True) -> None:
        self.app, self.processes, self.worker_id = app, processes, worker_id
        self.concurrency, self.queues, self.pin_cpus, self.log_level = concurrency, queues, pin_cpus, log_level
        self.children: dict[int, int] = {}  # pid -> slot
        self.started: dict[int, float] = {}  # slot -> start time
        self.instant_deaths: dict[int, int] = {}
        self.restart_at: dict[int, float] = {}
        self.scheduler: Scheduler | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        if scheduler:
            from qtasks_fast.periodic import schedules

            if schedules(app):
                from qtasks_fast.scheduler import Scheduler

                self.scheduler = Scheduler(app)

    def spawn(self, slot: int) -> None:
        pid = os.fork()
        if pid == 0:  # child
            signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
            for s in SIGNALS:
                signal.signal(s, signal.SIG_DFL)
            code = 0
            try:
                from qtasks_fast.worker.runner import run_worker

                run_worker(self.app, self.worker_id, slot, self.concurrency, self.queues, self.log_level)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException as exc:  # noqa: BLE001
                from qtasks_fast.exceptions import BrokerUnavailable

                code = 2 if isinstance(exc, BrokerUnavailable) else 1
                get_logger("worker").exception("worker %s-%d crashed: %s", self.worker_id, slot, exc)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        self.children[pid] = slot
        self.started[slot] = time.monotonic()
        if self.pin_cpus:
            self._pin(pid, slot)
        log.info("started worker %s-%d (pid %d)", self.worker_id, slot, pid)

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
            lived = time.monotonic() - self.started[slot]
            deaths = self.instant_deaths[slot] = self.instant_deaths.get(slot, 0) + 1 if lived < INSTANT else 0
            if deaths >= MAX_INSTANT_DEATHS:
                return (f"worker {self.worker_id}-{slot} died {deaths} times within {INSTANT:.0f}s of starting "
                        f"(last exit code {code}); giving up — see the worker's log lines above for the cause")
            delay = 0.0 if deaths == 0 else min(0.25 * 2 ** (deaths - 1), 10.0)
            log.warning("worker %s-%d (pid %d) exited with code %d after %.1fs; restarting in %.2fs",
                        self.worker_id, slot, pid, code, lived, delay)
            self.restart_at[slot] = time.monotonic() + delay
        return None

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
