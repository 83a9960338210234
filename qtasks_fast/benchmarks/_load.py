"""Background load for the latency suite: ``python -m qtasks_fast.benchmarks._load URL APP RATE`` enqueues no-op
tasks at RATE tasks/s (in chunks every 10 ms) until it receives SIGTERM, then prints how many it sent."""

from __future__ import annotations

import signal
import sys
import time

from qtasks_fast.benchmarks.apps import make_app


def main(url: str, app_name: str, rate: float) -> int:
    app = make_app(app_name, url)
    stop = False

    def on_term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    tick = 0.01
    per_tick = max(1, round(rate * tick))
    calls: list[tuple[str, tuple[()], dict[str, object]]] = [("noop", (), {})] * per_tick
    sent = 0
    next_at = time.monotonic()
    print("ready", flush=True)
    while not stop:
        app.add_tasks(calls)
        sent += per_tick
        next_at += per_tick / rate
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    print(sent, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
