"""QTasks' ``qtasks.contrib.django.autodiscover_tasks`` under qtasks_fast (issue 11).

What a user relies on: in a Django project, ``autodiscover_tasks(app)`` imports ``<app>.tasks`` of every
installed app, so their tasks register and run; an app that cannot be imported, or whose tasks module raises,
is reported in the log and the other apps' tasks register all the same; ``modules=`` names other modules.
Each case runs in a subprocess: Django's settings are configured once per process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import ROOT

SCRIPT = """
import json, logging, sys
import django
from qtasks_fast import QueueTasks
from qtasks_fast.contrib.django import autodiscover_tasks
from qtasks_fast.testing import WorkerThread

logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
if sys.argv[1] == "setup":
    django.setup()  # the app registry is ready: AppConfig entries name their package through it
app = QueueTasks("dj", broker_url="memory://")
imported = autodiscover_tasks(app, *([json.loads(sys.argv[2])] if len(sys.argv) > 2 else []))
with WorkerThread(app):
    results = {name: app.add_task(name, timeout=20).returning for name in sorted(app.tasks)}
print(json.dumps({"imported": imported, "results": results}))
"""


def project(tmp_path: Path) -> Path:
    """A Django project: ``shop`` (tasks.py and jobs.py), ``blog`` through its AppConfig (tasks.py), ``broken``
    (tasks.py raises), ``plain`` (no task module), and ``missing`` (not importable) with ``WITH_MISSING`` set."""
    files = {
        "settings.py": """
            import os

            SECRET_KEY = "test"
            INSTALLED_APPS = ["django.contrib.contenttypes", "shop", "blog.apps.BlogConfig", "broken", "plain"]
            if os.environ.get("WITH_MISSING"):  # django.setup() would refuse it: only without setup
                INSTALLED_APPS.append("missing")
            """,
        "shop/__init__.py": "",
        "shop/tasks.py": """
            from qtasks_fast import shared_task

            @shared_task
            def ship() -> str:
                return "shipped"
            """,
        "shop/jobs.py": """
            from qtasks_fast import shared_task

            @shared_task
            def nightly() -> str:
                return "ran"
            """,
        "blog/__init__.py": "",
        "blog/apps.py": """
            from django.apps import AppConfig

            class BlogConfig(AppConfig):
                name = "blog"
            """,
        "blog/tasks.py": """
            from qtasks_fast import shared_task

            @shared_task
            def publish() -> str:
                return "published"
            """,
        "broken/__init__.py": "",
        "broken/tasks.py": "raise RuntimeError('broken on purpose')\n",
        "plain/__init__.py": "",
    }
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    (tmp_path / "run.py").write_text(SCRIPT)
    return tmp_path


def run(root: Path, *args: str, **extra_env: str) -> tuple[dict[str, object], str]:
    env = {**os.environ, **extra_env, "DJANGO_SETTINGS_MODULE": "settings",
           "PYTHONPATH": os.pathsep.join([str(root), str(ROOT)])}
    proc = subprocess.run([sys.executable, str(root / "run.py"), *args], cwd=root, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def test_the_tasks_of_every_installed_app_register_and_run(tmp_path: Path) -> None:
    out, err = run(project(tmp_path), "setup")
    assert out["imported"] == ["shop.tasks", "blog.tasks"]
    assert out["results"] == {"publish": "published", "ship": "shipped"}
    assert "importing broken.tasks failed" in err and "RuntimeError: broken on purpose" in err


def test_other_modules_and_settings_read_before_setup(tmp_path: Path) -> None:
    out, err = run(project(tmp_path), "no-setup", json.dumps(["jobs"]), WITH_MISSING="1")
    assert out["imported"] == ["shop.jobs"]
    assert out["results"] == {"nightly": "ran"}
    assert "WARNING qtasks_fast.django autodiscover_tasks: cannot import the installed app 'missing'" in err
    # without django.setup() the INSTALLED_APPS entries are imported as written: an AppConfig path is not a package
    assert "cannot import the installed app 'blog.apps.BlogConfig'" in err
