"""Redis time per call of a few redis.lua ops, FCALL of the function library vs EVALSHA of the same file (issue 16).

    .venv/bin/python benchmarks/lua_call_cost.py [--n 4000] [--rounds 3]

Starts a private redis-server (no persistence) on a free port, loads both forms, and sends each op ``n`` times per
round in each mode, the modes alternating within every round; the cost is INFO commandstats ``usec / calls`` of
FCALL or EVALSHA (the server's time in the call, its inner commands included), the median of the rounds. Ops:
``add`` (one task's enqueue, near the top of the file), ``stats`` (read-only, through the no-writes function),
``unslot`` (one ZREM, the last op in the file: what an EVALSHA pays for the definitions above it).
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import time
import uuid
from typing import Any

import redis

from qtasks_fast.backends.redis import script

P = "qtf:{luacost:default}"
OPS = ("add", "stats", "unslot")


def _args(op: str) -> list[Any]:
    if op == "add":  # prio uuid blob name created event (msgpack of [uuid, 'new', name, ''])
        return ["add", "1", "0", str(uuid.uuid4()), b"x" * 60, "t", "1700000000000", b"\x94\xa1u\xa3new\xa1t\xa0"]
    if op == "stats":
        return ["stats", "0", "luacost", "1", "0"]
    return ["unslot", "0", "k", "tok"]


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        r = redis.Redis(port=port)
        for _ in range(100):
            try:
                r.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        r.execute_command("FUNCTION", "LOAD", "REPLACE", script.LIBRARY)
        r.script_load(script.LUA)
        cost: dict[tuple[str, str], list[float]] = {}
        for _ in range(a.rounds):
            for op in OPS:
                for mode in ("evalsha", "fcall"):
                    fn = script.FUNCTION_RO if op in script.READ_ONLY else script.FUNCTION
                    head = ("FCALL", fn) if mode == "fcall" else ("EVALSHA", script.SHA)
                    r.config_resetstat()
                    for j in range(0, a.n, 500):
                        pipe = r.pipeline(transaction=False)
                        for _ in range(min(500, a.n - j)):
                            pipe.execute_command(*head, 1, P, *_args(op))
                        pipe.execute()
                    st: Any = r.info("commandstats")[f"cmdstat_{mode}"]
                    cost.setdefault((op, mode), []).append(st["usec"] / st["calls"])
        for op in OPS:
            e, f = statistics.median(cost[(op, "evalsha")]), statistics.median(cost[(op, "fcall")])
            print(
                f"op {op}: EVALSHA {e:.1f} µs, FCALL {f:.1f} µs per call (median of {a.rounds} rounds of {a.n}); "
                f"FCALL/EVALSHA {f / e:.2f}"
            )
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
