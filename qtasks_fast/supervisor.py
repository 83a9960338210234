"""The supervisor: forks N worker processes, pins them, restarts the dead, drains on SIGTERM.

A restarted worker keeps its slot, hence its consumer name ``<worker-id>-<slot>``,
so it takes over its predecessor's pending messages on its first fetch instead
of waiting for their lease to run out. Signals are handled synchronously with
``sigtimedwait``: the supervisor sleeps in the kernel, it never polls.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from qtasks_fast.log import get_logger

if TYPE_CHECKING:
    from qtasks_fast.app import BaseQueueTasks

log = get_logger("supervisor")
INSTANT = 2.0  # a worker that dies sooner than this after starting counts as an instant death
MAX_INSTANT_DEATHS = 5
SIGNALS = (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT)


class Supervisor:
    def __init__(self, app: BaseQueueTasks, processes: int, worker_id: str, concurrency: int | None,
                 queues: Sequence[str] | None, pin_cpus: bool, log_level: str) -> None:
        self.app, self.processes, self.worker_id = app, processes, worker_id
        self.concurrency, self.queues, self.pin_cpus, self.log_level = concurrency, queues, pin_cpus, log_level
        self.children: dict[int, int] = {}  # pid -> slot
        self.started: dict[int, float] = {}  # slot -> start time
        self.instant_deaths: dict[int, int] = {}
        self.restart_at: dict[int, float] = {}

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
        while True:
            timeout = 1.0
            if self.restart_at:
                timeout = max(0.01, min(self.restart_at.values()) - time.monotonic())
            info = signal.sigtimedwait(SIGNALS, timeout)
            if info is not None and info.si_signo in (signal.SIGTERM, signal.SIGINT):
                return self.drain(signal.Signals(info.si_signo).name)
            failed = self.reap()
            if failed:
                log.error(failed)
                self.stop_all(signal.SIGTERM)
                self.wait_all(self.app.config.drain_seconds + 5)
                return 1
            now = time.monotonic()
            for slot, at in list(self.restart_at.items()):
                if now >= at:
                    del self.restart_at[slot]
                    self.spawn(slot)

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
