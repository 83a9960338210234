"""What ``inspect``, logs and errors show of a backend: a third-party broker or storage that defines no
``__repr__`` is named by its class, with its URL (passwords hidden) and app when it keeps them, not
``<acme.AcmeBroker object at 0x7f...>`` (issue 12)."""

from __future__ import annotations

from typing import Any

from qtasks_fast import QueueTasks, control
from qtasks_fast.abc import Broker, Storage


class AcmeBroker(Broker):
    """A broker as a third party writes one: the base's settings plus its own ``url``; no ``__repr__``."""

    def __init__(self, url: str, **settings: Any) -> None:
        super().__init__(**settings)
        self.url = url

    async def enqueue(self, envelopes: Any, storage: Any, wait: bool = False) -> None:
        return None

    async def start(self, consumer: str, worker_id: str, queues: Any, storage: Any) -> None:
        return None

    async def fetch(self, count: int, block: float) -> Any:
        return []

    async def settle(self, outcomes: Any, storage: Any, retries: Any) -> None:
        return None

    async def renew(self, deliveries: Any) -> None:
        return None

    async def release(self, deliveries: Any) -> None:
        return None

    async def dead_letter(self, deliveries: Any, reason: str) -> None:
        return None


class PlainStorage(Storage):
    """The bare Storage contract, no URL and no app name kept."""

    async def create(self, envelopes: Any, wait: bool = False) -> None:
        return None

    async def save(self, outcomes: Any, worker_id: str) -> None:
        return None

    async def get(self, uuid: str, queues: Any) -> None:
        return None

    async def wait(self, uuid: str, queues: Any, timeout: float, fresh: bool = False) -> None:
        return None


def test_a_third_party_broker_is_named_with_its_redacted_url_in_inspect() -> None:
    broker = AcmeBroker("kafka://shop:s3cret@kafka:9092/?token=t0k", app_name="shop")
    assert repr(broker) == "AcmeBroker('kafka://shop:***@kafka:9092/?token=***', app='shop')"
    app = QueueTasks("shop", broker_url="memory://")
    app._broker = broker
    shown = control.inspect(app)["broker"]
    assert shown == repr(broker) and "s3cret" not in shown and "t0k" not in shown


def test_a_storage_without_url_or_app_is_named_by_its_class() -> None:
    assert repr(PlainStorage()) == "PlainStorage()"
