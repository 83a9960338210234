"""Types of the worker's compiled per-task loop (``_run.pyx``)."""

import asyncio
import logging
from collections import deque
from typing import Any

from qtasks_fast._core import Delivery

NO_FOLLOWUPS: list[Any]

class RunState:
    _done: list[Any]
    _retries: list[Any]
    unsettled: int
    active: int
    concurrency: int
    settled: int
    settled_failed: int
    backlog: deque[Delivery]
    inflight: set[Delivery]
    _done_event: asyncio.Event
    slot_free: asyncio.Event
    _starting: bool
    stopping: bool
    leases_until: float
    executor: Any

def run_ready(jobs: deque[Delivery], ex: Any, log: logging.Logger) -> tuple[Delivery, Any, Any, Any] | None: ...
def task_done(w: RunState, outcome: tuple[Any, ...], followups: list[Any]) -> None: ...
def start_more(w: RunState, confirmed: bool = False) -> None: ...
def submit(ex: Any, d: Delivery) -> None: ...
def queue_job(runners: Any, d: Delivery) -> None: ...
def settled(w: RunState, outcomes: list[Any]) -> None: ...
