"""Exit codes (from the seed) and the exceptions that map onto them.

Every front door (invoke, nox, scripts/run_tests.py, the CLI) catches `PyramidError` and prints
its one-line message; a traceback is never the user interface.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0  # all tests passed
    FAILURES = 1  # test failures
    INFRASTRUCTURE = 2  # service / emulator / cloud API not reachable
    CONFIGURATION = 3  # bad flag, missing credentials, invalid config


class PyramidError(Exception):
    """Base class: a one-line, actionable message plus the exit code it maps to."""

    exit_code: ExitCode = ExitCode.FAILURES

    def __str__(self) -> str:  # always one line
        return " ".join(super().__str__().split())


class ConfigError(PyramidError):
    exit_code = ExitCode.CONFIGURATION


class InfrastructureError(PyramidError):
    exit_code = ExitCode.INFRASTRUCTURE


# Which verdict wins when several layers or steps report: infrastructure > configuration > failures > ok.
SEVERITY = (ExitCode.OK, ExitCode.FAILURES, ExitCode.CONFIGURATION, ExitCode.INFRASTRUCTURE)


def worst(*codes: int) -> ExitCode:
    return max((ExitCode(c) for c in codes), key=SEVERITY.index, default=ExitCode.OK)
