"""QTasks' module paths below its packages: ``qtasks.asyncio.qtasks``, ``qtasks.results.sync_result``, ...

QTasks defines each class in a module of its own and its examples and docs import it from there
(``from qtasks.asyncio.qtasks import QueueTasks``, ``from qtasks.registries.async_task_decorator import
AsyncTask``), not only from the package. Here those classes live in the package module, so each such path is
an alias module made on first import: it holds the names QTasks' module defines, taken from the module of
ours that has them (the same objects, so ``isinstance`` and identity hold). Why a finder and not one file per
path: 35 files of two lines each would only repeat this table, and a file per path invites a second
implementation to grow in it. The finder sits at the end of ``sys.meta_path`` and answers only the names in
:data:`ALIASES`, so it never shadows a real module. A package module with aliases below it declares
``__path__ = []`` (Python imports a submodule only below a package).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType

_P = "qtasks_fast.plugins"

#: our module path (QTasks' with ``qtasks`` -> ``qtasks_fast``) -> (the module of ours with the names, the names)
ALIASES: dict[str, tuple[str, tuple[str, ...]]] = {
    "qtasks_fast.qtasks": ("qtasks_fast", ("QueueTasks",)),
    "qtasks_fast.version": ("qtasks_fast", ("__version__",)),
    "qtasks_fast.asyncio.qtasks": ("qtasks_fast.asyncio", ("QueueTasks",)),
    "qtasks_fast.registries.sync_task_decorator": ("qtasks_fast.registries", ("SyncTask",)),
    "qtasks_fast.registries.async_task_decorator": ("qtasks_fast.registries", ("AsyncTask",)),
    "qtasks_fast.results.sync_result": ("qtasks_fast.results", ("SyncResult",)),
    "qtasks_fast.results.async_result": ("qtasks_fast.results", ("AsyncResult",)),
    "qtasks_fast.routers.sync_router": ("qtasks_fast.routers", ("SyncRouter",)),
    "qtasks_fast.routers.async_router": ("qtasks_fast.routers", ("AsyncRouter",)),
    "qtasks_fast.events.sync_events": ("qtasks_fast.events", ("SyncEvents",)),
    "qtasks_fast.events.async_events": ("qtasks_fast.events", ("AsyncEvents",)),
    "qtasks_fast.timers.sync_timer": ("qtasks_fast.timers", ("SyncTimer",)),
    "qtasks_fast.timers.async_timer": ("qtasks_fast.timers", ("AsyncTimer",)),
    "qtasks_fast.contexts.sync_context": ("qtasks_fast.contexts", ("SyncContext",)),
    "qtasks_fast.contexts.async_context": ("qtasks_fast.contexts", ("AsyncContext",)),
    "qtasks_fast.configs.sync_redisglobalconfig": ("qtasks_fast.configs", ("SyncRedisGlobalConfig",)),
    "qtasks_fast.configs.async_redisglobalconfig": ("qtasks_fast.configs", ("AsyncRedisGlobalConfig",)),
    "qtasks_fast.stats.inspect.inspect": ("qtasks_fast.stats.inspect", ("InspectStats",)),
    "qtasks_fast.utils.registry": ("qtasks_fast.utils", ("shared_task",)),
    # QTasks' executors package exports its Sync/AsyncTaskExecutor (no counterpart: docs/from-qtasks.md); it is
    # here as the package of ``base``, whose BaseTaskExecutor QTasks' example middleware imports for a hint
    "qtasks_fast.executors": ("qtasks_fast.worker.executor", ()),
    "qtasks_fast.executors.base": ("qtasks_fast.worker.executor", ("BaseTaskExecutor",)),
    f"{_P}.retries.sync_retry": (f"{_P}.retries", ("SyncRetryPlugin",)),
    f"{_P}.retries.async_retry": (f"{_P}.retries", ("AsyncRetryPlugin",)),
    f"{_P}.states.sync_state": (f"{_P}.states", ("SyncStatePlugin",)),
    f"{_P}.states.async_state": (f"{_P}.states", ("AsyncStatePlugin",)),
    f"{_P}.states.fsm": (f"{_P}.states", ("AsyncState", "SyncState")),
    f"{_P}.pydantic.sync_pydantic": (f"{_P}.pydantic", ("SyncPydanticWrapperPlugin",)),
    f"{_P}.pydantic.async_pydantic": (f"{_P}.pydantic", ("AsyncPydanticWrapperPlugin",)),
    f"{_P}.testing.sync_test": (f"{_P}.testing", ("SyncTestPlugin",)),
    f"{_P}.testing.async_test": (f"{_P}.testing", ("AsyncTestPlugin",)),
    f"{_P}.depends.sync_depends": (f"{_P}.depends", ("SyncDependsPlugin",)),
    f"{_P}.depends.async_depends": (f"{_P}.depends", ("AsyncDependsPlugin",)),
    f"{_P}.depends.class_depends": (f"{_P}.depends", ("Depends",)),
    f"{_P}.depends.enums": (f"{_P}.depends", ("ScopeEnum",)),
    f"{_P}.depends.enums.scope": (f"{_P}.depends", ("ScopeEnum",)),
    f"{_P}.grpc.sync_grpc": (f"{_P}.grpc", ("SyncgRPCPlugin",)),
    f"{_P}.grpc.async_grpc": (f"{_P}.grpc", ("AsyncgRPCPlugin",)),
    # the base of both clients, which QTasks code annotates with (``app: BaseQueueTasks``)
    "qtasks_fast.base": ("qtasks_fast.app", ()),
    "qtasks_fast.base.qtasks": ("qtasks_fast.app", ("BaseQueueTasks",)),
    "qtasks_fast.workers.sync_worker": ("qtasks_fast.workers", ("SyncThreadWorker",)),
    "qtasks_fast.workers.async_worker": ("qtasks_fast.workers", ("AsyncWorker",)),
    "qtasks_fast.workers.base": ("qtasks_fast.workers", ("BaseWorker",)),
}

#: alias modules that are packages in QTasks (another alias lives below them)
_PACKAGES = frozenset(p.rpartition(".")[0] for p in ALIASES) & ALIASES.keys()


class AliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Makes the modules of :data:`ALIASES` when imported (see the module docstring)."""

    def find_spec(self, fullname: str, path: object = None,
                  target: object = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in ALIASES:
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=fullname in _PACKAGES)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None  # the default module object

    def exec_module(self, module: ModuleType) -> None:
        source, names = ALIASES[module.__name__]
        ours = importlib.import_module(source)
        module.__dict__.update({name: getattr(ours, name) for name in names})
        module.__all__ = list(names)  # type: ignore[attr-defined]
        what = f"{', '.join(names)} of {source}" if names else "the package of the aliases below it"
        module.__doc__ = (f"QTasks' module {'qtasks' + module.__name__[len('qtasks_fast'):]}: {what} "
                          "(qtasks_fast.qtasks_paths).")


def install() -> None:
    """Put the finder at the end of ``sys.meta_path`` once (``import qtasks_fast`` does)."""
    if not any(isinstance(f, AliasFinder) for f in sys.meta_path):
        sys.meta_path.append(AliasFinder())
