"""The supervisor gives up, with a message that says why, when its workers die as they start."""

from __future__ import annotations

import time
from pathlib import Path

from conftest import cli_env, start_cli


def test_supervisor_gives_up_after_repeated_instant_deaths(redis_url: str, app_name: str, tmp_path: Path) -> None:
    log = tmp_path / "sup.log"
    started = time.monotonic()
    proc = start_cli(["-A", "crashing_app", "run", "--processes", "1", "--worker-id", "C"],
                     cli_env(redis_url, app_name), log=log)
    code = proc.wait(60)
    took = time.monotonic() - started
    text = log.read_text()
    assert code == 1, text
    assert "consumer setup failed on purpose" in text  # the cause is in the log
    assert "worker C-0 died 5 times within 2s of starting" in text and "giving up" in text
    assert text.count("started worker C-0") == 5
    assert "restarting in 0.25s" in text and "restarting in 2.00s" in text  # backoff grows
    assert took > 3.5  # 0.25 + 0.5 + 1 + 2 s of backoff before the fifth start
