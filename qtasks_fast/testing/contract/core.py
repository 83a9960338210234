"""Contract: enqueue, fetch, settle, leases and redelivery, dead letters, release, bad messages."""

from __future__ import annotations

import pytest

from qtasks_fast.testing.contract.harness import ContractBase, Harness, envelope, fetch, success


class CoreContract(ContractBase):
    """The broker core every backend implements (filled in by issue 12's contract work)."""

    @pytest.mark.asyncio
    async def test_enqueue_fetch_settle_get(self, harness: Harness) -> None:
        """A task goes new -> process -> success; its record carries the result; an acked message never
        comes back, not even to a replacement consumer of the same name."""
        storage = harness.storage
        broker = await harness.consumer("w-0")
        e = envelope()
        await broker.enqueue([e], storage)
        new = await storage.get(e.uuid, ["default"])
        assert new is not None and new.status == "new"
        ready, bad = await fetch(broker)
        assert bad == [] and [d.envelope.uuid for d in ready if d.envelope] == [e.uuid]
        running = await storage.get(e.uuid, ["default"])
        assert running is not None and running.status == "process"
        await broker.settle([success(ready[0], {"sum": [3]})], storage, [])
        done = await storage.get(e.uuid, ["default"])
        assert done is not None and done.status == "success" and done.returning == {"sum": [3]}
        assert await fetch(broker) == ([], [])
        assert await fetch(await harness.consumer("w-0")) == ([], [])
