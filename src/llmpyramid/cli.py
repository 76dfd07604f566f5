"""The one place where errors become the user interface: a one-line message and an exit code.

Front doors (tasks.py, scripts/run_tests.py, `python -m llmpyramid...`) wrap their work in
`guarded()`; nothing else prints tracebacks or calls sys.exit with ad-hoc codes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from typing import NoReturn

from llmpyramid.errors import ConfigError, ExitCode, PyramidError

INTERRUPTED_EXIT = 130  # Ctrl-C or SIGTERM: 128 + SIGINT, as shells report it


class ArgumentParser(argparse.ArgumentParser):
    """THE parser class of every front door: argparse exits 2 on a bad flag, but for the pyramid
    a bad flag is a configuration error (exit 3), reported in one line."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{message} (see --help)")


def early_flag(argv: list[str], flag: str, allowed: tuple[str, ...] = ()) -> str | None:
    """A flag's value even when the rest of the command line is invalid (so errors still honour
    --output and --results-file)."""
    found = None
    for i, arg in enumerate(argv):
        value = arg.split("=", 1)[1] if arg.startswith(flag + "=") else None
        if arg == flag and i + 1 < len(argv):
            value = argv[i + 1]
        if value is not None and (not allowed or value in allowed):
            found = value
    return found


def fail(message: str, code: ExitCode) -> NoReturn:
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    raise SystemExit(int(code))


def sigterm_as_interrupt() -> object:
    """Make SIGTERM unwind like Ctrl-C, so `finally` blocks and fixture teardowns stop what we started.

    Returns the previous handler, for callers that restore it.
    """

    def handler(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    return signal.signal(signal.SIGTERM, handler)


@contextlib.contextmanager
def guarded() -> Iterator[None]:
    """Map PyramidError to its exit code and Ctrl-C/SIGTERM to 130, each with one line on stderr."""
    previous = sigterm_as_interrupt()
    try:
        yield
    except PyramidError as exc:
        fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        print("interrupted: stopped everything this command started", file=sys.stderr)
        raise SystemExit(INTERRUPTED_EXIT) from None
    except BrokenPipeError:
        # the reader of stdout went away (`| head`): nothing left to tell it; keep the exit-time flush quiet
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(int(ExitCode.OK)) from None
    finally:
        signal.signal(signal.SIGTERM, previous)  # type: ignore[arg-type]


def main() -> None:
    print("llmpyramid: use `invoke --list`, `nox -l` or `scripts/run_tests.py --help`", file=sys.stderr)
