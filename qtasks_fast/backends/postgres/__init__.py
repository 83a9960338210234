"""The PostgreSQL backend (``postgresql://`` and ``postgres://``), shipped as the extra ``qtasks-fast[postgres]``
(asyncpg). ``factory`` is what the ``qtasks_fast.backends`` entry point names, registered exactly as a third-party
package would register it (``pyproject.toml``); nothing of the core imports this package.

``postgresql://user:password@host:5432/db?schema=qtasks_fast``: all tables live in ``schema`` (default
``qtasks_fast``), created and migrated on first use (:mod:`~qtasks_fast.backends.postgres.migrations`, also
``qtasks-fast -A app migrate``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from qtasks_fast.abc import Broker, Storage
    from qtasks_fast.config import GlobalConfig


class PostgresBackend:
    """The :class:`~qtasks_fast.abc.BackendFactory` of ``postgresql://`` and ``postgres://``."""

    def check_url(self, url: str) -> None:
        """A schema that is not a plain identifier, or a missing asyncpg, is refused with what to do."""
        from qtasks_fast.url import redact

        try:
            import asyncpg  # noqa: F401
        except ImportError:
            raise ValueError(f"broker URL {redact(url)!r} needs asyncpg: pip install 'qtasks-fast[postgres]'") from None
        from qtasks_fast.backends.postgres.db import split_url
        from qtasks_fast.backends.postgres.migrations import check_schema

        check_schema(split_url(url)[1])

    def __call__(self, url: str | None, app_name: str, config: GlobalConfig,
                 defined_in: str | None) -> tuple[Broker, Storage]:
        from qtasks_fast.backends.postgres.broker import PgBroker
        from qtasks_fast.backends.postgres.db import PgDb
        from qtasks_fast.backends.postgres.storage import PgStorage

        assert url is not None, "postgresql:// is never the default backend"
        db = PgDb.for_url(url)
        broker = PgBroker(url, app_name=app_name, db=db, result_ttl=config.result_ttl,
                          priority_levels=config.priority_levels, lease_seconds=config.lease_seconds,
                          max_deliveries=config.max_deliveries)
        broker.unique_ttl = config.unique_ttl
        return broker, PgStorage(url, app_name=app_name, db=db, result_ttl=config.result_ttl)


factory = PostgresBackend()
