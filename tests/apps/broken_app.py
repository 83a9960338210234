"""An app module whose import fails on a missing dependency (for the CLI's -A error path)."""

import nonexistent_dependency_qtf  # noqa: F401

from qtasks_fast import QueueTasks

app = QueueTasks("broken")
