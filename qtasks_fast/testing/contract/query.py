"""Contract: the query side (:mod:`qtasks_fast.abc.query`): lists, filters, pagination, counts, details,
the event feed and its resume, throughput."""

from __future__ import annotations

from qtasks_fast.testing.contract.harness import ContractBase


class QueryContract(ContractBase):
    """The query side (filled in by issue 12's query-side work)."""
