"""QTasks' ``qtasks.contrib.django``: :func:`autodiscover_tasks` for Django projects (needs Django installed)."""

from __future__ import annotations

from qtasks_fast.contrib.django.autodiscover import autodiscover_tasks

__all__ = ["autodiscover_tasks"]
