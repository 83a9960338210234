"""URL scheme -> backend through the ``qtasks_fast.backends`` registry (issue 12): a third-party package adds a
scheme with an entry point, without touching ours; code adds one with ``register_backend``; an unknown scheme's
error lists what is registered; our own schemes are declared the way a third party declares theirs."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from importlib.metadata import distribution
from pathlib import Path

import pytest

from qtasks_fast import GlobalConfig, QueueTasks, backends
from qtasks_fast.abc import BackendFactory, Broker, Storage
from qtasks_fast.backends.memory.broker import InMemoryBroker
from qtasks_fast.backends.memory.storage import InMemoryStorage

#: a third-party backend: the memory backend under its own scheme and class names
FAKE_MODULE = '''
from qtasks_fast.backends.memory.broker import InMemoryBroker
from qtasks_fast.backends.memory.storage import InMemoryStorage


class FakeBroker(InMemoryBroker):
    pass


class FakeBackend:
    def check_url(self, url):
        if url == "fake://":
            raise ValueError("fake:// needs a name: write fake://<name>")

    def __call__(self, url, app_name, config, defined_in):
        broker = FakeBroker(app_name=app_name)
        return broker, InMemoryStorage(state=broker.state, app_name=app_name)


factory = FakeBackend()
'''


def _install_fake_distribution(root: Path) -> None:
    """What ``pip install`` of a package declaring ``[project.entry-points."qtasks_fast.backends"]`` leaves."""
    (root / "fake_qtasks_backend.py").write_text(FAKE_MODULE)
    info = root / "fake_qtasks_backend-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-qtasks-backend\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[qtasks_fast.backends]\nfake = fake_qtasks_backend:factory\n")


def _run(code: str, pythonpath: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(pythonpath), os.environ.get("PYTHONPATH", "")])}
    env.pop("QTASKS_BROKER_URL", None)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=60, env=env, cwd=pythonpath)


def test_a_third_party_entry_point_serves_its_scheme(tmp_path: Path) -> None:
    _install_fake_distribution(tmp_path)
    proc = _run("""
        from qtasks_fast import QueueTasks
        app = QueueTasks("thirdparty", broker_url="fake://x")
        print(type(app.broker).__name__, type(app.storage).__name__)
        for url in ("fake://", "nope://x"):
            try:
                QueueTasks("other", broker_url=url).broker
            except ValueError as exc:
                print(exc)
        """, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    built, refused, unknown = proc.stdout.splitlines()
    assert built == "FakeBroker InMemoryStorage"
    assert refused == "fake:// needs a name: write fake://<name> (from the app's broker_url)"
    assert unknown.startswith("unsupported broker URL 'nope://x': use redis://") and "fake://" in unknown


def test_without_the_distribution_the_scheme_is_unknown(tmp_path: Path) -> None:
    proc = _run("""
        from qtasks_fast import QueueTasks
        QueueTasks("thirdparty", broker_url="fake://x").broker
        """, tmp_path)
    assert proc.returncode != 0 and "unsupported broker URL 'fake://x'" in proc.stderr


@pytest.fixture
def registered() -> Iterator[None]:
    """register_backend changes the process: leave it as it was."""
    before = dict(backends._registered)
    yield
    backends._registered.clear()
    backends._registered.update(before)


class _Mine:
    def __init__(self) -> None:
        self.urls: list[str | None] = []

    def check_url(self, url: str) -> None:
        pass

    def __call__(self, url: str | None, app_name: str, config: GlobalConfig,
                 defined_in: str | None) -> tuple[Broker, Storage]:
        self.urls.append(url)
        broker = InMemoryBroker(app_name=app_name)
        return broker, InMemoryStorage(state=broker.state, app_name=app_name)


def test_register_backend_in_code_and_the_error_lists_it(registered: None) -> None:
    mine = _Mine()
    assert isinstance(mine, BackendFactory)
    backends.register_backend("mine://", mine)
    app = QueueTasks("registered", broker_url="mine://queue", config=GlobalConfig(unique_ttl=42.0))
    assert isinstance(app.broker, InMemoryBroker) and mine.urls == ["mine://queue"]
    assert app.broker.unique_ttl == 42.0  # type: ignore[attr-defined]  # set for every backend, as before
    with pytest.raises(ValueError, match=r"^unsupported broker URL 'what://x': use redis://, rediss://, unix://, "
                                         r"sqlite://, memory://, postgres://, postgresql:// or mine://$"):
        backends.check_url("what://x")


def test_register_backend_refuses_a_scheme_that_cannot_be_one(registered: None) -> None:
    with pytest.raises(ValueError, match="a scheme is lowercase letters"):
        backends.register_backend("Bad Scheme", _Mine())


#: schemes of ours registered only through the entry point group, as a third-party package registers its own
PLUGGED_IN = {"postgresql": "qtasks_fast.backends.postgres:factory",
              "postgres": "qtasks_fast.backends.postgres:factory"}


def test_the_builtin_schemes_are_declared_as_entry_points() -> None:
    """pyproject.toml (as installed) declares the table the registry falls back on, plus the PostgreSQL backend,
    which only the entry point names (it is a plug-in: the registry has no fallback for it)."""
    declared = {ep.name: ep.value for ep in distribution("qtasks-fast").entry_points if ep.group == backends.GROUP}
    assert declared == {**backends.BUILTIN, **PLUGGED_IN}
    assert not PLUGGED_IN.keys() & backends.BUILTIN.keys()
    for scheme in PLUGGED_IN:
        assert isinstance(backends.backend_factory(scheme), BackendFactory)
    for scheme in backends.BUILTIN:
        assert isinstance(backends.backend_factory(scheme), BackendFactory)



def test_the_contract_harness_says_when_a_factory_drops_a_broker_setting(registered: None) -> None:
    """The contract's lease, retry and expiry tests build the backend with short settings; a factory that
    ignores them (``_Mine`` builds its broker with defaults) would fail those tests with timeouts and no hint.
    The harness names the setting instead."""
    from qtasks_fast.testing.contract.harness import Harness

    backends.register_backend("mine", _Mine())
    with pytest.raises(AssertionError, match=r"InMemoryBroker has lease_seconds=30.0, not the 0.3 of the GlobalConfig "
                                             r"its factory was called with: pass config.lease_seconds to your broker"):
        Harness("mine://", lease_seconds=0.3)
    assert Harness("memory://", lease_seconds=0.3, max_deliveries=2).broker.lease_seconds == 0.3  # passed on
