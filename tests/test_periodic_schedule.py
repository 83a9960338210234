"""When periodic ticks fall due, and what a wrong schedule says at registration (no broker involved).

Every host must compute the same ticks to share their claims: ``every=N`` ticks at
multiples of N since the epoch, ``cron`` in UTC unless ``tz=`` is given.
"""

from __future__ import annotations

import datetime as _dt

import pytest

from qtasks_fast import QueueTasks
from qtasks_fast.exceptions import TaskArgumentsError
from qtasks_fast.periodic import Timer, schedules

UTC = _dt.timezone.utc


def ts(*parts: int, tz: _dt.tzinfo = UTC) -> float:
    return _dt.datetime(*parts, tzinfo=tz).timestamp()


def make_app() -> QueueTasks:
    return QueueTasks("periodic-unit", broker_url="memory://")


def test_every_ticks_on_multiples_of_its_period_and_cron_in_utc_or_a_zone():
    app = make_app()

    @app.periodic(every=10)
    def ping() -> str:
        return "pong"

    @app.task
    def report(kind: str) -> str:
        return kind

    app.periodic("report", cron="30 2 * * *", args=("daily",))
    app.periodic(report, cron="0 9 * * 1", tz="Europe/Berlin", args=("weekly",))
    s = schedules(app)
    assert list(s) == ["ping", "report", "report#2"]
    assert ping.name == "ping" and ping() == "pong"  # still a plain task too
    assert s["ping"].next_after(1000.0) == 1010.0 and s["ping"].next_after(1003.5) == 1010.0
    assert s["report"].next_after(ts(2026, 3, 1, 2, 30)) == ts(2026, 3, 2, 2, 30)
    assert s["report"].next_after(ts(2026, 3, 1, 2, 29, 59)) == ts(2026, 3, 1, 2, 30)
    berlin = __import__("zoneinfo").ZoneInfo("Europe/Berlin")
    # Thursday 2026-03-26 -> Monday 2026-03-30 09:00 Berlin, after the switch to summer time
    assert s["report#2"].next_after(ts(2026, 3, 26, 12, 0)) == ts(2026, 3, 30, 9, 0, tz=berlin)
    assert s["report"].to_dict(ts(2026, 3, 1))["next_run"] == "2026-03-01T02:30:00+00:00"


def test_a_wrong_schedule_fails_at_registration_saying_what_to_fix():
    app = make_app()

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    with pytest.raises(ValueError, match="invalid cron expression"):
        app.periodic("add", cron="61 * * * *", args=(1, 2))
    with pytest.raises(ValueError, match="exactly one of cron=, every= or trigger="):
        app.periodic("add", cron="* * * * *", every=5, args=(1, 2))
    with pytest.raises(ValueError, match="positive"):
        app.periodic("add", every=0, args=(1, 2))
    with pytest.raises(TaskArgumentsError, match="add"):
        app.periodic("add", every=5, args=("x", 2))
    with pytest.raises(ValueError, match="unknown time zone"):
        app.periodic("add", cron="* * * * *", tz="Mars/Olympus", args=(1, 2))
    with pytest.raises(TypeError, match="only \\['priority', 'queue'\\]"):
        app.periodic("add", every=5, args=(1, 2), retry=3)
    assert schedules(app) == {}


def test_qtasks_timer_shape_adds_schedules_to_the_app():
    app = make_app()

    @app.task
    def test(num: int) -> int:
        return num

    class EveryMinuteTrigger:  # what an APScheduler CronTrigger(second=0) answers
        def get_next_fire_time(self, previous, now):  # type: ignore[no-untyped-def]
            return (now + _dt.timedelta(minutes=1)).replace(second=0, microsecond=0)

    timer = Timer(app=app)
    timer.add_task("test", trigger="*/5 * * * *", args=(5,))
    timer.add_task(7, task_name="test", trigger=EveryMinuteTrigger())
    timer.add_task("test", trigger=_dt.timedelta(seconds=30), num=9)
    got = [(s.task_name, s.args, s.kwargs, s.describe()) for s in schedules(app).values()]
    assert got[0] == ("test", (5,), {}, "cron '*/5 * * * *' (UTC)")
    assert got[1][:3] == ("test", (7,), {})
    assert got[2] == ("test", (), {"num": 9}, "every 30s")
    s = list(schedules(app).values())
    assert s[1].next_after(ts(2026, 1, 1, 12, 0, 30)) == ts(2026, 1, 1, 12, 1)
    assert s[0].next_after(ts(2026, 1, 1, 12, 1)) == ts(2026, 1, 1, 12, 5)
