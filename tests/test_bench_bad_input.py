"""``qtasks-fast bench`` with bad input: argparse's usage and one line, exit 2, before anything is measured or
written (issue 10, items 8 and 13). Nothing here runs a suite."""

from __future__ import annotations

from pathlib import Path

import pytest

from qtasks_fast.cli import main


@pytest.mark.parametrize(("args", "says"), [
    (["--suite", "nosuch"], "unknown suite 'nosuch'"),
    (["--processes", "x"], "argument --processes: 'x' is not a list of process counts"),
    (["--processes", "0"], "argument --processes: '0' is not a list of process counts"),
    (["--n", "0"], "argument --n: must be at least 1, not 0"),
    (["--repeats", "-1"], "argument --repeats: must be at least 1, not -1"),
    (["--resummarize", "/nonexistent/qtasks-bench"], "holds no run.json"),
])
def test_bad_bench_input_is_one_line_and_exit_2(args: list[str], says: str, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(["bench", *args, "--redis-url", "redis://127.0.0.1:1/0"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2, err
    assert "Traceback" not in err and says in err.splitlines()[-1], err
    assert err.splitlines()[-1].startswith("qtasks-fast bench: error:"), err
    assert list(tmp_path.iterdir()) == []  # no bench-<timestamp> folder


def test_an_unreachable_redis_leaves_no_empty_results_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "--suite", "core", "--redis-url", "foo://x"]) == 2
    assert "cannot reach Redis" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []
