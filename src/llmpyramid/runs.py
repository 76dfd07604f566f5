"""What a layer run is given and gives back: the contract between the one executor (llmpyramid.suites)
and every layer's own runner (load.suite, cloud.suite, hybrid.suite, pytest through tests/conftest.py).

It sits below all of them and imports nothing of theirs, so a layer's runner never imports the
executor that loads it.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmpyramid.errors import ExitCode, PyramidError
from llmpyramid.target import Target

ABORT_FILE_ENV = "LLMPYRAMID_ABORT_FILE"  # where conftest records an infra/config abort for the executor


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class RunRequest:
    suite: str
    target: Target | None  # None: the layer starts the embedded stack (THE target rule)
    duration: float | None = None  # --duration (load, cloud)
    cloud: str | None = None  # --cloud (cloud)
    log: Callable[[str], None] = _log
    # the layer's own arguments (after `--`): pytest arguments for a pytest layer, the load CLI's flags for load
    layer_args: tuple[str, ...] = ()
    options: dict[str, Any] | None = None  # layer-specific flags (e.g. hybrid's --router-url)


@dataclass
class SuiteRun:
    document: dict[str, Any]  # a results document (llmpyramid.results)
    exit_code: ExitCode


SuiteFn = Callable[[RunRequest], SuiteRun]


_abort_file: str | None = None


def claim_abort_file() -> None:
    """Take the abort file out of the environment (tests/conftest.py, at start-up): only the pytest
    the executor started may write it, never a process that one of its tests starts."""
    global _abort_file
    _abort_file = os.environ.pop(ABORT_FILE_ENV, None) or _abort_file


def write_abort(exc: PyramidError) -> None:
    """Called by a pytest layer's conftest when the suite cannot run: tell the executor why (exit 2 or 3)."""
    path = _abort_file
    if path:
        with contextlib.suppress(OSError):
            Path(path).write_text(json.dumps({"exit_code": int(exc.exit_code), "message": str(exc)}))
