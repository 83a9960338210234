"""QTasks' ``qtasks.contrib.django.autodiscover_tasks``: import the task modules of a Django project's apps.

    # proj/qtasks_app.py
    app = QueueTasks("proj")
    autodiscover_tasks(app)          # imports <app>.tasks of every installed Django app

Why: a task exists in a process only once the module defining it is imported; in a Django project those
modules sit in each app's package, which nothing else imports in a worker. A failing import is logged
(WARNING for an app that cannot be imported, the traceback for a task module that raises) and the next
one is tried, as in QTasks: one broken app does not stop the others' tasks from registering.
"""

from __future__ import annotations

import importlib
from typing import Any

from qtasks_fast.log import get_logger

try:
    from django.conf import settings
    from django.utils.module_loading import module_has_submodule
except ImportError as exc:  # as QTasks: the contrib needs Django, the rest of qtasks_fast does not
    raise ImportError("qtasks_fast.contrib.django needs Django: pip install Django") from exc

log = get_logger("django")


def installed_app_names() -> list[str]:
    """The package of each installed app: from Django's app registry once ``django.setup()`` ran (an
    ``INSTALLED_APPS`` entry may name an ``AppConfig`` class, not a package), else ``INSTALLED_APPS`` itself."""
    from django.apps import apps

    if apps.ready:
        return [cfg.name for cfg in apps.get_app_configs()]
    return list(settings.INSTALLED_APPS)


def autodiscover_tasks(app: Any, modules: list[str] | None = None) -> list[str]:
    """Import ``<app>.<module>`` for each module of ``modules`` (default ``["tasks"]``) that exists in each
    installed Django app, so their tasks register; returns the modules imported. ``app`` is the
    ``QueueTasks`` the tasks are for (QTasks' signature; the modules name their app themselves)."""
    imported: list[str] = []
    for app_name in installed_app_names():
        try:
            package = importlib.import_module(app_name)
        except Exception as exc:  # noqa: BLE001 - one broken app must not stop the others (QTasks' rule)
            log.warning("autodiscover_tasks: cannot import the installed app %r (%s: %s); its tasks are not "
                        "registered", app_name, type(exc).__name__, exc)
            continue
        for module_name in modules or ["tasks"]:
            if not module_has_submodule(package, module_name):
                continue
            try:
                importlib.import_module(f"{app_name}.{module_name}")
            except Exception:  # noqa: BLE001 - logged with its traceback; the next module is tried
                log.exception("autodiscover_tasks: importing %s.%s failed; its tasks are not registered",
                              app_name, module_name)
                continue
            imported.append(f"{app_name}.{module_name}")
            log.debug("autodiscover_tasks: imported %s.%s for app %r", app_name, module_name,
                      getattr(app, "name", app))
    return imported


__all__ = ["autodiscover_tasks"]
