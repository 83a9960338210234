"""``-A module:factory``: QTasks' ``get_app`` calls a function it is given and serves the app it returns."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

from qtasks_fast.loader import AppLoadError, load_app

FACTORY_MODULE = """
from qtasks_fast import QueueTasks

calls = []

def create_app():
    calls.append(1)
    app = QueueTasks(name="factory-app", broker_url="memory://")

    @app.task
    def add(a, b):
        return a + b

    return app

def broken():
    raise RuntimeError("no settings file")

def not_an_app():
    return 42
"""


@pytest.fixture
def factory_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"factory_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(FACTORY_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_a_factory_is_called_and_its_app_served(factory_module: str) -> None:
    """Review 11 finding 8: ``-A pkg.appmod:create_app`` was refused as "a function, not a QueueTasks app"."""
    app = load_app(f"{factory_module}:create_app")
    assert app.name == "factory-app" and "add" in app.tasks
    assert sys.modules[factory_module].calls == [1]
    assert app._import_spec == f"{factory_module}:create_app"  # type: ignore[attr-defined]  # children call it too


@pytest.mark.parametrize(
    ("attr", "says"),
    [
        ("broken", "app factory {m}:broken() failed: RuntimeError: no settings file"),
        ("not_an_app", "app factory {m}:not_an_app() returned a int, not a QueueTasks app"),
    ],
)
def test_a_factory_that_gives_no_app_is_one_line(factory_module: str, attr: str, says: str) -> None:
    with pytest.raises(AppLoadError) as info:
        load_app(f"{factory_module}:{attr}")
    assert says.format(m=factory_module) in str(info.value) and "\n" not in str(info.value)
