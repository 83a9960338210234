"""``python -m qtasks_fast.benchmarks.sse_clients URL N``: N SSE clients of ``URL`` (a ``qtasks-fast web``'s
``/api/v1/events``, token from ``QTASKS_WEB_TOKEN``) in one process for the web suite's fan-out case. Prints
``connected`` once every stream is open, then on SIGTERM the events (with ``summary=true``: the frames of counts)
each client read (one line, JSON)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys


async def main(url: str, n: int) -> None:
    import httpx

    counts = [0] * n
    opened = asyncio.Event()
    ready = 0
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    headers = {"authorization": f"Bearer {os.environ['QTASKS_WEB_TOKEN']}"}
    limits = httpx.Limits(max_connections=n + 1)

    async with httpx.AsyncClient(headers=headers, timeout=None, limits=limits) as c:
        async def client(i: int) -> None:
            nonlocal ready
            async with c.stream("GET", url) as r:
                r.raise_for_status()
                ready += 1
                if ready == n:
                    opened.set()
                kind = ""
                async for line in r.aiter_lines():
                    if line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: "):
                        if kind == "error":  # the server's reason a stream ended (the log says which)
                            print(f"client {i}: {line[6:]}", file=sys.stderr, flush=True)
                            continue
                        counts[i] += 1  # an event, or with summary=true a frame of counts (a full state)
            print(f"client {i}: the stream ended", file=sys.stderr, flush=True)

        tasks = [asyncio.create_task(client(i)) for i in range(n)]
        await opened.wait()
        print("connected", flush=True)
        await stop.wait()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps(counts), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
