"""QTasks' ``qtasks.utils``: ``shared_task`` from here too (``from qtasks.utils import shared_task``).

QTasks' other helpers there (``get_app``, ``_build_task``, ``AsyncTaskUtils``) are its internals: the main app is
:func:`qtasks_fast.router.main_app`, chains are :mod:`qtasks_fast.canvas`.
"""

from qtasks_fast.router import shared_task

__all__ = ["shared_task"]
