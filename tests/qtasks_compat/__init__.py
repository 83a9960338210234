"""QTasks-compat tests (issue 11): a package, so that its conftest and helpers do not shadow tests/conftest.py."""
