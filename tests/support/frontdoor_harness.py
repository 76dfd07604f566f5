"""The bad-input sweep over every front door: harness shared by the tables in this folder.

Each case runs the real front door as a subprocess (python -m invoke, scripts/run_tests.py,
python -m llmpyramid.*, scripts/wait_healthy.sh) in a sandbox:

- a loopback-only network namespace when `unshare -n` works (root), so nothing can leave the box;
- every run/results/model directory points into the test's tmp dir, so the shared work tree,
  a running stack and background emulators are never touched;
- a tripwire: MODEL_OFFLINE=1 with an empty MODEL_DIR, so a front door that starts the embedded
  stack before validating its input fails fast (exit 2 from the model fetch) instead of starting
  llama.cpp, and the case fails on its exit code.

Bad input must be rejected before anything starts, so each case finishes in a few seconds; a case
that runs past CASE_TIMEOUT_S is killed (with its process group) and fails as "started something".
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
CASE_TIMEOUT_S = 90  # generous for a busy 2-core box; a rejected input takes a few seconds

# Never passed through from the caller's environment: each would point a front door at real
# infrastructure or change what the case tests.
_SCRUBBED_PREFIXES = (
    "BASE_URL", "API_KEY", "MODEL", "HF_", "STACK_", "LOAD_", "SLO_", "SMOKE_", "INTEGRATION_", "MEMORY_",
    "REQUEST_TIMEOUT_S", "EMULATORS_", "CLOUD", "HYBRID_", "PIPELINE_", "PREPROD_", "STAGING_", "AWS_",
    "GOOGLE_", "STORAGE_EMULATOR_HOST", "HCLOUD_", "SKYPILOT", "AZURE_",
)  # fmt: skip

SECRET = "s3cretpw"  # the password in credential URLs: must appear nowhere
CRED_HOST_URL = f"http://alice:{SECRET}@127.0.0.1:1"  # well-formed, nothing listens on port 1

# Malformed URLs: each is a configuration error (exit 3).
BAD_URLS = [
    "http://[::1",
    "ftp://x",
    "http://h:99999",
    "http://h:-1",
    "http://h:abc",
    "http://",
    "localhost:8080",
    "http://exa mple.com",
    "javascript:alert(1)",
    f"http://alice:{SECRET}@[::1",
    f"http://alice:{SECRET}@h:99999",
]

# Numbers that no count, rate, port or timeout accepts.
BAD_NUMBERS = ["-5", "nan", "inf", "1e999", "abc", "99999999999999999999999999"]


def _netns_prefix() -> list[str]:
    """Run cases in a loopback-only network namespace when this user may create one."""
    if not shutil.which("unshare") or not shutil.which("ip"):
        return []
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        return []
    return ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "frontdoor"]


NETNS = _netns_prefix()


@dataclass
class Outcome:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def stderr_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]

    def describe(self) -> str:
        return (
            f"argv: {self.argv}\nexit: {self.returncode}\n"
            f"--- stdout (tail)\n{self.stdout[-1500:]}\n--- stderr (tail)\n{self.stderr[-1500:]}"
        )


@dataclass
class Sandbox:
    """One case's tmp dir, environment and tripwires."""

    root: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def pwned(self) -> Path:
        """The file a shell-injection payload would create."""
        return self.root / "PWNED"

    def injection(self, prefix: str = "") -> str:
        """A path/value that creates `pwned` if it ever reaches a shell unquoted."""
        return f"{prefix}x;touch {self.pwned};echo"

    def path_with_spaces(self, name: str) -> Path:
        """A (creatable) path whose directory has spaces and shell metacharacters in its name."""
        return self.root / f"dir with spaces;touch {self.pwned};$(touch {self.pwned})" / name

    def stale(self, path: Path) -> str:
        """Plant a previous run's results file; returns the marker that must not survive this run."""
        marker = f"STALE-{uuid.uuid4().hex}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"stale": marker, "exit_code": 0, "verdict": "passed"}))
        return marker

    def run(
        self, argv: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = CASE_TIMEOUT_S
    ) -> Outcome:
        full_env = {**self.env, **(env or {})}
        cmd = [*NETNS, *argv]
        proc = subprocess.Popen(
            cmd,
            cwd=self.root,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # so a timeout kills everything the front door started
        )
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            pytest.fail(
                f"front door still running after {timeout}s: it started something before rejecting "
                f"the input\n{Outcome(list(argv), -9, out, err).describe()}"
            )
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        return Outcome(list(argv), proc.returncode, out, err)


def make_sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    """The `sandbox` fixture (conftest.py); the PWNED tripwire is checked after the case."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_PREFIXES)}
    models = tmp_path / "models-empty"
    models.mkdir()
    env.update(
        {
            "STACK_RUN_DIR": str(tmp_path / "run-stack"),
            "EMULATORS_RUN_DIR": str(tmp_path / "run-emulators"),
            "MODEL_DIR": str(models),
            "MODEL_OFFLINE": "1",  # tripwire: no hub; the offline wheel cannot download in the namespace
            "LOAD_RESULTS_DIR": str(tmp_path / "results-load"),
            "HYBRID_RESULTS_DIR": str(tmp_path / "results-hybrid"),
            "PIPELINE_RESULTS_DIR": str(tmp_path / "results-pipeline"),
            "PYTHONDONTWRITEBYTECODE": "1",
            "NO_COLOR": "1",
        }
    )
    box = Sandbox(tmp_path, env)
    yield box
    assert not box.pwned.exists(), "a user-given value reached a shell: the injection payload ran"


def assert_rejected(
    out: Outcome,
    code: int = 3,
    *,
    results: Path | None = None,
    stale_marker: str | None = None,
    secrets: Sequence[str] = (SECRET,),
) -> None:
    """The contract for bad input: exit `code`, no traceback, the last stderr line is one `error:` line,
    no secret anywhere, and no stale results file left standing as this run's verdict."""
    where = out.describe()
    assert "Traceback" not in out.stdout + out.stderr, f"traceback\n{where}"
    assert out.returncode == code, f"expected exit {code}, got {out.returncode}\n{where}"
    lines = out.stderr_lines
    assert lines, f"nothing on stderr\n{where}"
    assert lines[-1].startswith("error:"), f"last stderr line is not an `error:` line\n{where}"
    for secret in secrets:
        assert secret not in out.stdout + out.stderr, f"secret {secret!r} shown\n{where}"
        if results is not None and results.exists():
            assert secret not in results.read_text(errors="replace"), f"secret {secret!r} written to {results}"
    if stale_marker is not None and results is not None and results.exists():
        assert stale_marker not in results.read_text(errors="replace"), (
            f"the previous run's results file {results} was left in place as this run's verdict\n{where}"
        )


def invoke(*args: str) -> list[str]:
    return [PYTHON, "-m", "invoke", "-r", str(PROJECT_ROOT), *args]


Marks = pytest.MarkDecorator | Collection[pytest.MarkDecorator]  # what a case row may carry
