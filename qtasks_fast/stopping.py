"""Waiting that a stop (shutdown, a closing broker) cuts short: one implementation for the worker's start-up
waits and the brokers' blocking reads."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def until_stopped(stop: asyncio.Event, aw: Awaitable[T]) -> tuple[bool, T | None]:
    """``(True, result of aw)``, or ``(False, None)`` when ``stop`` is set first: ``aw`` is then cancelled
    and awaited, so that no task outlives its loop."""
    job = asyncio.ensure_future(aw)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({job, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        if not job.done():
            job.cancel()
    if job.done() and not job.cancelled():
        return True, job.result()
    await asyncio.wait({job, stopper})
    return False, None


async def sleep_unless_stopped(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds``; False when ``stop`` is set meanwhile."""
    done, _ = await until_stopped(stop, asyncio.sleep(seconds))
    return done
