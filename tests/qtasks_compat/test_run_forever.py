"""``app.run_forever()`` (QTasks): a plain ``python app.py`` serves the app; several such processes of one app
serve side by side; what it cannot honour is refused (issue 11, item 1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from qtasks_compat.compat_server import Server, load_app_module

APP = """
from qtasks_fast import QueueTasks

app = QueueTasks(name="{name}")


@app.task(name="whoami")
def whoami(n: int) -> int:
    return n


if __name__ == "__main__":
    app.run_forever(num_workers=2)
"""


def app_file(tmp_path: Path, name: str) -> Path:
    script = tmp_path / "shop.py"
    script.write_text(APP.format(name=name))
    return script


def test_two_processes_of_one_app_serve_side_by_side(tmp_path: Path) -> None:
    script = app_file(tmp_path, "side-by-side")
    app = load_app_module(script).app
    logs = [tmp_path / f"server{i}" / "server.log" for i in (1, 2)]
    servers = []
    try:
        for log in logs:
            log.parent.mkdir()
            servers.append(Server(script, log))
        for server in servers:
            server.wait_serving()  # the second does not wait for the first one's consumer name
        done = [app.add_task("whoami", n, timeout=30) for n in range(6)]
        assert [t.returning if t else None for t in done] == list(range(6))
        ids = {server.output().split("serving queues")[0].rsplit("worker ", 1)[1].strip() for server in servers}
        assert len(ids) == 2
    finally:
        for server in servers:
            assert server.stop() == 0, server.output()
        app.close()


def test_run_forever_refuses_what_it_cannot_honour(tmp_path: Path) -> None:
    app = load_app_module(app_file(tmp_path, "refusals")).app
    with pytest.raises(TypeError, match="starter"):
        app.run_forever(starter=object())
    with pytest.raises(TypeError, match="reset_config"):
        app.run_forever(reset_config=False)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="num_workers"):
            app.run_forever(num_workers=bad)




STOPPING_APP = """
from qtasks_fast import QueueTasks

app = QueueTasks(name="{name}")


@app.task(name="shutdown")
def shutdown() -> str:
    app.stop()  # QTasks' app.stop(): the worker run_forever runs drains, and run_forever returns
    return "stopping"


if __name__ == "__main__":
    app.run_forever()
    print("run_forever returned", flush=True)
"""


def test_app_stop_ends_run_forever(tmp_path: Path) -> None:
    script = tmp_path / "stopping.py"
    script.write_text(STOPPING_APP.format(name="stopping"))
    app = load_app_module(script).app
    log = tmp_path / "server" / "server.log"
    log.parent.mkdir()
    server = Server(script, log)
    try:
        server.wait_serving()
        done = app.add_task("shutdown", timeout=30)
        assert done is not None and done.returning == "stopping"
        assert server.proc.wait(30) == 0, server.output()  # no signal sent: it stopped by itself
        assert "run_forever returned" in server.output()
        app.stop()  # no worker of the app serves in this process: nothing to do
    finally:
        server.stop()
        app.close()
