"""What every contract test starts from: a backend built from ``backend_url`` the way an app builds it.

Consumers are shallow copies of the app's broker started under their own name, exactly as worker
processes and ``WorkerThread`` do (see :meth:`qtasks_fast.abc.broker.Broker.start`), so two consumers of
one harness share one store whatever the backend (one file, one server, one in-process state).
``{tmp_path}`` in ``backend_url`` is replaced by the test's temporary directory
(``"sqlite:///{tmp_path}/q.sqlite3"``).
"""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from qtasks_fast import _corelib as core
from qtasks_fast.abc.broker import Broker, Delivery, Outcome
from qtasks_fast.abc.storage import Storage
from qtasks_fast.backends import make_backend
from qtasks_fast.config import GlobalConfig
from qtasks_fast.schemas import Envelope


class Harness:
    """One backend under a fresh app name: its broker and storage, and the consumers started on it."""

    def __init__(self, url: str, *, queues: Sequence[str] = ("default",), **config: Any) -> None:
        self.url = url
        self.app_name = f"contract{uuid.uuid4().hex[:10]}"
        self.queues = list(queues)
        self.config = GlobalConfig(**config)
        self.broker, self.storage = make_backend(url, self.app_name, self.config)
        self._consumers: list[Broker] = []

    @property
    def backend(self) -> str:
        """How errors name the backend: its broker class."""
        return type(self.broker).__name__

    async def consumer(self, name: str = "w-0", queues: Sequence[str] | None = None,
                       storage: Storage | None = None) -> Broker:
        """A started consumer ``name`` (worker id = the name without its ``-<slot>``)."""
        broker = copy.copy(self.broker)
        await broker.start(name, name.rsplit("-", 1)[0], list(queues or self.queues), storage or self.storage)
        self._consumers.append(broker)
        return broker

    async def close(self) -> None:
        for broker in self._consumers:
            await broker.close()
        await self.broker.close()
        await self.storage.close()


#: task names the contract's fetches treat as known (any other name is dead-lettered as unknown)
HANDLERS: dict[str, object] = {"add": object(), "boom": object()}


def envelope(name: str = "add", *, prio: int = 0, queue: str = "default", retry: int = 0,
             parent: str | None = None, args: Sequence[Any] = (1, 2), **kw: Any) -> Envelope:
    """A fresh call of ``name`` (a new uuid, created now)."""
    return Envelope(uuid=str(uuid.uuid4()), task_name=name, args=list(args), priority=prio, queue=queue,
                    created_at=time.time(), retry=retry, retry_parent_uuid=parent, **kw)


async def fetch(broker: Broker, count: int = 100, block: float = 0.0) -> tuple[list[Delivery], list[Any]]:
    """Fetch and decode as the worker does: ``(runnable deliveries, bad ones)``."""
    ready: list[Delivery] = []
    bad: list[Any] = []
    for queue, flat in await broker.fetch(count, block):
        core.decode_batch(queue, flat, HANDLERS, 1 << 20, ready, bad)
    return ready, bad


def success(d: Delivery, value: Any) -> Outcome:
    """The outcome of ``d`` returning ``value``."""
    return (d, "success", core.encode(value), "", "")


class ContractBase:
    """Base of every contract class: its ``harness`` fixture builds ``backend_url`` fresh for each test.

    Coroutine tests carry ``@pytest.mark.asyncio`` themselves, so the suite runs under pytest-asyncio's
    strict mode (a third party's default) as well as under auto mode.
    """

    #: the URL of the backend under test, set by the subclass (``"memory://"``, ``"redis://..."``)
    backend_url: str = ""

    @pytest_asyncio.fixture
    async def harness(self, tmp_path: Path) -> AsyncIterator[Harness]:
        if not self.backend_url:
            raise pytest.UsageError(f"{type(self).__name__} sets no backend_url: subclass BackendContract and "
                                    'set backend_url = "scheme://..."')
        h = Harness(self.backend_url.replace("{tmp_path}", str(tmp_path)))
        try:
            yield h
        finally:
            await h.close()
