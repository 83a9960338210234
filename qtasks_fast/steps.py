"""One implementation per operation for the sync and the async client: the operation as a generator of steps.

Why: a blocking twin written next to a coroutine drifts (one maps an error the other lets through, one
follows a retry chain the other does not). Written once as a generator that yields what it needs done
(a Redis call, a foreign storage's write, a pause) and is sent the result, an operation is driven by
:func:`run` on an event loop and by :func:`run_sync` in blocking code; only each step knows both ways of
doing itself. ``qtasks_fast.plugins.base.Plugins.fire`` and the SQLite storage's ``wait`` follow the same
pattern with steps of their own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Generator
from typing import Any, Generic, Protocol, TypeVar

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

__all__ = ["Either", "Now", "Sleep", "Step", "Steps", "run", "run_sync"]


class Step(Protocol[T_co]):
    """What a :data:`Steps` generator yields: awaitable on the async client, ``sync()`` on the blocking one."""

    def __await__(self) -> Generator[Any, None, T_co]: ...

    def sync(self) -> T_co: ...


#: one operation written once: yields steps, is sent their results, returns its answer
Steps = Generator[Step[Any], Any, T]


async def run(steps: Steps[T]) -> T:
    """Drive ``steps`` on the running event loop."""
    try:
        step = next(steps)
        while True:
            step = steps.send(await step)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def run_sync(steps: Steps[T]) -> T:
    """Drive ``steps`` in blocking code."""
    try:
        step = next(steps)
        while True:
            step = steps.send(step.sync())
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


class Either(Generic[T]):
    """A step given as its two forms: a coroutine function for the loop, a blocking function (e.g. a storage's
    ``create`` and ``create_sync``)."""

    __slots__ = ("aio", "blocking")

    def __init__(self, aio: Callable[[], Awaitable[T]], blocking: Callable[[], T]) -> None:
        self.aio, self.blocking = aio, blocking

    def __await__(self) -> Generator[Any, None, T]:
        return _awaited(self.aio()).__await__()

    def sync(self) -> T:
        return self.blocking()


class Now(Generic[T]):
    """A step that is plain sync code either way (a local write that never waits): ``fn()`` at once."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[], T]) -> None:
        self.fn = fn

    def __await__(self) -> Generator[Any, None, T]:
        return self.fn()
        yield  # never reached: makes this a generator, which ``await`` accepts

    def sync(self) -> T:
        return self.fn()


class Sleep:
    """A pause: ``asyncio.sleep`` on the loop, ``time.sleep`` in blocking code."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __await__(self) -> Generator[Any, None, None]:
        return asyncio.sleep(self.seconds).__await__()

    def sync(self) -> None:
        time.sleep(self.seconds)


async def _awaited(aw: Awaitable[T]) -> T:
    return await aw
