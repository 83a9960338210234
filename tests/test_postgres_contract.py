"""The exported contract suite against the PostgreSQL backend, declared as a third party declares theirs: one class,
one URL. The URL names the test run's own schema (conftest ``pg_url``), dropped when the run ends."""

from __future__ import annotations

import pytest
from conftest import PG_URL

from qtasks_fast.testing.contract import BackendContract


class TestPostgres(BackendContract):
    backend_url = PG_URL

    @pytest.fixture(autouse=True)
    def _server(self, pg_url: str) -> None:
        """Checks the server answers and drops the run's schema at the end (conftest)."""
