"""Serve an ASGI app (the WebView: :func:`qtasks_fast.web.create_app`) with uvicorn in a daemon thread on a free
loopback port, for browser tests and the screenshots script (``docs/screenshots.py``):

    with WebServer(create_app(app, token="t")) as base_url:   # http://127.0.0.1:<port>
        page.goto(base_url + "/signin")
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Any


class WebServer:
    """``with WebServer(asgi) as url``: uvicorn serving ``asgi`` until the block ends (then it stops, draining)."""

    def __init__(self, asgi: Any, host: str = "127.0.0.1", port: int = 0, start_timeout: float = 10.0) -> None:
        import uvicorn

        if not port:
            with socket.socket() as s:
                s.bind((host, 0))
                port = int(s.getsockname()[1])
        self.url = f"http://{host}:{port}"
        config = uvicorn.Config(asgi, host=host, port=port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.start_timeout = start_timeout
        self._thread = threading.Thread(target=self.server.run, name="qtasks-web", daemon=True)

    def __enter__(self) -> str:
        self._thread.start()
        deadline = time.monotonic() + self.start_timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the web server did not start on {self.url}: is the port free?")
            time.sleep(0.02)
        return self.url

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.server.should_exit = True
        self._thread.join(10)
