"""``python -m qtasks_fast.benchmarks.sse_clients URL N [URL N ...]``: N SSE clients of each ``URL`` (a
``qtasks-fast web``'s ``/api/v1/events``, token from ``QTASKS_WEB_TOKEN``) in one process for the web suite's
fan-out case. Prints ``connected`` once every stream is open, then on SIGTERM the frames each client read (one
line, JSON: events, or with ``summary=true`` frames of counts, or with ``watch=true`` "watching" and "changed"
frames), clients in the order of the arguments."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys


async def main(urls: list[str]) -> None:
    import httpx

    n = len(urls)
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
            async with c.stream("GET", urls[i]) as r:
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
                        counts[i] += 1  # an event, a frame of counts (a full state) or a change signal
            print(f"client {i}: the stream ended", file=sys.stderr, flush=True)

        tasks = [asyncio.create_task(client(i)) for i in range(n)]
        await opened.wait()
        print("connected", flush=True)
        await stop.wait()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps(counts), flush=True)


def expand(argv: list[str]) -> list[str]:
    """``URL N`` pairs as one URL per client."""
    return [url for url, n in zip(argv[::2], argv[1::2]) for _ in range(int(n))]


if __name__ == "__main__":
    asyncio.run(main(expand(sys.argv[1:])))
