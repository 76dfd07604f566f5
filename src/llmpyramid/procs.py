"""THE managed-service lifecycle, and the process rules every child the project starts follows.

A managed service is one background process addressed by its run directory:

- the run directory is private (0700) and every file in it is created 0600 from the start, never
  through a symlink (state may hold an API key; logs may echo requests);
- state is written atomically (temp file + rename) under a lock held from "is one running?" to
  "state written", so two concurrent `up` calls give one process and one "already running";
- a process is identified by pid + start time + exact argv: a reused or foreign pid is never signalled;
- stop = SIGTERM, grace, SIGKILL, wait, port free;
- a child exits when its owner dies (Linux parent-death signal + a watchdog thread for any owner);
- Ctrl-C/SIGTERM are held back from just before a spawn until its state is written, so a signal
  never finds a process that nothing records (it is then delivered, and the spawn stops what it made);
- nothing is deleted because a state file names it: only paths derived under the service's own run
  directory are ever removed.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import json
import os
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import psutil
from filelock import FileLock

from llmpyramid.errors import ConfigError
from llmpyramid.ports import port_is_free

PR_SET_PDEATHSIG = 1
START_TIME_TOLERANCE_S = 0.05  # psutil's create_time has clock-tick resolution
SIGNAL_CHECK_S = 0.2  # how often a waiting main thread lets pending signal handlers run (see StopEvent)


# --- children and owners ----------------------------------------------------------------------


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask the kernel to send `sig` to this process when its parent dies (no-op off glibc/Linux).

    Also usable as `preexec_fn` of a subprocess the project starts (terraform, pytest, locust)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, sig)


DEFERRED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold Ctrl-C/SIGTERM back inside the block; each one taken meanwhile is handed, as the block ends,
    to the handler that was in place (so a KeyboardInterrupt is raised there, not inside the block).

    Python runs signal handlers in the main thread only, whichever thread the kernel picked (a worker
    thread may take it: blocking the signal in this thread alone would not hold it back), so the
    handlers are swapped for a recorder; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    taken: list[signal.Signals] = []
    previous = {sig: signal.signal(sig, lambda n, _f: taken.append(signal.Signals(n))) for sig in DEFERRED_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for signum in taken:
            handler = previous[signum]
            if callable(handler):
                handler(signum, None)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), signum)  # the default action, now that the record exists


def exit_when_owner_dies(owner_pid: int) -> None:
    """Exit this process once `owner_pid` is gone: the parent-death signal covers a parent owner,
    the watchdog thread any other owner."""
    die_with_parent(signal.SIGTERM)

    def watch() -> None:
        while True:
            try:
                os.kill(owner_pid, 0)
            except ProcessLookupError:
                os._exit(0)
            except PermissionError:
                pass  # alive, owned by someone else
            time.sleep(0.5)

    threading.Thread(target=watch, name="owner-watchdog", daemon=True).start()


class StopEvent(threading.Event):
    """An event set by SIGTERM or SIGINT (see stop_event_on_signals), or by set() from any thread.

    Two rules keep a signal from being lost:
    - the signal handler only assigns `signalled`, never takes a lock: it runs between two bytecodes of
      the main thread, possibly inside Event.set() of the previous signal, and Event.set() re-entered
      blocks on the lock its own thread holds. `uv run` forwards its SIGTERM to a child that `killpg`
      already signalled, so the cloud node got two at once (measured: 8 of 40 stops hung that way);
    - wait() wakes at least every SIGNAL_CHECK_S: the kernel may hand the signal to any thread that does
      not block it (one of llama.cpp's or moto's), and CPython runs the handler only when the main thread
      next executes bytecode, which a main thread parked in an untimed wait never does."""

    def __init__(self) -> None:
        super().__init__()
        self.signalled = False

    def is_set(self) -> bool:
        return self.signalled or super().is_set()

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            left = SIGNAL_CHECK_S if deadline is None else min(SIGNAL_CHECK_S, deadline - time.monotonic())
            if left <= 0:
                return False
            super().wait(left)
        return True


def stop_event_on_signals() -> StopEvent:
    """A StopEvent set by SIGTERM or SIGINT: a child's main thread waits on it, then shuts down."""
    stop = StopEvent()

    def on_signal(*_: object) -> None:
        stop.signalled = True  # no lock here: see StopEvent

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    return stop


# --- identity ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessIdentity:
    """pid + start time + exact argv: enough to never mistake a reused or foreign pid for ours."""

    pid: int
    create_time: float
    argv: tuple[str, ...]

    @classmethod
    def of(cls, pid: int) -> ProcessIdentity:
        proc = psutil.Process(pid)
        return cls(pid, proc.create_time(), tuple(proc.cmdline()))

    def alive(self) -> bool:
        try:
            proc = psutil.Process(self.pid)
            return (
                abs(proc.create_time() - self.create_time) <= START_TIME_TOLERANCE_S
                and tuple(proc.cmdline()) == self.argv
                and proc.status() != psutil.STATUS_ZOMBIE
            )
        except psutil.Error:
            return False

    def process(self) -> psutil.Process | None:
        """The live psutil.Process if it is still this identity, else None."""
        return psutil.Process(self.pid) if self.alive() else None


def stop_process(pid: int, grace: float) -> None:
    """SIGTERM, then SIGKILL whatever of its family is still alive after `grace` seconds; reap it.

    The family (its descendants, listed before the signal) goes too: a service's own workers or
    plugins must not outlive it. Callers pass a pid they just verified (an identity that is alive,
    or a child they spawned)."""
    with contextlib.suppress(psutil.NoSuchProcess):
        proc = psutil.Process(pid)
        try:
            family = [proc, *proc.children(recursive=True)]
        except psutil.Error:
            family = [proc]
        proc.terminate()
        _, alive = psutil.wait_procs([proc], timeout=grace)
        leftovers = [p for p in family if p not in alive and _running(p)]  # descendants the parent left behind
        for p in (*alive, *leftovers):
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs([*alive, *leftovers], timeout=5)


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def processes_with_env(name: str, value: str, since: float | None = None) -> list[psutil.Process]:
    """Live processes (not this one, not zombies) whose environment has name=value, started at or after
    `since` when given. Every process a run starts inherits its environment, so a variable the run set
    (a tag, its results directory, its HOME) finds everything it left behind, whatever its name."""
    found = []
    for proc in psutil.process_iter(["create_time"]):
        try:
            if proc.pid == os.getpid() or (since is not None and proc.info["create_time"] < since - 1):
                continue
            if proc.environ().get(name) == value and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def wait_port_free(port: int, host: str, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not port_is_free(port, host):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


# --- who answers on a port -------------------------------------------------------------------
# A healthy answer on a loopback port says nothing about who gave it: a client about to send a key (or act
# with our credentials) first checks that the process listening there is the one it means.


def _reaches_loopback(ip: str) -> bool:
    """A socket bound to `ip` accepts connections to a loopback address (loopback itself or a wildcard)."""
    try:
        addr = ipaddress.ip_address(ip.split("%")[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback or addr.is_unspecified


def port_listeners(port: int) -> list[psutil.Process | None]:
    """The processes listening on TCP `port` where a loopback client reaches it, one entry per process;
    None stands for a socket whose owner this user may not see (another user's, without root)."""
    try:
        sockets = [(c.pid, c) for c in psutil.net_connections(kind="tcp")]
    except psutil.AccessDenied:  # e.g. macOS without root: our own processes' sockets are still visible
        sockets = []
        for proc in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                sockets += [(proc.pid, c) for c in proc.net_connections(kind="tcp")]
    found: dict[int | None, psutil.Process | None] = {}
    for pid, conn in sockets:
        if conn.status != psutil.CONN_LISTEN or not conn.laddr or conn.laddr.port != port:
            continue
        if not _reaches_loopback(conn.laddr.ip):
            continue
        if pid is None:
            found[None] = None
            continue
        try:
            found[pid] = psutil.Process(pid)
        except psutil.NoSuchProcess:
            continue  # closed meanwhile
        except psutil.Error:
            found[None] = None
    return list(found.values())


def in_family(proc: psutil.Process, identity: ProcessIdentity) -> bool:
    """`proc` is the process `identity` names (still alive) or one of its descendants."""
    if not identity.alive():
        return False
    try:
        return proc.pid == identity.pid or identity.pid in {p.pid for p in proc.parents()}
    except psutil.Error:
        return False


def describe_process(proc: psutil.Process | None, width: int = 120) -> str:
    """'pid 123 (python -m http.server 8000)' for an error line; the command cut to `width` characters."""
    if proc is None:
        return "a process this user cannot see"
    try:
        command = " ".join(proc.cmdline()) or proc.name()
    except psutil.Error:
        return f"pid {proc.pid}"
    return f"pid {proc.pid} ({command if len(command) <= width else command[: width - 3] + '...'})"


def foreign_listener(port: int, ours: Callable[[psutil.Process], bool]) -> str | None:
    """None when something listens on loopback `port` and every listener is `ours`; else what listens
    there instead, described for an error line (nothing visible counts as foreign: it cannot be vouched for)."""
    found = port_listeners(port)
    if not found:
        return "no visible process"
    for proc in found:
        if proc is None or not ours(proc):
            return describe_process(proc)
    return None


# --- private files ----------------------------------------------------------------------------


def private_dir(path: Path) -> Path:
    """Create (or tighten) a 0700 directory; a symlink in its place is refused."""
    path = Path(path)
    if path.is_symlink():
        raise ConfigError(f"refusing to use run directory {path}: it is a symlink")
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.stat()
        if info.st_mode & stat.S_ISVTX or info.st_uid != os.getuid():
            # e.g. /tmp itself: shared by design; never chmod a directory that is not ours alone
            raise ConfigError(f"run directory {path} is shared (sticky or owned by another user); use a private one")
        path.chmod(0o700)
    except OSError as exc:
        raise ConfigError(f"cannot use run directory {path}: {exc.strerror or exc}") from None
    return path


def write_private(path: Path, text: str) -> None:
    """Atomically replace `path` with `text`, 0600 from creation, never writing through a symlink."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)  # replaces a planted symlink itself, never its target
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def open_private_log(path: Path) -> IO[bytes]:
    """Append-only log file, 0600 from creation, not followed through a symlink."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    return os.fdopen(fd, "ab")


# --- the managed service ----------------------------------------------------------------------


@dataclass
class ServiceState:
    """What a state file records. `extra` is the service's own data (port, URL, model, ...)."""

    pid: int
    create_time: float
    argv: list[str]
    started_at: float
    owner_pid: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def identity(self) -> ProcessIdentity:
        return ProcessIdentity(self.pid, self.create_time, tuple(self.argv))


class ManagedService:
    """One background process, addressed by (run_dir, name): start, find, stop, logs."""

    def __init__(self, name: str, run_dir: Path, *, stop_grace: float = 5.0) -> None:
        self.name = name
        self.run_dir = Path(run_dir)
        self.stop_grace = stop_grace
        # Every path the service touches is derived here; a state file never names what to delete.
        self.state_file = self.run_dir / f"{name}.json"
        self.log_file = self.run_dir / f"{name}.log"
        self.lock_file = self.run_dir / f"{name}.lock"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Held from "is one running?" to "state written"."""
        private_dir(self.run_dir)
        with FileLock(self.lock_file, mode=0o600):
            yield

    def read_state(self) -> ServiceState | None:
        try:
            if self.state_file.is_symlink():
                return None
            return ServiceState(**json.loads(self.state_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def write_state(self, state: ServiceState) -> None:
        private_dir(self.run_dir)
        write_private(self.state_file, json.dumps(asdict(state), indent=2))

    def running(self) -> ServiceState | None:
        """The live service, or None. A stale state file (process gone or pid reused) is removed."""
        state = self.read_state()
        if state is None:
            return None
        if state.identity.alive():
            return state
        self.state_file.unlink(missing_ok=True)
        return None

    def spawn(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        owner_pid: int | None = None,
        extra: Mapping[str, Any] | None = None,
        cwd: Path | None = None,
    ) -> tuple[subprocess.Popen[bytes], ServiceState]:
        """Start the process and record it. Call inside `locked()` after checking `running()`.

        The child gets its own session (a Ctrl-C in the user's terminal reaches the front door, which
        decides what stops) and, when it has an owner, the parent-death signal."""
        private_dir(self.run_dir)
        proc: subprocess.Popen[bytes] | None = None
        try:
            with signals_deferred():
                with open_private_log(self.log_file) as log:
                    proc = subprocess.Popen(
                        list(argv),
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        env=dict(env) if env is not None else None,
                        cwd=cwd,
                        start_new_session=True,
                        # prctl only (no locks taken in the child); fires when the spawning thread's process dies
                        preexec_fn=die_with_parent if owner_pid else None,
                    )
                # the argv we exec'd, not a read of /proc: right after the spawn it may still show the parent's
                created = psutil.Process(proc.pid).create_time()
                state = ServiceState(proc.pid, created, list(argv), time.time(), owner_pid, dict(extra or {}))
                self.write_state(state)
        except BaseException:  # a failed record, or the signal held back during the spawn, delivered now
            if proc is not None:
                stop_process(proc.pid, self.stop_grace)
                self.state_file.unlink(missing_ok=True)
            raise
        return proc, state

    def stop(self, *, port: int | None = None, host: str = "127.0.0.1") -> bool:
        """Stop the recorded process if it is still ours; True if something was stopped."""
        state = self.read_state()
        if state is None:
            return False
        stopped = state.identity.alive()
        if stopped:
            stop_process(state.pid, self.stop_grace)
        if port:
            wait_port_free(port, host)
        self.state_file.unlink(missing_ok=True)
        return stopped

    def logs(self, lines: int = 50) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def last_log_line(self) -> str:
        tail = [ln for ln in self.logs(20).splitlines() if ln.strip()]
        return tail[-1].strip() if tail else f"(no output in {self.log_file})"
