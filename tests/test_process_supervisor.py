"""The supervisor never gives up on what time can fix, gives up at once on what it cannot, and its
workers do not outlive it."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil
import pytest
from apps.testkit import wait_for
from conftest import cli_env, start_cli


def test_a_worker_that_keeps_crashing_is_restarted_with_backoff_forever(redis_url: str, app_name: str,
                                                                        tmp_path: Path) -> None:
    log = tmp_path / "sup.log"
    proc = start_cli(["-A", "crashing_app", "run", "--processes", "1", "--worker-id", "C", "--log-level", "DEBUG"],
                     cli_env(redis_url, app_name), log=log)
    try:
        # more deaths than the old limit of 5: the supervisor is still there, restarting with growing backoff
        crash = "worker C-0 crashed: RuntimeError: consumer setup failed"
        wait_for(lambda: log.read_text().count(crash) >= 6 or proc.poll() is not None, 60, "six crashes")
        assert proc.poll() is None, log.read_text()
        text = log.read_text()
        assert "giving up" not in text and "stopping the pool" not in text
        # one line when the slot starts failing, not one per attempt; the later ones are debug lines
        assert text.count("restarting it with backoff (up to 30s) until it stays up") == 1, text
        assert "restarting in 0.50s" in text and "restarting in 4.00s" in text, text
        # the start and the first restart (its pid) are info lines; the restarts after it, debug lines
        assert text.count("INFO qtasks_fast.supervisor [C-supervisor] started worker C-0") == 2, text
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def test_a_worker_that_cannot_run_with_its_configuration_stops_the_pool_at_once(redis_url: str, app_name: str,
                                                                                tmp_path: Path) -> None:
    log = tmp_path / "sup.log"
    proc = start_cli(["-A", "crashing_app", "run", "--processes", "2", "--worker-id", "P"],
                     cli_env(redis_url, app_name, CRASH_KIND="config"), log=log)
    code = proc.wait(60)
    text = log.read_text()
    assert code == 1, text
    assert "worker P-0 cannot run: ConfigError: queue 'nowhere' is not configured on purpose" in text or \
        "worker P-1 cannot run: ConfigError: queue 'nowhere' is not configured on purpose" in text, text
    assert "no restart can fix that: stopping the pool. Correct it and start the pool again" in text
    assert "restarting" not in text  # not retried: it would fail the same way every time


def test_a_pool_started_while_redis_is_down_waits_for_it(harness, private_redis) -> None:
    url = private_redis.url
    private_redis.stop()
    proc = harness.start(url, processes=2, worker_id="L")
    harness.wait_log(proc, "the broker is not available at start; the pool waits for it")
    private_redis.start()
    harness.wait_ready(proc, timeout=40)
    m = harness.producer(url)
    assert m.add.add_task(2, 3, timeout=20).returning == 5
    text = harness.log(proc)
    assert text.count("until it recovers") == 1, "one line for the outage, not one per attempt"
    assert "recovered after" in text
    assert "exit code" not in text  # nobody died
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(40) == 0


def test_sigterm_while_the_pool_waits_for_redis_stops_it_at_once(harness, private_redis) -> None:
    url = private_redis.url
    private_redis.stop()
    proc = harness.start(url, processes=1, worker_id="S")
    harness.wait_log(proc, "not available at start")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0, harness.log(proc)


def test_a_worker_restarted_while_redis_is_down_waits_for_it(harness, private_redis) -> None:
    url = private_redis.url
    proc = harness.start(url, processes=2, worker_id="R")
    harness.wait_ready(proc)
    private_redis.stop()
    harness.children(proc)[0].kill()
    harness.wait_log(proc, "cannot start: the broker is not available")  # the replacement waits, alive
    assert proc.poll() is None
    private_redis.start()
    harness.wait_log(proc, " serving queues ", 3, timeout=40)
    m = harness.producer(url)
    assert m.add.add_task(2, 3, timeout=20).returning == 5
    assert proc.poll() is None and len(harness.children(proc)) == 2
    assert "giving up" not in harness.log(proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(40) == 0


def test_sigterm_while_a_worker_waits_for_redis_stops_the_pool_cleanly(harness, private_redis) -> None:
    proc = harness.start(private_redis.url, processes=2, worker_id="T")
    harness.wait_ready(proc)
    private_redis.stop()
    harness.children(proc)[0].kill()
    harness.wait_log(proc, "cannot start: the broker is not available")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0, harness.log(proc)
    assert "stopped before it started serving" in harness.log(proc)


def test_a_wrong_redis_password_stops_the_pool_with_one_line(harness, private_redis_auth) -> None:
    url = private_redis_auth.auth_url().replace("s3cr3t", "wrong")
    proc = harness.start(url, processes=1, worker_id="A")
    assert proc.wait(30) == 2
    text = harness.log(proc)
    assert "cannot use the broker" in text and "started worker" not in text, text
    assert "check the user and password in the broker URL" in text and text.count("ERROR") == 1, text
    assert "Pa55w0rd" not in text  # the URL's password is never logged


def test_workers_exit_when_their_supervisor_is_killed(harness, redis_url: str) -> None:
    proc = harness.start(redis_url, processes=2, worker_id="O", env={"QTASKS_DRAIN_SECONDS": "2"})
    harness.wait_ready(proc)
    kids = harness.children(proc)
    assert len(kids) == 2
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    gone, alive = psutil.wait_procs(kids, timeout=2 + 15)
    assert not alive, f"orphaned workers still running: {[k.pid for k in alive]}"


def test_a_second_pool_with_the_same_worker_id_waits_for_the_first(harness, redis_url: str) -> None:
    first = harness.start(redis_url, processes=1, worker_id="D")
    harness.wait_ready(first, processes=1)
    second = harness.start(redis_url, processes=1, worker_id="D")
    text = harness.wait_log(second, "its consumer name is held by owner")
    assert f":{first.pid}:" in text, "the holder is named: host, supervisor pid, nonce"
    assert " serving queues " not in text
    first.send_signal(signal.SIGTERM)
    assert first.wait(40) == 0
    harness.wait_ready(second, processes=1, timeout=30)
    assert "consumer name released by" in harness.log(second)
    m = harness.producer(redis_url)
    task = m.add.add_task(1, 1, timeout=20)
    assert task.returning == 2 and task.worker_id == "D-0"
    second.send_signal(signal.SIGTERM)
    assert second.wait(40) == 0


# ---------------------------------------------------------------------- the supervisor's decisions
@pytest.fixture
def sup(tmp_path: Path):  # a Supervisor that never forks: its restart decisions alone
    from qtasks_fast import QueueTasks
    from qtasks_fast.supervisor import Supervisor

    app = QueueTasks("sup", broker_url=f"sqlite:///{tmp_path}/q.db")
    return Supervisor(app, 1, "U", None, None, False, "INFO", scheduler=False)


def test_restart_backoff_grows_to_a_cap_and_never_gives_up(sup) -> None:
    from qtasks_fast.worker.runner import EXIT_CRASHED

    delays = []
    for _ in range(12):
        sup.started[0] = time.monotonic()
        delays.append(sup.backoff(0, 1, EXIT_CRASHED))
    assert delays[:4] == [0.25, 0.5, 1.0, 2.0] and delays[-3:] == [30.0, 30.0, 30.0]


def test_an_outage_exit_is_retried_within_seconds(sup) -> None:
    from qtasks_fast.worker.runner import EXIT_TRANSIENT

    for _ in range(10):
        sup.started[0] = time.monotonic()
        delay = sup.backoff(0, 1, EXIT_TRANSIENT)
    assert delay == 5.0


def test_a_death_after_a_healthy_run_restarts_at_once_and_resets_the_backoff(sup) -> None:
    from qtasks_fast.worker.runner import EXIT_CRASHED

    for _ in range(5):
        sup.started[0] = time.monotonic()
        sup.backoff(0, 1, EXIT_CRASHED)
    sup.started[0] = time.monotonic() - 60  # it ran for a minute
    assert sup.backoff(0, 1, -signal.SIGKILL) == 0.0
    sup.started[0] = time.monotonic()
    assert sup.backoff(0, 1, EXIT_CRASHED) == 0.25


def test_only_a_permanent_exit_makes_the_supervisor_give_up(sup, monkeypatch) -> None:
    from qtasks_fast.worker.runner import EXIT_CRASHED, EXIT_PERMANENT, EXIT_TRANSIENT

    exits = iter([(101, EXIT_CRASHED << 8), (102, EXIT_TRANSIENT << 8), (103, signal.SIGKILL), (104, 0),
                  (105, EXIT_PERMANENT << 8), (0, 0)])
    monkeypatch.setattr(os, "waitpid", lambda pid, opts: next(exits))
    sup.children = {101: 0, 102: 0, 103: 0, 104: 0, 105: 0, 999: 0}
    sup.started[0] = time.monotonic()
    message = sup.reap()
    assert message is not None and "no restart can fix that" in message and "worker U-0" in message
    assert set(sup.children) == {999}


def test_an_unusable_sqlite_location_stops_the_pool_with_one_line(harness, tmp_path) -> None:
    """A database path under a regular file can never be created: no waiting, exit 2 and a line saying
    what to change (an outage would be waited out instead)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    proc = harness.start(f"sqlite:///{blocker}/q.sqlite3", processes=1)
    assert proc.wait(30) == 2
    log = harness.log(proc)
    assert "cannot create the directory of the SQLite database" in log and "writable place" in log, log
    assert "Traceback" not in log, log


def test_files_and_permissions_are_not_outages_but_the_network_is() -> None:
    import errno

    from qtasks_fast.faults import transient

    assert not transient(PermissionError(errno.EACCES, "denied"))
    assert not transient(FileNotFoundError(errno.ENOENT, "no such file"))
    assert not transient(NotADirectoryError(errno.ENOTDIR, "not a directory"))
    assert transient(ConnectionRefusedError(errno.ECONNREFUSED, "refused"))
    assert transient(OSError(errno.EHOSTUNREACH, "no route to host"))
