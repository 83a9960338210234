"""The scheduler: enqueues the app's periodic tasks (:mod:`qtasks_fast.periodic`) when their ticks fall due.

``qtasks-fast run`` drives one in the supervisor process (``--no-scheduler`` /
``QTASKS_SCHEDULER=0`` turns it off); ``Timer.run_forever`` runs one alone. It
holds no state worth keeping: every tick is claimed in the broker before it is
enqueued (``broker.claim("periodic:<name>:<tick ms>", ttl)``), so any number of
schedulers on any hosts enqueue each tick once, and a restarted scheduler never
repeats a tick another one (or its previous life) already took. Ticks missed
while no scheduler ran are skipped; a late scheduler fires only the latest due
tick. Between ticks it sleeps until the next one: an idle scheduler costs no CPU.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import math
import time
from typing import TYPE_CHECKING

from qtasks_fast.abc.capabilities import Claims, NotSupported, require
from qtasks_fast.log import get_logger, task_label
from qtasks_fast.periodic import META_PERIODIC, Schedule, schedules

if TYPE_CHECKING:
    from qtasks_fast.app import BaseQueueTasks

log = get_logger("scheduler")
#: seconds a tick's claim outlives the next tick: how far apart the clocks of two hosts may be
SKEW = 60.0
#: seconds before a tick whose enqueue failed (broker down) is tried again, while it is still the latest
RETRY = 1.0


def _iso(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).isoformat(timespec="milliseconds")


class Scheduler:
    """Fires the due ticks of ``app``'s schedules; call :meth:`run_due` at :meth:`next_due` (or :meth:`run_forever`)."""

    def __init__(self, app: BaseQueueTasks, now: float | None = None) -> None:
        self.app = app
        self.entries: list[Schedule] = list(schedules(app).values())
        now = time.time() if now is None else now
        #: next tick to fire per schedule, and when to try it (later than the tick after a failure)
        self.next: dict[str, float] = {s.name: s.next_after(now) for s in self.entries}
        self.wake: dict[str, float] = dict(self.next)
        #: ticks this scheduler claimed but could not enqueue yet: retried without claiming again
        self._owed: dict[str, float] = {}

    def describe(self) -> str:
        return ", ".join(f"{s.name} ({s.describe()})" for s in self.entries)

    def next_due(self) -> float:
        """Unix time of the next tick to try (``inf`` when there is none)."""
        return min(self.wake.values(), default=math.inf)

    async def run_due(self, now: float | None = None) -> int:
        """Claim and enqueue every due tick; return how many this scheduler enqueued."""
        now = time.time() if now is None else now
        fired = 0
        for s in list(self.entries):
            if self.wake[s.name] > now:
                continue
            tick, skipped = self.next[s.name], 0
            while (later := s.next_after(tick)) <= now:
                tick, skipped = later, skipped + 1
            if skipped:
                log.warning("periodic %s: skipped %d missed tick(s); firing the latest, %s", s.name, skipped,
                            _iso(tick))
            try:
                fired += await self._fire(s, tick)
            except NotSupported as exc:
                self._disable(s, exc)
                continue
            except Exception as exc:  # noqa: BLE001 - a broker outage must not stop the other schedules
                self.next[s.name] = tick
                self.wake[s.name] = min(now + RETRY, s.next_after(tick))
                log.error("periodic %s: tick %s not enqueued yet (%s: %s); retrying in %.0fs while it is the "
                          "latest", s.name, _iso(tick), type(exc).__name__, exc, RETRY)
                continue
            self.next[s.name] = self.wake[s.name] = s.next_after(tick)
        return fired

    async def _fire(self, s: Schedule, tick: float) -> int:
        broker = self.app.broker
        if self._owed.get(s.name) != tick:
            following = s.next_after(tick)
            ttl = (following - tick if math.isfinite(following) else 0.0) + SKEW
            if not await require(broker, Claims).claim(f"periodic:{s.name}:{round(tick * 1000)}", ttl):
                log.debug("periodic %s: tick %s already taken by another scheduler", s.name, _iso(tick))
                return 0
            self._owed[s.name] = tick
        env, _ = self.app.build(s.task_name, s.args, s.kwargs, s.priority, s.queue,
                                meta={META_PERIODIC: [s.name, round(tick * 1000)]})
        await self.app.send([env])
        del self._owed[s.name]
        log.info("periodic %s: enqueued %s for the tick at %s", s.name, task_label(env.task_name, env.uuid),
                 _iso(tick))
        return 1

    def _disable(self, s: Schedule, exc: NotSupported) -> None:
        log.error("periodic %s disabled: %s", s.name, exc)
        self.entries.remove(s)
        del self.next[s.name], self.wake[s.name]

    async def run_forever(self, stop: asyncio.Event | None = None) -> None:
        """Sleep until the next tick, fire it, repeat; until ``stop`` is set (or the task is cancelled)."""
        stop = stop or asyncio.Event()
        if self.entries and not isinstance(self.app.broker, Claims):
            # said when the fleet starts, not at the first tick (a daily schedule would tell only tomorrow)
            for s in list(self.entries):
                self._disable(s, NotSupported(self.app.broker, Claims))
        if self.entries:
            log.info("scheduler: %d periodic task(s): %s", len(self.entries), self.describe())
        while not stop.is_set():
            delay = min(self.next_due() - time.time(), 3600.0)
            if delay > 0:
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                    return
                except asyncio.TimeoutError:
                    pass
            await self.run_due()
