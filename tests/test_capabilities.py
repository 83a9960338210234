"""The capability contract (qtasks_fast.abc.capabilities): each built-in backend declares exactly what it
implements, ``require`` is the one check the core makes, and a broker cannot half-declare a capability."""

from __future__ import annotations

import asyncio
import time
import uuid as _uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from qtasks_fast.abc import (
    CAPABILITIES,
    AuditLog,
    Broker,
    BrokerMemory,
    Cancel,
    Claims,
    DeadLetters,
    Delays,
    FlushAll,
    Limits,
    NotSupported,
    Purge,
    QueueStatistics,
    Storage,
    TaskTable,
    TransactionalEnqueue,
    UniqueKeys,
    WorkerRegistry,
    declared,
    require,
)
from qtasks_fast.backends import make_backend
from qtasks_fast.backends.memory.storage import InMemoryStorage
from qtasks_fast.config import GlobalConfig
from qtasks_fast.schemas import META_UNIQUE, Envelope

#: what the built-in backends declare: a dropped mixin (or a new capability not implemented) fails here
LOCAL = {Delays, UniqueKeys, Cancel, DeadLetters, Purge, FlushAll, Limits, Claims, TaskTable, WorkerRegistry,
         QueueStatistics, AuditLog}
EXPECTED = {"memory://": LOCAL, "sqlite:///{tmp}/q.sqlite3": LOCAL,
            "redis://127.0.0.1:6379/0": LOCAL | {BrokerMemory},
            "postgresql://postgres@127.0.0.1:5432/test": LOCAL | {TransactionalEnqueue}}


@pytest.mark.parametrize("url", list(EXPECTED))
def test_each_builtin_backend_declares_every_capability(url: str, tmp_path: Path) -> None:
    broker, storage = make_backend(url.replace("{tmp}", str(tmp_path)), "caps", GlobalConfig(unique_ttl=12.5))
    try:
        assert declared(broker) == EXPECTED[url]
        assert set(CAPABILITIES) >= EXPECTED[url]
        for capability in EXPECTED[url]:
            assert require(broker, capability) is broker
        assert broker.unique_ttl == 12.5  # type: ignore[attr-defined]  # UniqueKeys: set by the factory
    finally:
        broker.close_sync()
        storage.close_sync()


def test_a_refusal_names_exactly_the_bundled_backends_that_have_the_capability() -> None:
    """NotSupported's advice (``OFFERED_BY``, else every bundled backend) matches what each backend declares, so a
    refusal never sends a user to a backend that refuses the same call."""
    from qtasks_fast.abc.capabilities import EVERY_BACKEND, OFFERED_BY

    for capability in CAPABILITIES:
        having = [url.split("://")[0] + "://" for url in EXPECTED if capability in EXPECTED[url]]
        said = OFFERED_BY.get(capability.__name__, EVERY_BACKEND)
        assert sorted(having) == sorted(said.replace(" or ", ", ").split(", ")), capability


def test_the_postgresql_backends_refusals_say_what_to_use_instead(redis_url: str, pg_url: str) -> None:
    """PostgreSQL reports no broker memory figures, and only a PostgreSQL broker enqueues inside a caller's
    transaction: each refusal is one line naming the backend that does it."""
    from qtasks_fast.asyncio import QueueTasks as AsyncApp

    broker, storage = make_backend(pg_url, "caps", GlobalConfig())
    try:
        with pytest.raises(NotSupported) as caught:
            require(broker, BrokerMemory)
        text = str(caught.value)
        assert "\n" not in text and text.startswith("PgBroker does not support memory figures")
        assert "use a backend that has it (redis://)" in text, text
    finally:
        broker.close_sync()
        storage.close_sync()

    async def outbox() -> str:
        import asyncpg

        app = AsyncApp("caps", broker_url=redis_url, storage_url=pg_url)
        conn = await asyncpg.connect(pg_url.split("?")[0])
        try:
            async with conn.transaction():
                with pytest.raises(NotSupported) as refused:
                    await app.add_task("t", connection=conn)
            return str(refused.value)
        finally:
            await conn.close()
            await app.close()

    text = asyncio.run(outbox())
    assert "\n" not in text and text.startswith("RedisBroker does not support transactional enqueue"), text
    assert "use a backend that has it (postgresql://)" in text, text


class Minimal(Broker):
    """Only the core: every capability is undeclared."""

    async def enqueue(self, envelopes: Sequence[Envelope], storage: Storage, wait: bool = False) -> None:
        self.sent = list(envelopes)

    async def start(self, consumer: str, worker_id: str, queues: Sequence[str], storage: Storage) -> None: ...
    async def fetch(self, count: int, block: float) -> list[tuple[str, list[Any]]]: return []
    async def settle(self, outcomes: Sequence[Any], storage: Storage, retries: Sequence[Envelope]) -> None: ...
    async def renew(self, deliveries: Sequence[Any]) -> None: ...
    async def release(self, deliveries: Sequence[Any]) -> None: ...
    async def dead_letter(self, items: Sequence[Any], storage: Storage) -> None: ...


def env(**kw: Any) -> Envelope:
    return Envelope(uuid=str(_uuid.uuid4()), task_name="t", args=[], queue="default", created_at=time.time(), **kw)


@pytest.mark.parametrize("capability", CAPABILITIES)
def test_require_names_backend_capability_and_what_to_do(capability: type) -> None:
    with pytest.raises(NotSupported) as caught:
        require(Minimal(), capability)
    assert str(caught.value).startswith("Minimal does not support ")
    assert f"implement {capability.__name__} (qtasks_fast.abc.capabilities) in Minimal" in str(caught.value)


def test_a_broker_without_delays_or_unique_keys_refuses_them_at_enqueue_whoever_sends() -> None:
    """Not only the producer: a retry with backoff (settle -> enqueue) or a direct call is refused too,
    before the broker's own enqueue sees the batch (so nothing of it runs early)."""
    broker, storage = Minimal(), InMemoryStorage()
    with pytest.raises(NotSupported, match="delayed delivery"):
        asyncio.run(broker.enqueue([env(), env(eta=time.time() + 60)], storage))
    with pytest.raises(NotSupported, match="unique keys"):
        asyncio.run(broker.enqueue([env(meta={META_UNIQUE: ["k", 10]})], storage))
    with pytest.raises(NotSupported, match="delayed delivery"):
        broker.enqueue_sync([env(eta=time.time() + 60)], storage)
    assert not hasattr(broker, "sent")
    asyncio.run(broker.enqueue([env(), env(eta=time.time() - 1)], storage))  # a past eta is due now: accepted
    assert len(broker.sent) == 2


def test_a_half_declared_capability_cannot_be_instantiated() -> None:
    class HalfCancel(Minimal, Cancel):
        async def cancel(self, uuid: str, queue: str, reason: str, storage: Storage) -> str:
            return "unknown"

    with pytest.raises(TypeError, match="cancel_requests"):
        HalfCancel()  # type: ignore[abstract]

    class FullCancel(HalfCancel):
        async def cancel_requests(self) -> AsyncIterator[tuple[str, str]]:
            yield ("", "")

    assert declared(FullCancel()) == {Cancel}
