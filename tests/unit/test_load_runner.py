"""The load runner's claim on its results directory: one run at a time, decided by the locust
service's state (pid + start time + argv), never by a file's mere presence."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from llmpyramid.errors import ExitCode
from llmpyramid.load.cli import main
from llmpyramid.load.runner import RUN_DIR
from llmpyramid.procs import ManagedService

UNREACHABLE = "http://127.0.0.1:1"
SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BASE_URL", "API_KEY", "LOAD_RESULTS_DIR"):
        monkeypatch.delenv(name, raising=False)


def _locust_service(results: Path) -> ManagedService:
    return ManagedService("locust", results / RUN_DIR, stop_grace=1)


def test_a_second_run_into_a_busy_results_dir_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "results"
    results.mkdir()
    in_progress = results / "llm_samples.jsonl"
    in_progress.write_text("samples of the run in progress\n")
    service = _locust_service(results)
    with service.locked():
        proc, _state = service.spawn(SLEEPER, owner_pid=os.getpid())  # stands in for a live locust master
    try:
        with pytest.raises(SystemExit) as info:
            main(["--results-dir", str(results), "--base-url", UNREACHABLE])
        assert info.value.code == ExitCode.CONFIGURATION
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: a load run into") and f"already running (locust pid {proc.pid})" in err
        assert "\n" not in err
        # the running one's files are untouched and no results file claims its directory
        assert in_progress.read_text() == "samples of the run in progress\n"
        assert not (results / "load_results.json").exists()
        assert service.running() is not None and proc.poll() is None
    finally:
        service.stop()


def test_a_dead_runs_state_does_not_block_the_next_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    service = _locust_service(tmp_path)
    with service.locked():
        proc, _state = service.spawn(SLEEPER, owner_pid=os.getpid())
    proc.send_signal(signal.SIGKILL)  # a run killed without cleaning up leaves its state file
    proc.wait()
    assert service.state_file.is_file()
    with pytest.raises(SystemExit) as info:
        main(["--results-dir", str(tmp_path), "--base-url", UNREACHABLE])
    assert info.value.code == ExitCode.INFRASTRUCTURE, capsys.readouterr().err  # got past the claim, to the probe
    assert not service.state_file.exists()
