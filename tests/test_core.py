"""The wire format and the dispatch core: compiled and pure-Python cores behave the same."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import msgspec

from qtasks_fast import _corelib
from qtasks_fast._corelib import _load_source
from qtasks_fast.backends.redis import pack
from qtasks_fast.schemas import Envelope
from qtasks_fast.url import redact


def test_envelope_tolerates_unknown_fields() -> None:
    newer = msgspec.msgpack.encode({"u": "id-1", "n": "add", "a": [1, 2], "zz_future_field": {"x": 1}})
    env = msgspec.msgpack.Decoder(Envelope).decode(newer)
    assert env.task_name == "add" and env.args == [1, 2] and env.kwargs == {}


def test_the_installed_core_is_compiled_unless_pure_python_is_asked_for() -> None:
    out = subprocess.run([sys.executable, "-m", "qtasks_fast", "info", "--json"], capture_output=True, text=True,
                         check=True, env={k: v for k, v in os.environ.items() if k != "QTASKS_PURE_PYTHON"})
    info = json.loads(out.stdout)
    assert info["compiled_core"] is True and info["core_module"].endswith(".so")
    assert _corelib.COMPILED is True
    pure = subprocess.run([sys.executable, "-m", "qtasks_fast", "info", "--json"], capture_output=True, text=True,
                          check=True, env={**os.environ, "QTASKS_PURE_PYTHON": "1"})
    assert json.loads(pure.stdout)["compiled_core"] is False


def _batch(n: int) -> list[object]:
    flat: list[object] = []
    for i in range(n):
        env = Envelope(uuid=str(uuid.UUID(int=i)), task_name="add" if i % 3 else "nope", args=[i, i])
        flat += [0, f"{i}-0".encode(), msgspec.msgpack.encode(env), 1]
    flat += [0, b"99-0", b"\xc1garbage", 1, 0, b"99-1", b"x" * 300, 2]
    return flat


def test_compiled_and_pure_cores_agree() -> None:
    pure = _load_source(Path(_corelib.__file__).with_name("_core.pyx"), "core_py")
    pure_pack = _load_source(Path(pack.__file__).with_name("_pack.pyx"), "pack_py")
    assert _corelib.COMPILED and pack.COMPILED, "the installed core and the Redis packing are compiled"
    handlers = {"add": object()}
    results = []
    for core, packing in ((_corelib.core, pack), (pure, pure_pack)):
        ready: list = []
        bad: list = []
        core.decode_batch("default", _batch(30), handlers, 200, ready, bad)
        outcomes = [(d, "success", core.encode(d.envelope.args[0] * 2), "", "") for d in ready]
        packed = packing.settle_args(outcomes, True, "w-0", "1")
        results.append(([d.envelope.uuid for d in ready], [(d.msg_id, r[:40]) for d, r in bad],
                        len(packed["default"][0])))
    assert results[0] == results[1]
    ready_uuids, bad, _ = results[0]
    assert len(ready_uuids) == 20  # 30 tasks, every third one unknown
    reasons = dict(bad)
    assert reasons[b"99-0"].startswith("malformed message")
    assert reasons[b"99-1"].startswith("payload of 300 bytes exceeds")
    assert reasons[b"0-0"].startswith("unknown task 'nope'")


def test_new_uuid_is_a_valid_unique_v4() -> None:
    seen = set()
    for _ in range(5000):
        u, s = _corelib.new_uuid()
        assert u.version == 4 and str(u) == s and uuid.UUID(s) == u
        seen.add(s)
    assert len(seen) == 5000


def test_new_uuid_differs_across_fork() -> None:
    r, w = os.pipe()
    _corelib.new_uuid()  # fill the pool in the parent
    pid = os.fork()
    if pid == 0:
        os.write(w, _corelib.new_uuid()[1].encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(r, 64).decode()
    assert child != _corelib.new_uuid()[1]


def test_redact_hides_passwords() -> None:
    assert redact("redis://user:secret@host:6379/0") == "redis://user:***@host:6379/0"
    assert redact("rediss://:secret@host/1?ssl_cert_reqs=none") == "rediss://:***@host/1?ssl_cert_reqs=none"
    assert redact("redis://host:6379/0") == "redis://host:6379/0"
