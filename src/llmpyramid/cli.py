"""The one place where errors become the user interface: a one-line message and an exit code.

Front doors (tasks.py, scripts/run_tests.py, `python -m llmpyramid...`) wrap their work in
`guarded()`; nothing else prints tracebacks or calls sys.exit with ad-hoc codes.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any, NoReturn

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


# A teardown interrupted by a second signal is cut short: the bound below is longer than every bounded
# stop a front door waits for (a child's teardown, 300 s), so it only ends a teardown that hangs.
TEARDOWN_BOUND_S = 330.0
INTERRUPT_SIGNALS = (signal.SIGINT, signal.SIGTERM)


# CPython remembers a KeyboardInterrupt that leaves code run by exec()/eval() of a string (a dataclass or a
# namedtuple being created, as a lazy import does), even when it is caught: a `python -m` process then ends
# by SIGINT (-2) instead of its exit code (Py_RunMain's unhandled_keyboard_interrupt). Seen as `invoke
# staging` interrupted at provision exiting -2 after "interrupted". So the interrupt waits until that code has
# returned (it is short), re-delivered every REDELIVER_S, for at most STRING_CODE_WAIT_S.
STRING_CODE = "<string>"  # the file name exec()/eval() give the code they compile from a string
REDELIVER_S = 0.005
STRING_CODE_WAIT_S = 1.0


def _inside_string_code(frame: FrameType | None) -> bool:
    """Whether `frame` runs inside code that exec()/eval() compiled from a string. A `python -c` program's own
    top level is string code with no caller: it does not count (its exit code is kept either way)."""
    while frame is not None:
        if frame.f_code.co_filename == STRING_CODE and frame.f_back is not None:
            return True
        frame = frame.f_back
    return False


class _OneInterrupt:
    """Ctrl-C/SIGTERM: the first one unwinds like Ctrl-C (KeyboardInterrupt, so `finally` blocks and
    fixture teardowns stop what we started); a further one while that teardown runs is held back instead
    of aborting it (uv run forwards SIGTERM; a CI cancel sends SIGINT, then SIGTERM). A teardown still
    running TEARDOWN_BOUND_S after the first signal ends the process with 130."""

    def __init__(self, *, wait_for_string_code: bool = True) -> None:
        self.wait_for_string_code = wait_for_string_code
        self.first: int | None = None
        self.bound: threading.Timer | None = None
        self.waiting_since: float | None = None  # the first signal arrived inside string code
        self.redelivery_due = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.first is not None:  # teardown in progress: no lock, no print (this may interrupt a print)
            os.write(2, b"interrupt again: still stopping what this command started\n")
            return
        if self.wait_for_string_code and _inside_string_code(frame) and self._wait_for_string_code(signum):
            return
        self.first = signum
        self.bound = threading.Timer(TEARDOWN_BOUND_S, self._cut_short)
        self.bound.daemon = True
        self.bound.start()
        raise KeyboardInterrupt(f"signal {signum}")

    def _wait_for_string_code(self, signum: int) -> bool:
        """Deliver `signum` again in a moment (to the main thread, so a blocking call there wakes); False once
        the string code has run STRING_CODE_WAIT_S: then the interrupt is raised where it is."""
        if self.redelivery_due:  # one at a time: this handler may run again while it schedules one
            return True
        now = time.monotonic()
        self.waiting_since = self.waiting_since or now
        if now - self.waiting_since > STRING_CODE_WAIT_S:
            return False
        self.redelivery_due = True
        timer = threading.Timer(REDELIVER_S, self._redeliver, (signum,))
        timer.daemon = True
        try:
            timer.start()
        except RuntimeError:  # no new thread at interpreter shutdown: raise it now
            self.redelivery_due = False
            return False
        return True

    def _redeliver(self, signum: int) -> None:
        self.redelivery_due = False
        main = threading.main_thread().ident
        if main is not None:
            signal.pthread_kill(main, signum)

    def teardown_done(self) -> None:
        if self.bound is not None:
            self.bound.cancel()

    @staticmethod
    def _cut_short() -> None:
        os.write(2, f"error: teardown still running {TEARDOWN_BOUND_S:g}s after the interrupt; exiting\n".encode())
        os._exit(INTERRUPTED_EXIT)


def _ignore_late_interrupts() -> None:
    """At interpreter exit (after atexit, Python resets the signals it handles to their default action,
    so a late SIGTERM would end the process by the signal instead of its exit code): ignored ones it keeps."""
    for sig in INTERRUPT_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def interrupt_once(*, wait_for_string_code: bool = True) -> dict[int, Any]:
    """Install the one-interrupt rule for SIGINT and SIGTERM; returns the previous handlers. Without
    `wait_for_string_code` (a process whose exit code nobody reads), an interrupt is raised where it lands."""
    atexit.unregister(_ignore_late_interrupts)  # registered once
    atexit.register(_ignore_late_interrupts)
    handler = _OneInterrupt(wait_for_string_code=wait_for_string_code)
    return {sig: signal.signal(sig, handler) for sig in INTERRUPT_SIGNALS}


def _installed() -> _OneInterrupt | None:
    handler = signal.getsignal(signal.SIGINT)
    return handler if isinstance(handler, _OneInterrupt) else None


def interrupted() -> bool:
    """Whether the installed one-interrupt rule has taken its signal."""
    handler = _installed()
    return handler is not None and handler.first is not None


@contextlib.contextmanager
def guarded() -> Iterator[None]:
    """Map PyramidError to its exit code and Ctrl-C/SIGTERM to 130, each with one line on stderr."""
    previous = interrupt_once()
    try:
        yield
    except PyramidError as exc:
        fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        if handler := _installed():
            handler.teardown_done()  # what this command started is stopped: nothing left to bound
        print("interrupted: stopped everything this command started", file=sys.stderr)
        raise SystemExit(INTERRUPTED_EXIT) from None
    except BrokenPipeError:
        # the reader of stdout went away (`| head`): nothing left to tell it; keep the exit-time flush quiet
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(int(ExitCode.OK)) from None
    finally:
        if interrupted():
            pass  # late signals stay held back until the process has exited
        elif _interpreter_defaults(previous):
            for done_sig in INTERRUPT_SIGNALS:  # a front door on its way out: its work is done
                signal.signal(done_sig, _after_the_work)
        else:  # nested in a caller with its own rule (a test run): give it back
            for sig, handler in previous.items():
                signal.signal(sig, handler)


@contextlib.contextmanager
def interrupts_held(what: str) -> Iterator[None]:
    """Ctrl-C/SIGTERM while `what` runs (a teardown that must finish, wherever it is called from: a guarded
    front door, pytest, a nested caller) is held back and delivered to the previous handler afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread handles signals
        return
    held: list[int] = []

    def hold(signum: int, _frame: object) -> None:
        held.append(signum)
        os.write(2, f"interrupt held: {what} is still running\n".encode())

    previous = {sig: signal.signal(sig, hold) for sig in INTERRUPT_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if held:
            signal.raise_signal(held[0])


def _interpreter_defaults(handlers: dict[int, Any]) -> bool:
    """Whether these are the handlers Python starts with: the guarded block is a process's front door."""
    sigint, sigterm = handlers.get(signal.SIGINT), handlers.get(signal.SIGTERM)
    return sigint is signal.default_int_handler and sigterm in (signal.SIG_DFL, None)


def _after_the_work(_signum: int, _frame: object) -> None:
    """Ctrl-C/SIGTERM after the command's work is done, as its process exits: nothing it started runs
    any more except what it hands to a state file on purpose (`stack.up`, `emulators.up`), so there is
    nothing to unwind: exit 130 now, output flushed (Python's default would end by the signal, -15)."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(INTERRUPTED_EXIT)


def main() -> None:
    print("llmpyramid: use `invoke --list`, `nox -l` or `scripts/run_tests.py --help`", file=sys.stderr)
