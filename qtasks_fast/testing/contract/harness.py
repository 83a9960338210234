"""What every contract test starts from: a backend built from ``backend_url`` the way an app builds it.

Consumers are shallow copies of the app's broker started under their own name, exactly as worker
processes and ``WorkerThread`` do (see :meth:`qtasks_fast.abc.broker.Broker.start`), so two consumers of
one harness share one store whatever the backend (one file, one server, one in-process state).
``{tmp_path}`` in ``backend_url`` is replaced by the test's temporary directory
(``"sqlite:///{tmp_path}/q.sqlite3"``).

Settings a test needs short (a 0.3 s lease, two deliveries) come from :meth:`Harness.configured`, a second
backend under its own app name built with that ``GlobalConfig``, as an app with those settings would be.
A capability the backend may lack is exercised inside ``with harness.capability("cancel"):``, which lets
only a ``NotSupported`` naming the backend and that capability end the test early (see :meth:`capability`).
"""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from qtasks_fast import _corelib as core
from qtasks_fast.abc.broker import Broker, Delivery, NotSupported, Outcome
from qtasks_fast.abc.storage import Storage
from qtasks_fast.backends import make_backend
from qtasks_fast.config import GlobalConfig
from qtasks_fast.schemas import META_UNIQUE, Envelope, Task

#: the GlobalConfig fields a backend factory hands to its broker (``Broker.__init__``); tests set them short
BROKER_SETTINGS = ("lease_seconds", "max_deliveries", "result_ttl", "priority_levels")


class Harness:
    """One backend under a fresh app name: its broker and storage, and the consumers started on it."""

    def __init__(self, url: str, *, queues: Sequence[str] = ("default",), app_name: str | None = None,
                 **config: Any) -> None:
        self.url = url
        self.app_name = app_name or f"contract{uuid.uuid4().hex[:10]}"
        self.queues = list(queues)
        self.config = GlobalConfig(**config)
        self.broker, self.storage = make_backend(url, self.app_name, self.config)
        for name in [n for n in BROKER_SETTINGS if n in config]:
            # a factory that drops a setting fails the lease/retry/expiry tests with no hint why: say it here
            got = getattr(self.broker, name, None)
            assert got == config[name], (
                f"{self.backend} has {name}={got!r}, not the {config[name]!r} of the GlobalConfig its factory was "
                f"called with: pass config.{name} to your broker (Broker.__init__ takes {', '.join(BROKER_SETTINGS)})")
        self._consumers: list[Broker] = []
        self._owned: list[Harness] = []
        self._foreign: list[tuple[Broker, Storage]] = []

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

    def configured(self, app_name: str | None = None, **config: Any) -> Harness:
        """The same backend URL under a fresh app name (or ``app_name``), built with ``GlobalConfig(**config)``
        (``lease_seconds``, ``max_deliveries``, ``result_ttl``, ...); closed with this harness."""
        other = Harness(self.url, queues=self.queues, app_name=app_name, **config)
        self._owned.append(other)
        return other

    def foreign_storage(self) -> Storage:
        """A storage this backend cannot write itself (an in-memory one of its own): what a user gets who pairs
        the broker with another storage. The broker must then keep it in step through the Storage API."""
        pair = make_backend("memory://", self.app_name, self.config)
        self._foreign.append(pair)
        return pair[1]

    def inject_raw(self, body: bytes, *, queue: str = "default", priority: int = 0, uuid: str = "") -> None:
        """Put ``body`` on ``queue`` unchecked, as a foreign producer (or a corrupted write) would.

        The backend's test hook ``enqueue_raw(queue, body, priority, uuid)`` does it: a backend without one
        cannot be checked against bad messages, so the test fails and says what to add."""
        raw = getattr(self.broker, "enqueue_raw", None)
        if raw is None:
            raise AssertionError(f"{self.backend} has no enqueue_raw(queue, body, priority, uuid): add it (write the "
                                 "bytes as a message, no record) so the contract can check how bad messages end")
        raw(queue, body, priority, uuid)

    async def record(self, uuid: str, queue: str = "default", storage: Storage | None = None) -> Task:
        """The record of ``uuid``; fails the test when there is none."""
        task = await (storage or self.storage).get(uuid, [queue])
        assert task is not None, f"{self.backend}: no record for {uuid} in queue {queue!r}"
        return task

    @contextmanager
    def capability(self, *names: str) -> Iterator[None]:
        """Run the block; a ``NotSupported`` from it ends the test as passed only when its message names this
        backend (its broker or storage class) and one of ``names`` (``"cancel"``, ``"dead-letter"``, ...).

        Why: a backend may lack an optional capability, and then every user of it must get that clear
        refusal, not a wrong answer or an ``AttributeError``; a backend that has it runs the whole block."""
        try:
            yield
        except NotSupported as exc:
            text = str(exc)
            who = (self.backend, type(self.storage).__name__)
            assert any(w in text for w in who), f"NotSupported does not name the backend ({who[0]}): {text!r}"
            assert any(n.lower() in text.lower() for n in names), \
                f"NotSupported does not name the capability ({' or '.join(names)}): {text!r}"

    async def close(self) -> None:
        for other in self._owned:
            await other.close()
        for broker, storage in self._foreign:
            await broker.close()
            await storage.close()
        for broker in self._consumers:
            await broker.close()
        await self.broker.close()
        await self.storage.close()


#: task names the contract's fetches treat as known (any other name is dead-lettered as unknown)
HANDLERS: dict[str, object] = {"add": object(), "boom": object()}


def envelope(name: str = "add", *, prio: int = 0, queue: str = "default", retry: int = 0,
             parent: str | None = None, args: Sequence[Any] = (1, 2), unique: str | None = None,
             **kw: Any) -> Envelope:
    """A fresh call of ``name`` (a new uuid, created now); ``unique`` claims that key for 60 s at enqueue."""
    if unique is not None:
        kw["meta"] = {**kw.get("meta", {}), META_UNIQUE: [unique, 60]}
    return Envelope(uuid=str(uuid.uuid4()), task_name=name, args=list(args), priority=prio, queue=queue,
                    created_at=time.time(), retry=retry, retry_parent_uuid=parent, **kw)


def the_envelope(d: Delivery) -> Envelope:
    """The decoded call of a runnable delivery."""
    assert d.envelope is not None, d
    return d.envelope


def uuids(ds: Sequence[Delivery]) -> list[str]:
    """The uuids of runnable deliveries, in hand-out order."""
    return [the_envelope(d).uuid for d in ds]


async def fetch(broker: Broker, count: int = 100, block: float = 0.0) -> tuple[list[Delivery], list[Any]]:
    """Fetch and decode as the worker does: ``(runnable deliveries, bad ones)``."""
    ready: list[Delivery] = []
    bad: list[Any] = []
    for queue, flat in await broker.fetch(count, block):
        core.decode_batch(queue, flat, HANDLERS, 1 << 20, ready, bad)
    return ready, bad


async def fetch_until(broker: Broker, timeout: float) -> list[Delivery]:
    """Fetch like a worker (blocking reads) until something runnable comes or ``timeout`` runs out."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        ready, bad = await fetch(broker, block=min(left, 1.0))
        assert bad == [], bad
        if ready:
            return ready
    return []


def success(d: Delivery, value: Any = None) -> Outcome:
    """The outcome of ``d`` returning ``value``."""
    return (d, "success", core.encode(value), "", "")


def failure(d: Delivery, traceback: str, retry_child: str = "", status: str = "error") -> Outcome:
    """The outcome of ``d`` failing (or, with ``status="cancel"``, cancelled) with ``traceback``."""
    return (d, status, core.encode(None), traceback, retry_child)


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
