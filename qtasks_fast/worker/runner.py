"""Run one worker in the current process: uvloop, signal handling, parent-death handling, exit codes.

A worker forked by the supervisor must not outlive it: an orphan would keep consuming
under a consumer name that the next pool (same ``--worker-id``) also uses. So
:func:`run_worker` asks the kernel for SIGTERM when the supervisor dies (Linux
``prctl(PR_SET_PDEATHSIG)``), then checks that the supervisor had not died already
(the fork-to-prctl race). SIGTERM is the normal stop: the worker drains for at most
``config.drain_seconds``, hands back what it did not finish and exits. Where prctl is
absent a watcher polls the parent pid once a second instead.

Exit codes, read by the supervisor (:mod:`qtasks_fast.supervisor`): 0 stopped,
:data:`EXIT_CRASHED` an unexpected exception (restarted with backoff, forever),
:data:`EXIT_TRANSIENT` an outage that escaped the worker's own retries (restarted
quickly), :data:`EXIT_PERMANENT` a failure no restart can fix (the supervisor gives up).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import os
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from qtasks_fast import faults
from qtasks_fast.log import get_logger, setup_logging
from qtasks_fast.worker.startup import permanent
from qtasks_fast.worker.worker import Worker

if TYPE_CHECKING:
    from qtasks_fast.app import BaseQueueTasks

log = get_logger("worker")
#: sysexits-style exit codes of a worker process
EXIT_CRASHED = 70  # EX_SOFTWARE: a bug or an unclassified failure
EXIT_TRANSIENT = 75  # EX_TEMPFAIL: an outage the worker did not wait out itself
EXIT_PERMANENT = 78  # EX_CONFIG: the app or its configuration cannot work; restarting cannot help
PR_SET_PDEATHSIG = 1
#: how often the fallback watcher (no prctl) looks at the parent pid
PARENT_POLL = 1.0


def install_uvloop() -> bool:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; Windows has none
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def die_with_parent(sig: int = signal.SIGTERM) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent dies; False where it cannot (not Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return bool(libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


async def watch_parent(parent: int, stop: asyncio.Event) -> None:
    """Fallback for systems without prctl: stop (drain) once the parent is gone (we were re-parented)."""
    while not stop.is_set():
        await asyncio.sleep(PARENT_POLL)
        if os.getppid() != parent:
            log.warning("the supervisor (pid %d) is gone; draining and exiting", parent)
            stop.set()


async def serve(app: BaseQueueTasks, worker_id: str, slot: int, concurrency: int | None,
                queues: Sequence[str] | None, owner: str | None = None, watch: int | None = None,
                processes: int = 1, delete_finished: bool = False) -> None:
    if delete_finished:
        from qtasks_fast.control import delete_finished as delete

        await delete(app)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    watcher = asyncio.create_task(watch_parent(watch, stop)) if watch is not None else None
    worker = Worker(app, worker_id=worker_id, slot=slot, concurrency=concurrency, queues=queues, owner=owner,
                    processes=processes)
    app._stop_serving = lambda: loop.call_soon_threadsafe(stop.set)  # app.stop(), from any thread
    try:
        await worker.run(stop)
    finally:
        app._stop_serving = None
        if watcher is not None:
            watcher.cancel()


def tune_gc() -> None:
    """Make the cyclic garbage collector cheap for a worker's allocation pattern.

    Every task allocates short-lived tracked objects (coroutine, asyncio Task, delivery);
    with the default threshold of 700 the collector runs every few dozen tasks and walks
    every in-flight object each time — a third of a no-op task's cost in profiles.
    ``freeze`` moves what import time built out of the collector's sight, and a larger
    first threshold lets most per-task objects die by reference counting first.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def exit_code(exc: BaseException) -> int:
    """The exit code of a worker that ended with ``exc`` (see the module docstring)."""
    if permanent(exc):
        return EXIT_PERMANENT
    return EXIT_TRANSIENT if faults.transient(exc) else EXIT_CRASHED


def run_worker(app: BaseQueueTasks, worker_id: str = "w", slot: int = 0, concurrency: int | None = None,
               queues: Sequence[str] | None = None, log_level: str | int | None = None, owner: str | None = None,
               parent: int | None = None, processes: int = 1, loop: asyncio.AbstractEventLoop | None = None,
               delete_finished: bool = False) -> None:
    """Serve until SIGTERM/SIGINT. ``parent``: the supervisor's pid; this process stops when it dies.
    ``processes``: how many worker processes its pool has (the supervisor's ``--processes``), for the registry.
    ``loop``: serve on this event loop (QTasks ``run_forever(loop=...)``) instead of a new uvloop one.
    ``delete_finished``: first delete the finished records (``config.delete_finished_tasks``; the caller
    decides, so that a worker the supervisor restarts does not delete what its siblings finished).
    ``log_level``: None for the config's (:meth:`GlobalConfig.server_log_level`); lines use ``config.logs_format``."""
    watch = None
    if parent is not None:
        watch = None if die_with_parent() else parent
        if os.getppid() != parent:  # it died before the kernel was told: nobody would send the signal
            return
    level = app.config.server_log_level() if log_level is None else log_level
    setup_logging(level, f"{worker_id}-{slot}", root=True, fmt=app.config.logs_format)
    main = serve(app, worker_id, slot, concurrency, queues, owner, watch, processes, delete_finished)
    if loop is not None:
        tune_gc()
        loop.run_until_complete(main)
        return
    install_uvloop()
    tune_gc()
    asyncio.run(main)


def run_forever(app: BaseQueueTasks, num_workers: int | None = None, starter: object = None,
                reset_config: bool = True, loop: asyncio.AbstractEventLoop | None = None) -> None:
    """QTasks ``app.run_forever()``: a worker of every queue of the app in this process, blocking until
    SIGTERM/SIGINT (then it drains, as ``qtasks-fast run`` does), as worker ``<host>-<pid>``, so that several
    such processes of one app serve side by side. ``num_workers`` is how many tasks run at
    once (QTasks' worker count; ``config.concurrency`` when None). QTasks' starters do not exist here and a
    worker always follows ``app.config``, so ``starter=`` and ``reset_config=False`` are refused, not ignored."""
    if starter is not None:
        raise TypeError("run_forever(starter=...) is not supported by qtasks_fast (it has no starters): drop it, "
                        "or run 'qtasks-fast -A module:app run' for a supervised pool")
    if not reset_config:
        raise TypeError("run_forever(reset_config=False) is not supported: a qtasks_fast worker always uses "
                        "app.config; drop the argument")
    if num_workers is not None and (isinstance(num_workers, bool) or not isinstance(num_workers, int)
                                    or num_workers < 1):
        raise ValueError(f"run_forever(num_workers={num_workers!r}): give a whole number of at least 1 (tasks "
                         "run at once)")
    # a worker id of its own per process (host-pid): QTasks users scale by starting ``python app.py`` again, and a
    # second process under the first one's consumer name would wait for that name (worker/startup.py) forever
    run_worker(app, f"{os.uname().nodename}-{os.getpid()}", concurrency=num_workers, loop=loop,
               delete_finished=app.config.delete_finished_tasks)
