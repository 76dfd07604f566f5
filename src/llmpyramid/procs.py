"""Process rules shared by every managed child (llama.cpp server, emulators): one place for each.

- a child exits when its owner dies (Linux parent-death signal + a watchdog thread for any owner);
- a stop is SIGTERM, then SIGKILL after a grace period, then waiting for the port to free up;
- a pid from a state file is only ours if its command line says so (pids get reused).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import threading
import time

import psutil

from llmpyramid.ports import port_is_free

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask the kernel to send `sig` to this process when its parent dies (no-op off glibc/Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, sig)


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


def stop_event_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT: a child's main thread waits on it, then shuts down."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def is_ours(pid: int, *markers: str) -> bool:
    """True if pid is alive (not a zombie) and every marker appears in its command line."""
    try:
        proc = psutil.Process(pid)
        cmdline = " ".join(proc.cmdline())
        return proc.status() != psutil.STATUS_ZOMBIE and all(m in cmdline for m in markers)
    except psutil.Error:
        return False


def stop_process(pid: int, grace: float) -> None:
    """SIGTERM, then SIGKILL whatever is still alive after `grace` seconds; reap it."""
    with contextlib.suppress(psutil.NoSuchProcess):
        proc = psutil.Process(pid)
        proc.terminate()
        _, alive = psutil.wait_procs([proc], timeout=grace)
        for p in alive:
            p.kill()
        psutil.wait_procs(alive, timeout=5)


def wait_port_free(port: int, host: str, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not port_is_free(port, host):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True
