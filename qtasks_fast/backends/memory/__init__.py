"""The in-process backend (``memory://``), for tests and single-process apps. ``factory`` is what the
``qtasks_fast.backends`` entry point names."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from qtasks_fast.abc import Broker, Storage
    from qtasks_fast.config import GlobalConfig


class MemoryBackend:
    """The :class:`~qtasks_fast.abc.BackendFactory` of ``memory://`` (every URL of the scheme is valid)."""

    def check_url(self, url: str) -> None:
        """Nothing to refuse: the rest of the URL is not read."""

    def __call__(self, url: str | None, app_name: str, config: GlobalConfig,
                 defined_in: str | None) -> tuple[Broker, Storage]:
        from qtasks_fast.backends.memory.broker import InMemoryBroker
        from qtasks_fast.backends.memory.storage import InMemoryStorage

        broker = InMemoryBroker(app_name=app_name, result_ttl=config.result_ttl,
                                priority_levels=config.priority_levels, lease_seconds=config.lease_seconds,
                                max_deliveries=config.max_deliveries)
        return broker, InMemoryStorage(state=broker.state, app_name=app_name, result_ttl=config.result_ttl)


factory = MemoryBackend()
