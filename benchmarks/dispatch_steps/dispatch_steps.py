"""Where an idle worker's dispatch time goes, step by step (issue 16, session 10 helper h16d2).

    python benchmarks/dispatch_steps/dispatch_steps.py N TAG            # N stamp trips + N raw XADD trips
    CALLGRIND=1 python benchmarks/dispatch_steps/dispatch_steps.py N TAG   # the worker under callgrind
    STRACE=1 ...                                                        # the worker under strace -f -tt -T

A private redis-server on a free port, one worker process (``qtasks-fast run --processes 1``) whose functions
``sitecustomize.py`` (next to this file, put on the worker's PYTHONPATH) wraps with ``time.monotonic_ns()``
stamps, written to /tmp/h16d2/probe-TAG.<pid>; the producer's ``SyncDirect._execute`` is wrapped here. Prints
the p25/p50/p75 of each step, matched per task uuid. Env ``PY``/``WTROOT``: the interpreter and tree to run
(another worktree's, for a before/after). A measuring tool, not a test: the probes add ~1 µs per step.
"""
import glob
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid

import redis
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
N = int(sys.argv[1]) if len(sys.argv) > 1 else 400
TAG = sys.argv[2] if len(sys.argv) > 2 else "x"
PY = os.environ.get("PY", f"{ROOT}/.venv/bin/python")
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
rs = subprocess.Popen(["redis-server", "--port", str(port), "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"],
                      stdout=subprocess.DEVNULL)
url = f"redis://127.0.0.1:{port}/0"
time.sleep(0.3)
os.makedirs("/tmp/h16d2", exist_ok=True)
out = f"/tmp/h16d2/probe-{TAG}"
for f in glob.glob(out + ".*"): os.unlink(f)
env = dict(os.environ, QTASKS_BENCH_APP="pb", QTASKS_BROKER_URL=url, QTASKS_LOG_LEVEL="INFO",
           PYTHONPATH=os.path.dirname(os.path.abspath(__file__)) + ":" + os.environ.get("WTROOT", ROOT), QTF_PROBE_OUT=out)
log = open(f"/tmp/h16d2/worker-{TAG}.log", "wb")
cwd = os.environ.get("WTROOT", ROOT)
CG = os.environ.get("CALLGRIND")
if CG: env.pop("QTF_PROBE_OUT")
w = subprocess.Popen((["strace", "-f", "-tt", "-T", "-o", f"/tmp/h16d2/strace-{TAG}"] if os.environ.get("STRACE") else [])
                     + (["valgrind", "--tool=callgrind", f"--callgrind-out-file=/tmp/h16d2/cgw-{TAG}.%p"] if CG else []) + [PY, "-m", "qtasks_fast", "-A", "qtasks_fast.benchmarks.apps:app", "run", "--processes", "1"],
                     env=env, stdout=log, stderr=subprocess.STDOUT, cwd=cwd)
sys.path.insert(0, cwd)
from qtasks_fast.benchmarks.apps import make_app
from qtasks_fast.backends.redis import direct
mono = time.monotonic_ns
P = {}
_ex = direct.SyncDirect._execute
def _execute(self, cmd):
    P.setdefault("send", mono())
    r = _ex(self, cmd)
    P.setdefault("reply", mono())
    return r
direct.SyncDirect._execute = _execute
app = make_app("pb", url)
deadline = time.time() + (300 if CG else 30)
while b"serving" not in open(f"/tmp/h16d2/worker-{TAG}.log", "rb").read():
    time.sleep(0.1); assert time.time() < deadline and w.poll() is None
r = redis.Redis.from_url(url)
# raw streams consumer
key = "raw:" + uuid.uuid4().hex
raw = subprocess.Popen([PY, "-m", "qtasks_fast.benchmarks._raw", "stamp", url, key, "g", "c", key + ":ready"], cwd=cwd)
r.blpop([key + ":ready"], timeout=30)
trips = []
def ours():
    P.clear()
    t0 = mono()
    task = app.add_task("stamp")
    P0 = dict(P)
    done = app.wait(task.uuid, timeout=5)
    return task.uuid, t0, P0, int(done.returning * 1e9)
def rawtrip():
    u = str(uuid.uuid4()).encode()
    t0 = mono()
    r.xadd(key, {"u": u})
    got = r.blpop([key.encode() + b":reply:" + u], timeout=5)
    r.unlink(key.encode() + b":reply:" + u)
    return int(float(got[1]) * 1e9) - t0
if CG:
    for _ in range(N): ours()
    w.terminate(); w.wait(120); raw.kill(); rs.terminate(); rs.wait(); sys.exit(0)
for _ in range(50): ours(); rawtrip()
ourr, raws = [], []
for b in range(N // 100):
    ourr += [ours() for _ in range(100)]
    raws += [rawtrip() for _ in range(100)]
r.xadd(key, {"stop": 1}); raw.wait(10)
w.terminate(); w.wait(20); rs.terminate(); rs.wait()
rows = {}
for f in glob.glob(out + ".*"):
    for line in open(f):
        d = dict(kv.split("=") for kv in line.split())
        u = d.pop("uuid", None); rows[u] = {k: int(v) for k, v in d.items()}
keys = ["send", "reply", "feed", "read", "blkret", "dec", "disp", "rr", "dispret", "body"]
steps = {}
tot = []
for u, t0, P0, body in ourr:
    wr = rows.get(str(u))
    if not wr: continue
    ts = {"call": t0, "send": P0["send"], "reply": P0["reply"], **wr, "body": body}
    tot.append(body - t0)
    order = ["call", "send", "feed", "read", "blkret", "dec", "disp", "rr", "body"]
    for a, b2 in zip(order, order[1:]):
        if a in ts and b2 in ts:
            steps.setdefault(f"{a}->{b2}", []).append(ts[b2] - ts[a])
    steps.setdefault("blk-send (neg: worker blocked first)", []).append(ts["blk"] - ts["send"])
    steps.setdefault("send->reply(producer)", []).append(ts["reply"] - ts["send"])
    steps.setdefault("feed->reply(producer)", []).append(ts["reply"] - ts["feed"])
    if "dispret" in ts: steps.setdefault("disp->dispret", []).append(ts["dispret"] - ts["disp"])
print(f"matched {len(tot)}/{len(ourr)}")
print(f"ours start p50 {statistics.median(tot)/1000:.1f} µs; raw streams p50 {statistics.median(raws)/1000:.1f} µs")
for k, v in steps.items():
    print(f"  {k:28s} p50 {statistics.median(v)/1000:7.1f} µs   p25 {sorted(v)[len(v)//4]/1000:7.1f}  p75 {sorted(v)[3*len(v)//4]/1000:7.1f}")
