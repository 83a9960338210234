"""QTasks' ``GlobalConfigSchema`` (``qtasks.schemas.global_config``): the status record a GlobalConfig component
keeps while it runs (``<project>:<config_name>:main`` = ``{name, status: "running"}``), written from this
schema by :mod:`qtasks_fast.configs` as by QTasks' Redis GlobalConfig."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class GlobalConfigSchema:
    """``name``: the GlobalConfig's ``name``; ``status``: ``"running"`` while it is started."""

    name: str
    status: str


__all__ = ["GlobalConfigSchema"]
