"""The backend factory: what a URL scheme registers so ``QueueTasks(broker_url="scheme://...")`` builds a backend.

Register one through the ``qtasks_fast.backends`` entry point group (the name is the scheme, without ``://``;
the value an object of this protocol), or in code with :func:`qtasks_fast.backends.register_backend`. Why a
protocol and not a base class: a third-party package needs nothing of ours to subclass, only these two calls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from qtasks_fast.abc.broker import Broker
    from qtasks_fast.abc.storage import Storage
    from qtasks_fast.config import GlobalConfig


@runtime_checkable
class BackendFactory(Protocol):
    """Builds the (broker, storage) pair of one or more URL schemes."""

    def check_url(self, url: str) -> None:
        """Refuse a URL of this scheme that cannot work, before anything connects: a ``ValueError`` whose one
        line names the URL (redacted: :func:`qtasks_fast.url.redact`) and what to write instead."""

    def __call__(self, url: str | None, app_name: str, config: GlobalConfig,
                 defined_in: str | None) -> tuple[Broker, Storage]:
        """A broker and the storage of its records for ``url`` (already checked). ``url`` is None only for
        the default backend (no URL given anywhere); ``defined_in`` is the file of the module that created
        the app (where an embedded backend keeps its data by default), None in an interactive session."""
        ...


@runtime_checkable
class Migrations(Protocol):
    """A broker or storage whose data lives in a versioned schema (the PostgreSQL backend): ``qtasks-fast -A app
    migrate`` lists and applies its migrations. Backends apply them on start anyway; the command is for doing
    it ahead of a deploy, or seeing where a database stands. A backend without one has nothing to migrate."""

    #: what the migrations apply to, redacted (``postgresql://user:***@db/q schema qtasks_fast``): a broker and
    #: storage on the same schema are migrated once
    migration_target: str

    async def migrations(self) -> list[tuple[int, str, bool]]:
        """Every migration the code knows: ``(version, name, applied)``, oldest first."""
        ...

    async def migrate(self) -> list[tuple[int, str]]:
        """Apply the pending ones (safe to run concurrently: they are applied once); returns those applied."""
        ...
