"""Tell a producer that its embedded database has no worker: the one silent failure of the embedded backend.

A producer and the workers meet only if they open the same file. When they do not (another
``QTASKS_SQLITE_PATH``, an app created in another module), the producer's tasks wait forever and
``add_task(timeout=N)`` returns None, with nothing said. So a worker's start marks the file
(table ``meta``, key :data:`WORKER_SEEN`, per app), and a producer looks for the mark once:

* at its first enqueue to the file: seen, nothing more to do (the usual case, one read per process);
* otherwise it warns, once, at the first of: a wait for a result that times out, an enqueue
  :data:`GRACE` seconds or more later, or the exit of the process — each time only if no worker
  has marked the file by then, so a producer started a moment before its workers (the quickstart)
  is not warned.
"""

from __future__ import annotations

import atexit
import os
import sqlite3
import threading
import time
from typing import TYPE_CHECKING

from qtasks_fast.log import get_logger

if TYPE_CHECKING:
    from qtasks_fast.backends.sqlite.db import SqliteConnection

#: ``meta`` key written by a worker's start
WORKER_SEEN = "worker_seen"
#: seconds after the first enqueue before a later enqueue re-checks the mark (and warns without it)
GRACE = 5.0
log = get_logger("sqlite")
_DONE = -1.0
#: ``(realpath, app)`` -> monotonic time of the first enqueue that found no mark, or ``_DONE``
_state: dict[tuple[str, str], float] = {}
_pending: dict[tuple[str, str], SqliteConnection] = {}
_lock = threading.Lock()
_atexit = False


def _key(conn: SqliteConnection, app: str) -> tuple[str, str]:
    return (conn.path if conn.path == ":memory:" else os.path.realpath(conn.path), app)


def mark(db: sqlite3.Connection, conn: SqliteConnection, app: str, consumer: str) -> None:
    """A worker of ``app`` uses the file (inside the caller's transaction on ``db``)."""
    db.execute("INSERT OR REPLACE INTO meta (app, key, value) VALUES (?, ?, ?)", (app, WORKER_SEEN, consumer))
    with _lock:
        _state[_key(conn, app)] = _DONE
        _pending.pop(_key(conn, app), None)


def _seen(conn: SqliteConnection, app: str) -> bool:
    try:
        return bool(conn.read("SELECT 1 FROM meta WHERE app = ? AND key = ?", (app, WORKER_SEEN)))
    except sqlite3.Error:  # the producer's own call reports what is wrong with the file; never this check
        return True


def _warn(conn: SqliteConnection, app: str) -> None:
    log.warning("no worker of app %r has used the SQLite database %s yet: its tasks wait until one does. Start "
                "one (qtasks-fast -A module:app run) on the same app module, or point both sides at one file "
                "with sqlite:///path or QTASKS_SQLITE_PATH (qtasks-fast -A module:app info shows the file)",
                app, os.path.abspath(conn.path))


def _settle(key: tuple[str, str]) -> None:
    """Re-check a pending file now: warn when it is still unmarked; either way it is done."""
    with _lock:
        conn = _pending.pop(key, None)
        if conn is None:
            return
        _state[key] = _DONE
    if not _seen(conn, key[1]):
        _warn(conn, key[1])


def enqueued(conn: SqliteConnection, app: str) -> None:
    """Called at each enqueue of a producer: one read the first time, a dict look-up afterwards."""
    global _atexit
    key = _key(conn, app)
    since = _state.get(key)
    if since == _DONE or conn.path == ":memory:":
        return
    if since is None:
        with _lock:
            if key in _state:
                return
            _state[key] = time.monotonic()
        if _seen(conn, app):
            _state[key] = _DONE
            return
        with _lock:
            _pending[key] = conn
            if not _atexit:
                atexit.register(at_exit)
                _atexit = True
    elif time.monotonic() - since >= GRACE:
        _settle(key)


def timed_out(conn: SqliteConnection, app: str) -> None:
    """A wait for a result on this file timed out: if no worker ever used the file, that is why."""
    _settle(_key(conn, app))


def at_exit() -> None:
    for key in list(_pending):
        _settle(key)
