"""Throwaway probes (h16d2): time.monotonic_ns stamps on the worker's wake -> body path."""
import os, time
if os.environ.get("QTF_PROBE_OUT"):
    import asyncio
    mono = time.monotonic_ns
    OUT = os.environ["QTF_PROBE_OUT"]
    st = {"blocked": False, "cur": None, "rows": []}

    def flush():
        if st["rows"]:
            with open(f"{OUT}.{os.getpid()}", "a") as f:
                for r in st["rows"]:
                    f.write(" ".join(f"{k}={v}" for k, v in r.items()) + "\n")
            st["rows"] = []

    _feed = asyncio.StreamReader.feed_data
    FEEDS = {}
    def feed_data(self, data):
        FEEDS.setdefault(id(self), mono())
        return _feed(self, data)
    asyncio.StreamReader.feed_data = feed_data

    from qtasks_fast.backends.redis import direct, broker as rb
    _read = direct.DirectConnections._read
    async def _read2(self, conn):
        rid = id(getattr(conn, "_reader", None))
        FEEDS.pop(rid, None)
        mine = st.pop("xrg", False)
        r = await _read(self, conn)
        if mine and st["cur"] is not None and "read" not in st["cur"]:
            st["cur"]["read"] = mono()
            f = FEEDS.get(rid)
            if f: st["cur"]["feed"] = f
        FEEDS.pop(rid, None)
        return r
    _exe = direct.DirectConnections.execute
    async def execute(self, cmd, *, retry_stale=False):
        if isinstance(cmd, bytes) and b"XREADGROUP" in cmd[:40] and st["blocked"]:
            st["xrg"] = True
        return await _exe(self, cmd, retry_stale=retry_stale)
    direct.DirectConnections.execute = execute
    direct.DirectConnections._read = _read2

    _block = rb.RedisBroker._block
    async def _block2(self, count, block, rec):
        if len(st["rows"]) >= 50:
            flush()
        st["cur"] = {"blk": mono()}
        st["blocked"] = True
        try:
            out = await _block(self, count, block, rec)
        finally:
            st["blocked"] = False
        if out:
            st["cur"]["blkret"] = mono()
            st["rows"].append(st["cur"])
        else:
            st["cur"] = None
        return out
    rb.RedisBroker._block = _block2

    from qtasks_fast import _corelib
    _dec = _corelib.decode_batch
    def decode_batch(*a):
        r = _dec(*a)
        if st["cur"] is not None and "dec" not in st["cur"]:
            st["cur"]["dec"] = mono()
        return r
    _corelib.decode_batch = decode_batch

    from qtasks_fast.worker import worker as ww, eager
    _disp = ww.Worker.dispatch
    def dispatch(self, ds):
        c = st["cur"]
        if c is not None and "disp" not in c:
            c["disp"] = mono()
        _disp(self, ds)
        if c is not None and "dispret" not in c:
            c["dispret"] = mono()
    ww.Worker.dispatch = dispatch

    rc = eager.run_core
    _rr = rc.run_ready
    def run_ready(jobs, ex, log):
        c = st["cur"]
        if c is not None and "rr" not in c and jobs:
            c["rr"] = mono()
            c["uuid"] = jobs[0].envelope.uuid
        return _rr(jobs, ex, log)
    rc.run_ready = run_ready
