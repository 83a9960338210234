"""The backend contract suite: the behaviour the worker, the clients and the operator surfaces rely on,
as pytest test classes any backend can run.

A backend author (ours or a third party's) runs the whole suite with one class per backend::

    # tests/test_contract.py of a package that registers kafka:// (entry point group qtasks_fast.backends)
    from qtasks_fast.testing.contract import BackendContract

    class TestKafka(BackendContract):
        backend_url = "kafka://127.0.0.1:9092"

Every test gets a fresh app name, so backends that share a server need no cleanup between tests. A
capability the backend does not declare is not skipped: the test asserts the call raises ``NotSupported``
naming the backend and the capability (what a user would see), so a backend passes by doing the thing or by
refusing it clearly, never by doing it wrong.

The suite is split by subject: :mod:`.core` (enqueue, fetch, settle, priorities, waiting, result expiry)
with :mod:`.delivery` (leases, redelivery, renew, release, dead letters, bad messages), :mod:`.control`
(delays, unique keys, cancel, purge, dead-letter management) with :mod:`.fleet` (limits, claims, worker
registry, queue statistics, published task table, flush_all), and :mod:`.query` (task lists, filters,
pagination, counts, details, event feed resume, throughput). ``pytest-asyncio`` runs the coroutine tests.
The bad-message tests write raw bytes through the backend's test hook ``broker.enqueue_raw(queue, body,
priority, uuid)``.
"""

from __future__ import annotations

from qtasks_fast.testing.contract.control import ControlContract
from qtasks_fast.testing.contract.core import CoreContract
from qtasks_fast.testing.contract.harness import ContractBase, Harness
from qtasks_fast.testing.contract.query import QueryContract


class BackendContract(CoreContract, ControlContract, QueryContract):
    """All of the contract; set ``backend_url`` in a subclass named ``Test...``."""


__all__ = ["BackendContract", "ContractBase", "ControlContract", "CoreContract", "Harness", "QueryContract"]
