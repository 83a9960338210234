"""The Redis backend (``redis://``, ``rediss://``, ``unix://``): Redis Streams with the server-side logic in
``redis.lua``. ``factory`` is what the ``qtasks_fast.backends`` entry points name; it imports redis only when
it builds a backend, so checking a URL stays cheap."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from qtasks_fast.abc import Broker, Storage
    from qtasks_fast.config import GlobalConfig


class RedisBackend:
    """The :class:`~qtasks_fast.abc.BackendFactory` of the Redis schemes."""

    def check_url(self, url: str) -> None:
        """A port outside 1..65535 or a database that is not a number is refused with what to write."""
        from urllib.parse import parse_qs, urlsplit

        from qtasks_fast.url import redact

        parts = urlsplit(url)
        try:
            parts.port  # noqa: B018 - raises ValueError for a port that is not 0..65535
        except ValueError:
            raise ValueError(f"broker URL {redact(url)!r} has an invalid port: write host:6379 (a number from 1 "
                             "to 65535)") from None
        dbs = parse_qs(parts.query).get("db", [])
        if not url.startswith("unix://") and parts.path.strip("/"):
            dbs.append(parts.path.strip("/"))
        for db in dbs:
            if not db.isdigit():
                raise ValueError(f"broker URL {redact(url)!r} names database {db!r}: a Redis database is a "
                                 "number (/0 to /15 on a default server)")

    def __call__(self, url: str | None, app_name: str, config: GlobalConfig,
                 defined_in: str | None) -> tuple[Broker, Storage]:
        from qtasks_fast.backends.redis.broker import RedisBroker, RedisConnection
        from qtasks_fast.backends.redis.storage import RedisStorage

        assert url is not None, "the Redis backend needs a URL"
        conn = RedisConnection(url, socket_timeout=config.socket_timeout, connect_timeout=config.connect_timeout)
        broker = RedisBroker(url, app_name=app_name, result_ttl=config.result_ttl,
                             priority_levels=config.priority_levels, lease_seconds=config.lease_seconds,
                             max_deliveries=config.max_deliveries, index_results=config.index_results,
                             connection=conn)
        return broker, RedisStorage(url, connection=broker.conn, app_name=app_name, result_ttl=config.result_ttl,
                                    priority_levels=config.priority_levels)


factory = RedisBackend()
