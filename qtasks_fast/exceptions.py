"""Errors a user can catch; each message says what to do."""


class QTasksError(Exception):
    """Base class of every qtasks_fast error."""


class BrokerError(QTasksError):
    """A backend reported a failure of its server (the transient/fatal rule: qtasks_fast.abc.broker). Not
    retried by itself: only its ``BrokerUnavailable`` subclass is a condition that time can fix."""


class BrokerUnavailable(BrokerError):
    """The broker cannot serve now, for a reason time can fix (unreachable, timed out, locked, failing
    over); the message names the redacted URL and the cause. Workers wait it out; producers may retry."""


class BrokerFull(BrokerUnavailable):
    """The broker refuses new work because it is out of memory (Redis ``maxmemory``); the message says
    what to do. A subclass of ``BrokerUnavailable``: code that retries an unreachable broker retries
    this too."""


class ConfigError(QTasksError):
    """The app or its configuration cannot work as given (an unwritable SQLite path, a queue nobody
    serves, ...): no restart can fix it, so a pool stops at once; the message says what to change."""


class BrokerRefused(BrokerError, ConfigError):
    """The broker refuses this client for good: wrong user or password, an ACL without the needed commands,
    a database the server does not have. No wait fixes it (a pool stops at once); the message says what
    to change in the URL or the server."""


class TaskNotFound(QTasksError, KeyError):
    """No task is registered under that name in this app."""


class InvalidTaskId(QTasksError, ValueError):
    """A task uuid given to ``get``/``wait``/``cancel``/... (or the CLI) that is not a UUID: it is refused
    before it reaches the broker, where it would become part of a key."""


class TaskArgumentsError(QTasksError, TypeError):
    """Arguments do not match the task function's signature or type hints."""


class PayloadTooLarge(QTasksError, ValueError):
    """The encoded task is larger than ``config.max_payload``."""


class TaskCancel(QTasksError):
    """Raised inside a task (``ctx.cancel(reason)``) to end it with status ``cancel``."""

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason)
        self.reason = reason


class TaskCancelError(TaskCancel, RuntimeError):
    """QTasks' name (``qtasks.exc.TaskCancelError``): what ``ctx.cancel(reason)`` raises, and what a task may
    raise itself to end with status ``cancel``. A ``TaskCancel`` (our name), and a ``RuntimeError`` as in
    QTasks, so ``except`` clauses written for either keep catching it."""

    def __init__(self, *args: object) -> None:
        super().__init__(str(args[0]) if args else "")
        self.args = args


class TaskPluginTriggerError(QTasksError):
    """QTasks' ``qtasks.exc.TaskPluginTriggerError``: raised by ``self.ctx.plugin_error(**kwargs)`` in an echo
    task (or by the task itself): the task fails with it, and ``kwargs`` stay on the exception for whoever reads
    the failure."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args)
        self.kwargs = kwargs
