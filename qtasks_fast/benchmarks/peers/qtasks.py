"""QTasks peer (PyPI ``qtasks``): asyncio app on its Redis broker/storage, 2 ``qtasks run`` processes."""

from __future__ import annotations

import logging
from typing import Any

from qtasks.asyncio import QueueTasks

from ._base import PeerBench, redis_url, script

DB = 15
URL = redis_url(DB)
NAME = "peers"

app = QueueTasks(name=NAME, broker_url=URL)
# QTasks logs every task at INFO by default; all peers run their workers at WARNING
app.config.logs_default_level_server = logging.WARNING
app.config.logs_default_level_client = logging.WARNING


@app.task(name="noop")
async def noop() -> int:
    return 1


@app.task(name="echo")
async def echo(x: int) -> int:
    return x


class Bench(PeerBench):
    name = "qtasks"
    dist = "qtasks"
    db = DB
    worker_desc = "2 x qtasks -A app run (asyncio app, 4 coroutine workers each)"

    def worker_commands(self) -> list[list[str]]:
        cmd = [script("qtasks"), "-A", f"{__name__}:app", "run"]
        return [cmd, list(cmd)]

    async def enqueue(self, task: str, arg: int = 0) -> Any:
        t = await (app.add_task("echo", arg) if task == "echo" else app.add_task("noop"))
        return str(t.uuid)

    def probe(self, pipe: Any, handle: Any) -> None:
        pipe.hget(f"{NAME}:{handle}", "status")

    def is_done(self, reply: Any) -> bool:
        return reply in (b"success", "success")
