"""The embedded SQLite backend (``sqlite:///path``, and the default when no URL is given). ``factory`` is what
the ``qtasks_fast.backends`` entry point names."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qtasks_fast.backends.location import default_sqlite_path, sqlite_url_path

if TYPE_CHECKING:
    from qtasks_fast.abc import Broker, Storage
    from qtasks_fast.config import GlobalConfig


class SqliteBackend:
    """The :class:`~qtasks_fast.abc.BackendFactory` of ``sqlite://``; ``url=None`` is the file at
    :func:`~qtasks_fast.backends.location.sqlite_location`."""

    def check_url(self, url: str) -> None:
        """A URL that names no file is refused with the two ways to write one."""
        from qtasks_fast.url import redact

        if not sqlite_url_path(url):
            raise ValueError(f"broker URL {redact(url)!r} names no file: write sqlite:///relative/path.sqlite3 or "
                             "sqlite:////absolute/path.sqlite3")

    def __call__(self, url: str | None, app_name: str, config: GlobalConfig,
                 defined_in: str | None) -> tuple[Broker, Storage]:
        from qtasks_fast.backends.sqlite.broker import SqliteBroker
        from qtasks_fast.backends.sqlite.storage import SqliteStorage

        path = sqlite_url_path(url) if url else default_sqlite_path(app_name, defined_in)
        broker = SqliteBroker(path, app_name=app_name, result_ttl=config.result_ttl,
                              priority_levels=config.priority_levels, lease_seconds=config.lease_seconds,
                              max_deliveries=config.max_deliveries)
        return broker, SqliteStorage(path, connection=broker.conn, app_name=app_name, result_ttl=config.result_ttl)


factory = SqliteBackend()
