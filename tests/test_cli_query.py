"""``qtasks-fast tasks`` and ``events``: the query side from the shell, on a real backend file or server.

What an operator relies on: the newest tasks first with the filters they typed, a cursor that walks every task
exactly once, counts per status, status changes in order with ids to resume from, and a one-line error with
exit code 2 for a bad flag or a backend that cannot answer.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from apps.control_helpers import cli, load_app

from qtasks_fast import query
from qtasks_fast.abc.query import TaskFilter
from qtasks_fast.testing import WorkerThread


@pytest.fixture(params=["sqlite", "redis"])
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "redis":
        return str(request.getfixturevalue("redis_url"))
    return f"sqlite:///{tmp_path}/q.sqlite3"


def _run_some(app_name: str, url: str) -> tuple[object, list[str], str]:
    """Five ``add`` calls and one failing call, finished by an in-process worker: (module, add uuids, failed)."""
    m = load_app(app_name, url)
    with WorkerThread(m.app):
        adds = [str(m.app.add_task("add", i, 1, timeout=10).uuid) for i in range(5)]
        bad = m.app.add_task("fail", "Disk Quota Exceeded", timeout=10)
    assert bad is not None and bad.status == "error", bad
    return m, adds, str(bad.uuid)


def _json(url: str, app_name: str, *args: str) -> object:
    code, out, err = cli(url, app_name, *args, "--json")
    assert code == 0, (args, code, out, err)
    return json.loads(out)


def test_tasks_newest_first_filtered_paged_and_counted(backend_url: str, app_name: str) -> None:
    _, adds, bad = _run_some(app_name, backend_url)
    page = _json(backend_url, app_name, "tasks", "--limit", "100")
    assert [t["uuid"] for t in page["tasks"]] == [bad, *reversed(adds)] and page["cursor"] is None
    errors = _json(backend_url, app_name, "tasks", "--status", "error")["tasks"]
    assert [t["uuid"] for t in errors] == [bad] and errors[0]["error"] == "ValueError: Disk Quota Exceeded"
    assert [t["uuid"] for t in _json(backend_url, app_name, "tasks", "--error", "quota EXCEEDED")["tasks"]] == [bad]
    assert [t["uuid"] for t in _json(backend_url, app_name, "tasks", "--queue", "default")["tasks"]] == [
        bad, *reversed(adds)]  # a queue of the app is listed (a typo in --queue is refused: below)
    newest = _json(backend_url, app_name, "tasks", "--created-after", "1h", "--status", "success", "--name", "add",
                   "--limit", "1")
    assert [t["uuid"] for t in newest["tasks"]] == [adds[-1]] and newest["cursor"]
    assert _json(backend_url, app_name, "tasks", "--created-before", "1d")["tasks"] == []
    seen, cursor = [], None
    while True:  # pages of two walk every task once, newest first
        page = _json(backend_url, app_name, "tasks", "--limit", "2", *(["--cursor", cursor] if cursor else []))
        seen += [t["uuid"] for t in page["tasks"]]
        cursor = page["cursor"]
        if cursor is None:
            break
    assert seen == [bad, *reversed(adds)]
    assert _json(backend_url, app_name, "tasks", "--counts") == {"new": 0, "process": 0, "success": 5, "error": 1,
                                                                 "cancel": 0}
    code, out, _ = cli(backend_url, app_name, "tasks", "--status", "error")
    assert code == 0 and bad in out and "Quota" in out and "last page" in out


def test_events_in_order_and_resumed_from_an_id(backend_url: str, app_name: str) -> None:
    _, adds, _ = _run_some(app_name, backend_url)
    events = [json.loads(line) for line in cli(backend_url, app_name, "events", "--json", "--limit", "3")[1].split()]
    first = [e["status"] for e in events if e["uuid"] == adds[0]]
    assert first == ["new", "process", "success"], events
    middle = events[len(events) // 2]
    code, out, err = cli(backend_url, app_name, "events", "--json", "--after", middle["id"], "--queue", "default")
    assert code == 0, err
    assert [json.loads(line) for line in out.split()] == events[len(events) // 2 + 1:]


@pytest.mark.parametrize("args, says", [
    (["tasks", "--created-after", "yesterday"], "is not a time"),
    (["tasks", "--limit", "5000"], "at most 1000"),
    (["tasks", "--status", "done"], "invalid choice"),
    # a pasted or hand-edited position past what the backend can hold (SQLite: 64-bit): no OverflowError
    (["tasks", "--cursor", "99999999999999999999999:x"], "invalid task list cursor"),
    (["events", "--after", "99999999999999999999999"], "invalid event id"),
    # a typo in --queue listed nothing, as if the queue were idle
    (["tasks", "--queue", "defualt"], "uses queue 'defualt' (did you mean 'default'?); its queues: default"),
    (["events", "--queue", "defualt", "--follow"], "uses queue 'defualt' (did you mean 'default'?)"),
])
def test_bad_flags_are_one_line_and_exit_2(tmp_path: Path, app_name: str, args: list[str], says: str) -> None:
    code, out, err = cli(f"sqlite:///{tmp_path}/q.sqlite3", app_name, *args)
    assert code == 2 and says in err and "Traceback" not in err, (code, out, err)


async def test_a_storage_without_the_query_side_says_which(app_name: str) -> None:
    from qtasks_fast import QueueTasks
    from qtasks_fast.abc import NotSupported, Storage

    class Plain(Storage):  # the bare Storage contract: records only, no TaskQueries
        async def create(self, envelopes, wait=False):  # type: ignore[no-untyped-def]
            return None

        async def save(self, outcomes, worker_id):  # type: ignore[no-untyped-def]
            return None

        async def get(self, uuid, queues):  # type: ignore[no-untyped-def]
            return None

        async def wait(self, uuid, queues, timeout, fresh=False):  # type: ignore[no-untyped-def]
            return None

    app = QueueTasks(app_name, broker_url="memory://")
    app._storage = Plain()
    with pytest.raises(NotSupported) as caught:
        await query.list_tasks(app, TaskFilter())
    # what the capability is, in words, then where it is defined (not the word "Storage capability")
    assert str(caught.value).startswith("Plain does not support the query side (qtasks_fast.abc.query.TaskQueries);")
