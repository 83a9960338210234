"""Backends by URL scheme: a registry that picks the (broker, storage) pair of a broker URL.

Each backend is a package of its own (``qtasks_fast.backends.redis``, ``.sqlite``, ``.memory``) owning its
broker, storage and control code. A scheme is registered through the ``qtasks_fast.backends`` entry point
group (name = the scheme without ``://``, value = a :class:`~qtasks_fast.abc.BackendFactory`), so a
third-party package adds ``postgresql://`` by declaring, in its ``pyproject.toml``::

    [project.entry-points."qtasks_fast.backends"]
    postgresql = "my_package.backend:factory"

or in code with :func:`register_backend`. Factories are imported only when their scheme is used, so the core
never imports a backend it does not run (checked by ``lint-imports``, see pyproject.toml).
"""

from __future__ import annotations

import functools
import re
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING

from qtasks_fast.backends.location import (
    DEFAULT_SQLITE_DIR,
    ENV_SQLITE_PATH,
    ENV_URL,
    default_sqlite_path,
    sqlite_location,
    sqlite_url_path,
    user_data_dir,
)

if TYPE_CHECKING:
    from qtasks_fast.abc import BackendFactory, Broker, Storage
    from qtasks_fast.config import GlobalConfig

GROUP = "qtasks_fast.backends"
#: the backend of an app given no URL at all: embedded SQLite at :func:`sqlite_location`
DEFAULT_SCHEME = "sqlite"
#: the built-in schemes, as pyproject.toml declares them (a test checks both agree). Read from here too so a
#: checkout whose installed metadata predates a scheme (an editable install not re-run) still finds it.
BUILTIN: dict[str, str] = {
    "redis": "qtasks_fast.backends.redis:factory",
    "rediss": "qtasks_fast.backends.redis:factory",
    "unix": "qtasks_fast.backends.redis:factory",
    "sqlite": "qtasks_fast.backends.sqlite:factory",
    "memory": "qtasks_fast.backends.memory:factory",
}
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")
_registered: dict[str, BackendFactory] = {}


def register_backend(scheme: str, factory: BackendFactory) -> None:
    """Serve ``scheme://`` URLs with ``factory`` in this process (wins over entry points and built-ins)."""
    scheme = scheme.removesuffix("://")
    if not _SCHEME.fullmatch(scheme):
        raise ValueError(f"register_backend({scheme!r}): a scheme is lowercase letters, digits, '+', '-', '.' "
                         "(e.g. 'postgresql'), without '://'")
    _registered[scheme] = factory


@functools.cache
def _declared() -> dict[str, EntryPoint]:
    """The built-ins, then the entry points of installed distributions (read once per process). An entry point
    naming a built-in scheme does not replace it: use :func:`register_backend` for that, explicitly."""
    found = {name: EntryPoint(name, value, GROUP) for name, value in BUILTIN.items()}
    for ep in entry_points(group=GROUP):
        found.setdefault(ep.name, ep)
    return found


def schemes() -> list[str]:
    """Every registered scheme, built-ins first."""
    return list(dict.fromkeys([*_declared(), *_registered]))


def backend_factory(scheme: str) -> BackendFactory:
    """The factory of ``scheme`` (without ``://``); ``KeyError`` if none is registered."""
    if scheme in _registered:
        return _registered[scheme]
    factory: BackendFactory = _declared()[scheme].load()
    return factory


def _factory_for(url: str) -> BackendFactory:
    from qtasks_fast.url import redact

    scheme, sep, _ = url.partition("://")
    if sep and scheme in schemes():
        return backend_factory(scheme)
    known = [f"{s}://" for s in schemes()]
    raise ValueError(f"unsupported broker URL {redact(url)!r}: use {', '.join(known[:-1])} or {known[-1]}")


def check_url(url: str) -> None:
    """Refuse a broker URL that cannot work, before anything connects: a ``ValueError`` whose one line
    names the (redacted) URL and what to write instead (the registered schemes, for an unknown one)."""
    _factory_for(url).check_url(url)


def make_backend(url: str | None, app_name: str, config: GlobalConfig,
                 defined_in: str | None = None) -> tuple[Broker, Storage]:
    """Build a fused broker + storage pair for ``url`` (None = embedded SQLite at :func:`sqlite_location`;
    the app decides the URL: see ``BaseQueueTasks.broker_source``)."""
    if url is None:
        factory = backend_factory(DEFAULT_SCHEME)
    else:
        factory = _factory_for(url)
        factory.check_url(url)
    from qtasks_fast.abc.capabilities import UniqueKeys

    broker, storage = factory(url, app_name, config, defined_in)
    if isinstance(broker, UniqueKeys):
        broker.unique_ttl = config.unique_ttl  # fallback ttl of a unique key whose envelope names none
    return broker, storage


__all__ = ["BUILTIN", "DEFAULT_SCHEME", "DEFAULT_SQLITE_DIR", "ENV_SQLITE_PATH", "ENV_URL", "GROUP",
           "backend_factory", "check_url", "default_sqlite_path", "make_backend", "register_backend", "schemes",
           "sqlite_location", "sqlite_url_path", "user_data_dir"]
