"""What ``pip install qtasks-fast`` puts on a user's machine (issue 10, item 13).

A non-editable install must not add a top-level ``benchmarks`` package (it would clash with a user's
own); the bundled suites live in ``qtasks_fast.benchmarks``, so ``qtasks-fast bench`` works from an
installed package, and write their results under the current directory, never into site-packages.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT


def test_the_wheel_has_no_top_level_benchmarks_package(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(ROOT), "-w", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("qtasks_fast-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"qtasks_fast"}, sorted(tops)
    assert "qtasks_fast/benchmarks/__main__.py" in names and "qtasks_fast/benchmarks/peers/_harness.py" in names
    # the Redis backend's script travels with its package, and the built-in schemes are declared entry points
    assert "qtasks_fast/backends/redis/redis.lua" in names
    # the WebView's templates and assets too: it serves them from the package, never from a CDN
    web = ROOT / "qtasks_fast" / "web"
    shipped = [p.relative_to(ROOT).as_posix() for d in ("templates", "static") for p in (web / d).rglob("*")
               if p.is_file()]
    assert shipped and not set(shipped) - set(names), sorted(set(shipped) - set(names))
    # the gRPC protocols ship with their generated stubs (issue 14): clients in other languages load the .proto
    for path in ("grpc/v1/qtasks_fast.proto", "grpc/v1/qtasks_fast_pb2.py", "grpc/v1/qtasks_fast_pb2_grpc.py",
                 "grpc/v1/qtasks_fast_pb2.pyi", "plugins/grpc/core/qtasks.proto"):
        assert f"qtasks_fast/{path}" in names, path
    (eps,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    assert "[qtasks_fast.backends]" in zipfile.ZipFile(wheel).read(eps).decode()


def test_bench_runs_from_any_directory_and_writes_results_there(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    proc = subprocess.run([sys.executable, "-m", "qtasks_fast", "bench", "--help"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "--suite" in proc.stdout, proc.stderr[-2000:]
    from qtasks_fast.benchmarks.__main__ import build_parser, resolve

    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(["--quick"])
    resolve(args)
    assert args.out.parent == tmp_path and args.out.name.startswith("bench-")
