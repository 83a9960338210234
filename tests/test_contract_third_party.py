"""The contract suite is usable by a third party, and it catches a broken backend (issue 12).

A package outside ours (a module and its ``*.dist-info`` on ``PYTHONPATH``, as ``pip install`` leaves them)
registers backends under schemes of its own through the ``qtasks_fast.backends`` entry point group, and runs
``pytest`` on a file of one-line classes, ``class TestX(BackendContract): backend_url = "x://"``, in a
directory with no configuration of ours (pytest-asyncio in its default strict mode). What a backend author
relies on: a correct backend passes every test; one that lacks capabilities passes by refusing them with
``NotSupported`` naming backend and capability, never by a skip; a vague refusal, a backend that loses a
settled result and one that hands an acked message out again fail.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from qtasks_fast.testing.contract import BackendContract

#: the third party's backends: the memory backend's classes under their own names, some deliberately broken
BACKENDS = '''
import copy

from qtasks_fast.abc import Broker, NotSupported
from qtasks_fast.backends.memory.broker import InMemoryBroker
from qtasks_fast.backends.memory.storage import InMemoryStorage


class XBroker(InMemoryBroker):
    """A correct backend."""


class LackingBroker(Broker):
    """The core contract only, no capability declared (no delays, unique keys, cancel, dead-letter management,
    ...): a broker wrapping a client, here the memory broker."""

    def __init__(self, **settings):
        super().__init__(**settings)
        self.inner = InMemoryBroker(**settings)

    def fused(self, storage):
        return self.inner.fused(storage)

    def enqueue_raw(self, queue, body, priority=0, uuid=""):
        self.inner.enqueue_raw(queue, body, priority, uuid)

    async def enqueue(self, envelopes, storage, wait=False):
        return await self.inner.enqueue(envelopes, storage, wait)

    def enqueue_sync(self, envelopes, storage, wait=False):
        return self.inner.enqueue_sync(envelopes, storage, wait)

    async def start(self, consumer, worker_id, queues, storage):
        self.inner = copy.copy(self.inner)  # per consumer, as the worker copies this broker
        await self.inner.start(consumer, worker_id, queues, storage)

    async def fetch(self, count, block):
        return await self.inner.fetch(count, block)

    async def settle(self, outcomes, storage, retries):
        await self.inner.settle(outcomes, storage, retries)

    async def renew(self, deliveries):
        return await self.inner.renew(deliveries)

    async def release(self, deliveries):
        await self.inner.release(deliveries)

    async def dead_letter(self, items, storage):
        await self.inner.dead_letter(items, storage)

    async def close(self):
        await self.inner.close()


class VagueBroker(XBroker):
    """Refuses claims without saying who refuses what."""

    async def claim(self, key, ttl):
        raise NotSupported(object(), "this")


class LossyBroker(XBroker):
    """Acks every outcome but stores no returned value."""

    async def settle(self, outcomes, storage, retries):
        await super().settle([(d, s, b"\\xc0", tb, child) for d, s, _, tb, child in outcomes], storage, retries)


class RedeliveringBroker(XBroker):
    """Hands every settled message out again."""

    async def settle(self, outcomes, storage, retries):
        await super().settle(outcomes, storage, retries)
        for d, *_ in outcomes:
            self.enqueue_raw(d.queue, d.raw, d.prio, d.envelope.uuid)


class Factory:
    def __init__(self, broker_class):
        self.broker_class = broker_class

    def check_url(self, url):
        pass

    def __call__(self, url, app_name, config, defined_in):
        broker = self.broker_class(app_name=app_name, priority_levels=config.priority_levels,
                                   lease_seconds=config.lease_seconds, max_deliveries=config.max_deliveries,
                                   result_ttl=config.result_ttl)
        state = getattr(broker, "inner", broker).state
        return broker, InMemoryStorage(state=state, app_name=app_name, result_ttl=config.result_ttl)


good, lacking, vague = Factory(XBroker), Factory(LackingBroker), Factory(VagueBroker)
lossy, redelivering = Factory(LossyBroker), Factory(RedeliveringBroker)
'''

SCHEMES = ("good", "lacking", "vague", "lossy", "redelivering")
#: the suite each backend runs: all of it, the backend without capabilities included (its storage has the query
#: side, so the query contract runs on what that broker can make and accepts the refusals of the rest)
SUITES = {s: "BackendContract" for s in SCHEMES}

#: the third party's tests: one line of configuration per backend
TESTS = "from qtasks_fast.testing.contract import BackendContract\n" + "".join(
    f'\n\nclass Test{s.capitalize()}({SUITES[s]}):\n    backend_url = "x{s}://"\n' for s in SCHEMES)


def _install(root: Path) -> None:
    (root / "x_backends.py").write_text(BACKENDS)
    info = root / "x_backends-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: x-backends\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[qtasks_fast.backends]\n" + "".join(f"x{s} = x_backends:{s}\n" for s in SCHEMES))


def test_a_third_party_runs_the_suite_and_it_fails_broken_backends(tmp_path: Path) -> None:
    site, project = tmp_path / "site", tmp_path / "project"
    site.mkdir()
    project.mkdir()
    _install(site)
    (project / "test_x.py").write_text(TESTS)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    report = tmp_path / "report.xml"
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}",
                          "test_x.py"], cwd=project, env=env, capture_output=True, text=True, timeout=600)
    assert report.exists(), run.stdout[-3000:] + run.stderr[-3000:]
    outcome: dict[tuple[str, str], str] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        outcome[(case.get("classname", "").rsplit(".", 1)[-1], case.get("name", ""))] = kinds[0] if kinds else "passed"
    suites = {"BackendContract": BackendContract}
    for scheme in SCHEMES:  # every test ran for every backend: nothing skipped, nothing missing
        names = sorted(n for n in dir(suites[SUITES[scheme]]) if n.startswith("test_"))
        assert len(names) >= 30
        cls = f"Test{scheme.capitalize()}"
        assert sorted(n for c, n in outcome if c == cls) == names, cls
    assert "skipped" not in outcome.values()

    def failed(cls: str) -> set[str]:
        return {n for (c, n), kind in outcome.items() if c == cls and kind != "passed"}

    assert failed("TestGood") == set(), run.stdout[-5000:]
    assert failed("TestLacking") == set(), run.stdout[-5000:]  # each missing capability refused clearly
    assert failed("TestVague") == {"test_claim_is_granted_once_per_ttl", "test_flush_all_deletes_this_app_only"}
    assert "NotSupported does not name the backend (VagueBroker)" in run.stdout
    lossy = failed("TestLossy")
    assert {"test_enqueue_fetch_settle_get", "test_wait_blocks_until_settled",
            "test_wait_follows_the_retry_chain"} <= lossy
    assert "test_enqueue_fetch_settle_get" in failed("TestRedelivering")
    assert run.returncode == 1
