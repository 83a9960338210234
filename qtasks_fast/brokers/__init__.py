"""Broker implementations and the URL -> (broker, storage) factory.

``redis://`` / ``rediss://`` -> Redis Streams; ``sqlite:///path`` (or no URL at
all) -> the embedded SQLite backend; ``memory://`` -> in-process, for tests.
QTasks' ``SyncRedisBroker``/``AsyncRedisBroker`` (also as ``qtasks_fast.brokers.sync_redis`` /
``async_redis``) build the Redis pair with QTasks' constructor.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from qtasks_fast._lazy import lazy_names

if TYPE_CHECKING:
    from qtasks_fast.abc import Broker, Storage
    from qtasks_fast.config import GlobalConfig

#: QTasks' broker names (``qtasks.brokers.SyncRedisBroker``), imported when first used, as QTasks does
_QTASKS_NAMES = {"SyncRedisBroker": "qtasks_fast.brokers.sync_redis",
                 "AsyncRedisBroker": "qtasks_fast.brokers.async_redis"}

__getattr__ = lazy_names(__name__, _QTASKS_NAMES)


DEFAULT_SQLITE_DIR = ".qtasks_fast"
#: the environment variables of the broker URL and of the embedded database's file
ENV_URL, ENV_SQLITE_PATH = "QTASKS_BROKER_URL", "QTASKS_SQLITE_PATH"
SCHEMES = ("redis://", "rediss://", "unix://", "sqlite://", "memory://")


def user_data_dir() -> str:
    """The per-user fallback directory of embedded databases: ``$XDG_DATA_HOME/qtasks_fast`` (default
    ``~/.local/share/qtasks_fast``)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "qtasks_fast")


def _writable(directory: str) -> bool:
    own = os.path.join(directory, DEFAULT_SQLITE_DIR)
    if os.path.isdir(own):
        return os.access(own, os.W_OK | os.X_OK)
    return os.path.isdir(directory) and os.access(directory, os.W_OK | os.X_OK)


def sqlite_location(app_name: str, defined_in: str | None = None) -> tuple[str, str]:
    """Where the embedded backend keeps its file when no URL names one, and why: ``(path, source)``.

    Never relative to the working directory, so a producer started elsewhere shares the workers' file:
    ``$QTASKS_SQLITE_PATH``, else ``.qtasks_fast/<app>.sqlite3`` next to ``defined_in`` (the file of the
    module that created the app: workers and producers import the same one), else, when there is no
    such file (an interactive session) or its directory is not writable, :func:`user_data_dir`.
    """
    path = os.environ.get(ENV_SQLITE_PATH)
    if path:
        return path, f"env {ENV_SQLITE_PATH}"
    if defined_in and _writable(os.path.dirname(defined_in)):
        return (os.path.join(os.path.dirname(defined_in), DEFAULT_SQLITE_DIR, f"{app_name}.sqlite3"),
                f"default: next to {os.path.basename(defined_in)}, the app's module")
    why = "not writable" if defined_in else "no module file"
    return os.path.join(user_data_dir(), f"{app_name}.sqlite3"), f"default: per-user data dir ({why} next to the app)"


def default_sqlite_path(app_name: str, defined_in: str | None = None) -> str:
    """The path of :func:`sqlite_location`."""
    return sqlite_location(app_name, defined_in)[0]


def sqlite_url_path(url: str) -> str:
    """``sqlite:///rel/x.db`` -> ``rel/x.db``; ``sqlite:////abs/x.db`` -> ``/abs/x.db``."""
    path = url[len("sqlite://"):].lstrip("/")
    return "/" + path if url.startswith("sqlite:////") else path


def check_url(url: str) -> None:
    """Refuse a broker URL that cannot work, before anything connects: a ``ValueError`` whose one line
    names the (redacted) URL and what to write instead."""
    from urllib.parse import parse_qs, urlsplit

    from qtasks_fast.url import redact

    if not url.startswith(SCHEMES):
        raise ValueError(f"unsupported broker URL {redact(url)!r}: use redis://, rediss://, unix://, "
                         "sqlite:///path or memory://")
    if url.startswith("sqlite://") and not sqlite_url_path(url):
        raise ValueError(f"broker URL {redact(url)!r} names no file: write sqlite:///relative/path.sqlite3 or "
                         "sqlite:////absolute/path.sqlite3")
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not 0..65535
    except ValueError:
        raise ValueError(f"broker URL {redact(url)!r} has an invalid port: write host:6379 (a number from 1 to "
                         "65535)") from None
    dbs = parse_qs(parts.query).get("db", [])
    if not url.startswith("unix://") and parts.path.strip("/"):
        dbs.append(parts.path.strip("/"))
    for db in dbs:
        if not db.isdigit():
            raise ValueError(f"broker URL {redact(url)!r} names database {db!r}: a Redis database is a number "
                             "(/0 to /15 on a default server)")


def make_backend(url: str | None, app_name: str, config: GlobalConfig,
                 defined_in: str | None = None) -> tuple[Broker, Storage]:
    """Build a fused broker + storage pair for ``url`` (None = embedded SQLite at :func:`sqlite_location`;
    the app decides the URL: see ``BaseQueueTasks.broker_source``)."""
    if url is not None:
        check_url(url)
    broker, storage = _make_backend(url, app_name, config, defined_in)
    if hasattr(broker, "unique_ttl"):
        broker.unique_ttl = config.unique_ttl  # fallback ttl of a unique key whose envelope names none
    return broker, storage


def _make_backend(url: str | None, app_name: str, config: GlobalConfig,
                  defined_in: str | None) -> tuple[Broker, Storage]:
    common = dict(app_name=app_name, result_ttl=config.result_ttl)
    bcommon = dict(priority_levels=config.priority_levels, lease_seconds=config.lease_seconds,
                   max_deliveries=config.max_deliveries, **common)
    if url is None or url.startswith("sqlite://"):
        from qtasks_fast.brokers.sqlite import SqliteBroker
        from qtasks_fast.storages.sqlite import SqliteStorage

        path = sqlite_url_path(url) if url else default_sqlite_path(app_name, defined_in)
        sbroker = SqliteBroker(path, **bcommon)  # type: ignore[arg-type]
        return sbroker, SqliteStorage(path, connection=sbroker.conn, **common)  # type: ignore[arg-type]
    if url.startswith(("redis://", "rediss://", "unix://")):
        from qtasks_fast.brokers.redis import RedisBroker, RedisConnection
        from qtasks_fast.storages.redis import RedisStorage

        conn = RedisConnection(url, socket_timeout=config.socket_timeout, connect_timeout=config.connect_timeout)
        rbroker = RedisBroker(url, index_results=config.index_results, connection=conn,
                              **bcommon)  # type: ignore[arg-type]
        return rbroker, RedisStorage(url, connection=rbroker.conn, priority_levels=config.priority_levels,
                                     **common)  # type: ignore[arg-type]
    if url.startswith("memory://"):
        from qtasks_fast.brokers.memory import InMemoryBroker
        from qtasks_fast.storages.memory import InMemoryStorage

        mbroker = InMemoryBroker(**bcommon)  # type: ignore[arg-type]
        return mbroker, InMemoryStorage(state=mbroker.state, **common)  # type: ignore[arg-type]
    raise AssertionError(url)  # check_url refused every other scheme
