"""Broker implementations and the URL -> (broker, storage) factory.

``redis://`` / ``rediss://`` -> Redis Streams; ``sqlite:///path`` (or no URL at
all) -> the embedded SQLite backend; ``memory://`` -> in-process, for tests.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from qtasks_fast.abc import Broker, Storage
    from qtasks_fast.config import GlobalConfig

DEFAULT_SQLITE_DIR = ".qtasks_fast"


def default_sqlite_path(app_name: str) -> str:
    """Where the embedded backend keeps its file: ``$QTASKS_SQLITE_PATH`` or ``./.qtasks_fast/<app>.sqlite3``."""
    path = os.environ.get("QTASKS_SQLITE_PATH")
    if path:
        return path
    return os.path.join(os.getcwd(), DEFAULT_SQLITE_DIR, f"{app_name}.sqlite3")


def make_backend(url: str | None, app_name: str, config: GlobalConfig) -> tuple[Broker, Storage]:
    """Build a fused broker + storage pair for ``url`` (None = embedded SQLite)."""
    broker, storage = _make_backend(url, app_name, config)
    if hasattr(broker, "unique_ttl"):
        broker.unique_ttl = config.unique_ttl  # fallback ttl of a unique key whose envelope names none
    return broker, storage


def _make_backend(url: str | None, app_name: str, config: GlobalConfig) -> tuple[Broker, Storage]:
    url = url or os.environ.get("QTASKS_BROKER_URL") or None
    common = dict(app_name=app_name, result_ttl=config.result_ttl)
    bcommon = dict(priority_levels=config.priority_levels, lease_seconds=config.lease_seconds,
                   max_deliveries=config.max_deliveries, **common)
    if url is None or url.startswith("sqlite://"):
        from qtasks_fast.brokers.sqlite import SqliteBroker
        from qtasks_fast.storages.sqlite import SqliteStorage

        path = url[len("sqlite://"):].lstrip("/") if url else default_sqlite_path(app_name)
        if url and url.startswith("sqlite:////"):
            path = "/" + path
        sbroker = SqliteBroker(path, **bcommon)  # type: ignore[arg-type]
        return sbroker, SqliteStorage(path, connection=sbroker.conn, **common)  # type: ignore[arg-type]
    if url.startswith(("redis://", "rediss://", "unix://")):
        from qtasks_fast.brokers.redis import RedisBroker, RedisConnection
        from qtasks_fast.storages.redis import RedisStorage

        conn = RedisConnection(url, socket_timeout=config.socket_timeout, connect_timeout=config.connect_timeout)
        rbroker = RedisBroker(url, index_results=config.index_results, connection=conn,
                              **bcommon)  # type: ignore[arg-type]
        return rbroker, RedisStorage(url, connection=rbroker.conn, **common)  # type: ignore[arg-type]
    if url.startswith("memory://"):
        from qtasks_fast.brokers.memory import InMemoryBroker
        from qtasks_fast.storages.memory import InMemoryStorage

        mbroker = InMemoryBroker(**bcommon)  # type: ignore[arg-type]
        return mbroker, InMemoryStorage(state=mbroker.state, **common)  # type: ignore[arg-type]
    from qtasks_fast.url import redact

    raise ValueError(f"unsupported broker URL {redact(url)!r}: use redis://, rediss://, unix://, sqlite:///path "
                     "or memory://")
