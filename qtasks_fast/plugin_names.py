"""QTasks' plugin trigger names, read as ours: an alias where the meaning maps, a refusal naming the closest
trigger where it does not.

A plugin written for QTasks registers with QTasks' names (``app.add_plugin(p, ["task_executor_before_execute"],
component="worker")``). Where one of our triggers fires at the same point, the plugin is registered there and
called with the name it asked for, so its ``if name == ...`` still matches; the keyword arguments are ours
(see :mod:`qtasks_fast.plugins`) plus QTasks' at that trigger (:mod:`qtasks_fast.plugins.qtasks_kw`), and a
returned dict may replace only what our trigger lets it replace (QTasks' keys read as ours). A
QTasks name with no counterpart is refused at ``add_plugin``: a plugin that would never be called must not
look registered. The full table is in docs/from-qtasks.md.
"""

from __future__ import annotations

#: QTasks trigger -> (our component, our trigger) where the meaning maps
ALIASES: dict[str, tuple[str, str]] = {
    "task_executor_before_execute": ("worker", "task_before_execute"),
    "worker_execute_before": ("worker", "task_before_execute"),
    "worker_run_task_before": ("worker", "task_before_execute"),
    "task_executor_args_replace": ("worker", "task_before_execute"),
    "task_executor_after_execute": ("worker", "task_after_execute"),
    "task_executor_run_task_trigger_error": ("worker", "task_plugin_error"),
    "worker_execute_after": ("worker", "task_after_execute"),
    "starter_start": ("worker", "worker_start"),
    "starter_stop": ("worker", "worker_stop"),
    "qtasks_stop": ("worker", "worker_stop"),
    "qtasks_add_task_before_broker": ("producer", "task_before_enqueue"),
    "broker_add_before": ("producer", "task_before_enqueue"),
    "qtasks_add_task_after_broker": ("producer", "task_after_enqueue"),
    "broker_add_after": ("producer", "task_after_enqueue"),
    "storage_add": ("producer", "task_after_enqueue"),
    "broker_listen_start": ("broker", "broker_start"),
    "storage_start": ("broker", "broker_start"),
    "storage_stop": ("broker", "broker_stop"),
    "storage_update": ("storage", "storage_save"),
}

#: QTasks' keyword arguments and returned keys, per QTasks trigger: qtasks_fast.plugins.qtasks_kw (INPUTS, OUTPUTS)

_RESULT = "results cannot be replaced here; read them at task_after_execute (component='worker')"
_ERROR = "a failure is seen at task_after_execute (component='worker') with status='error'"
_FINISHED = "records expire after config.result_ttl; the closest is storage_save (component='storage')"
_NO_GET = "reading a record fires no trigger here; the closest is storage_save (component='storage')"
_FLUSH = "app.flush_all() fires no trigger here; the closest is worker_stop (component='worker')"
_GLOBAL = "the GlobalConfig component fires no triggers here; the closest is worker_start (component='worker')"

#: QTasks trigger with no counterpart -> why, and the closest trigger of ours
REFUSED: dict[str, str] = {
    "task_executor_after_execute_result_replace": _RESULT,
    "task_executor_decode": "decoding runs in the client (decode=, config.task_default_decode); the closest is "
                            "task_after_execute (component='worker')",
    "worker_task_error_retry": _ERROR + "; retries are the task's retry= option, decided by "
                               "qtasks_fast.plugins.SyncRetryPlugin.retry_child (override it in a subclass)",
    "task_executor_middlewares_execute": "middlewares run around task_before_execute (component='worker')",
    "task_executor_run_task": "the closest is task_before_execute (component='worker')",
    "task_executor_run_task_gen": "the closest is task_after_execute (component='worker')",
    "task_executor_task_close": "the closest is task_after_execute (component='worker')",
    "worker_add": "the closest is task_before_execute (component='worker')",
    "broker_add_worker": "the closest is task_before_execute (component='worker')",
    "worker_remove_finished_task": _FINISHED,
    "broker_remove_finished_task": _FINISHED,
    "storage_remove_finished_task": _FINISHED,
    "storage_delete_finished_tasks": _FINISHED,
    "broker_running_older_tasks": "interrupted tasks always run again here (leases); the closest is broker_start "
                                  "(component='broker')",
    "storage_running_older_tasks": "interrupted tasks always run again here (leases); the closest is broker_start "
                                   "(component='broker')",
    "broker_update": "the closest is storage_save (component='storage')",
    "storage_add_process": "the closest is task_before_execute (component='worker')",
    "broker_get": _NO_GET, "storage_get": _NO_GET, "storage_get_all": _NO_GET, "qtasks_get": _NO_GET,
    "broker_flush_all": _FLUSH, "storage_flush_all": _FLUSH, "qtasks_flush_all": _FLUSH,
    "qtasks_ping": "app.ping() fires no trigger here; the closest is worker_start (component='worker')",
    "stats_inspect": "inspect fires no trigger here; the closest is worker_start (component='worker')",
    "global_config_start": _GLOBAL, "global_config_stop": _GLOBAL, "global_config_set": _GLOBAL,
    "global_config_get": _GLOBAL, "global_config_get_all": _GLOBAL, "global_config_get_match": _GLOBAL,
    "global_config_set_status": _GLOBAL,
}


def refusal(name: str) -> str | None:
    """The one-line ``add_plugin`` error of QTasks trigger ``name`` when it has no counterpart here, else None."""
    why = REFUSED.get(name)
    if why is None:
        return None
    return f"add_plugin: QTasks trigger {name!r} has no counterpart in qtasks_fast: {why}"
