"""The managed-service lifecycle on real (tiny) processes: identity, private files, no foreign signals."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time

import psutil
import pytest

from llmpyramid import procs
from llmpyramid.procs import ManagedService, ProcessIdentity, StopEvent, private_dir, stop_process, write_private

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


@pytest.fixture
def service(tmp_path):
    svc = ManagedService("svc", tmp_path / "run", stop_grace=2)
    yield svc
    svc.stop()


def _mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_state_and_log_are_0600_in_a_0700_directory(service):
    with service.locked():
        proc, _ = service.spawn(SLEEPER, extra={"api_key": "k"})
    assert _mode(service.run_dir) == 0o700
    assert _mode(service.state_file) == 0o600
    assert _mode(service.log_file) == 0o600
    assert _mode(service.lock_file) == 0o600
    assert service.running().extra == {"api_key": "k"}
    assert service.stop() is True
    assert proc.wait(5) is not None and service.read_state() is None


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_during_the_spawn_waits_for_the_record_then_stops_what_was_spawned(service, monkeypatch, sig):
    """The signal lands as the child is being created (before its state exists): it is held back until the
    state is written, then delivered, and the spawn stops its child instead of leaving it unrecorded."""
    real_popen = subprocess.Popen
    spawned: list[subprocess.Popen[bytes]] = []

    def popen_then_signal(*args, **kwargs):
        proc = real_popen(*args, **kwargs)
        spawned.append(proc)
        os.kill(os.getpid(), sig)  # Ctrl-C or SIGTERM a microsecond after the child exists
        return proc

    monkeypatch.setattr(procs.subprocess, "Popen", popen_then_signal)
    # a front door's handlers, not the test session's one-interrupt rule: this test's own Ctrl-C would use it up
    previous = {s: signal.signal(s, _raise_interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with pytest.raises(KeyboardInterrupt), service.locked():
            service.spawn(SLEEPER)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    assert spawned and spawned[0].poll() is not None, "the child outlived the interrupted spawn"
    assert service.read_state() is None
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == set(), "signals are still held back"


def test_a_spawned_child_does_not_inherit_held_back_signals(service):
    with service.locked():
        proc, _ = service.spawn([sys.executable, "-c", "import signal; print(sorted(signal.pthread_sigmask(0, [])))"])
    proc.wait(30)
    assert service.logs().strip().endswith("[]"), service.logs()


def _raise_interrupt(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def test_a_foreign_pid_in_the_state_file_is_never_signalled(service):
    foreign = subprocess.Popen(SLEEPER)
    time.sleep(0.2)  # a pid reused later has a later start time
    ours = None
    try:
        with service.locked():
            ours, _ = service.spawn(SLEEPER)
        doc = json.loads(service.state_file.read_text())
        doc["pid"] = foreign.pid  # same argv, different start time: a reused pid
        write_private(service.state_file, json.dumps(doc))
        assert service.running() is None
        assert service.stop() is False
        assert foreign.poll() is None, "a process that is not ours was signalled"
    finally:
        for proc in (foreign, ours):  # ours too: the rewritten state file no longer names it
            if proc is not None:
                proc.kill()
                proc.wait()


def test_identity_needs_pid_start_time_and_exact_argv():
    proc = subprocess.Popen(SLEEPER)
    try:
        me = ProcessIdentity.of(proc.pid)
        assert me.alive()
        assert not ProcessIdentity(me.pid, me.create_time + 5, me.argv).alive()
        assert not ProcessIdentity(me.pid, me.create_time, (*me.argv, "x")).alive()
    finally:
        proc.kill()
        proc.wait()
    assert not me.alive()


def test_a_state_file_naming_a_foreign_directory_deletes_nothing(service, tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("precious")
    private_dir(service.run_dir)
    write_private(service.state_file, json.dumps({
        "pid": 1, "create_time": 0.0, "argv": ["x"], "started_at": 0.0,
        "extra": {"run_dir": str(victim), "log_file": str(victim / "keep.txt")},
    }))  # fmt: skip
    assert service.running() is None and service.stop() is False
    assert (victim / "keep.txt").read_text() == "precious"
    assert psutil.pid_exists(1)


def test_state_is_never_written_through_a_symlink(service, tmp_path):
    target = tmp_path / "unrelated.txt"
    target.write_text("untouched")
    private_dir(service.run_dir)
    service.state_file.symlink_to(target)
    assert service.read_state() is None
    with service.locked():
        service.spawn(SLEEPER)
    assert target.read_text() == "untouched"
    assert not service.state_file.is_symlink()


def test_concurrent_starts_under_the_lock_give_one_process(service):
    started: list[int] = []

    def up() -> None:
        with service.locked():
            if service.running() is None:
                started.append(service.spawn(SLEEPER)[0].pid)

    threads = [threading.Thread(target=up) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(started) == 1
    assert service.running().pid == started[0]


def test_stop_takes_the_family_a_parent_leaves_behind():
    # sh dies on SIGTERM at once; its background child would be re-parented and live on
    parent = subprocess.Popen(["sh", "-c", "sleep 300 & sleep 300"], stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while len(psutil.Process(parent.pid).children()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    children = psutil.Process(parent.pid).children()
    assert len(children) == 2
    stop_process(parent.pid, grace=5)
    parent.wait(timeout=5)
    _gone, alive = psutil.wait_procs(children, timeout=5)
    assert not alive, [p.pid for p in alive]


def _run_child(code: str) -> None:
    # a lost signal hangs the child: the timeout turns that into a failure instead of a stuck run
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout.strip()) == (0, "stopped"), done.stderr


def test_a_signal_taken_by_another_thread_still_ends_the_main_threads_wait():
    # the main thread blocks SIGTERM, so the kernel must hand it to the other thread, as it may hand it
    # to one of llama.cpp's workers while the main thread waits for the stop event
    _run_child("""
import os, signal, threading, time
from llmpyramid.procs import stop_event_on_signals
stop = stop_event_on_signals()
threading.Thread(target=time.sleep, args=(120,), daemon=True).start()
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
os.kill(os.getpid(), signal.SIGTERM)
stop.wait()
print("stopped")
""")


def test_a_signal_arriving_while_the_event_is_being_set_does_not_deadlock():
    # the second of two SIGTERMs (killpg + uv run's forwarded one) runs its handler inside the first
    # one's Event.set(), i.e. while the event's own lock is held by this very thread
    _run_child("""
import os, signal
from llmpyramid.procs import stop_event_on_signals
stop = stop_event_on_signals()
with stop._cond:  # what Event.set() holds while it runs
    os.kill(os.getpid(), signal.SIGTERM)
    for _ in range(1000):  # bytecodes: the handler runs here, under the lock
        pass
stop.wait()
print("stopped")
""")


def test_stop_event_wait_keeps_its_timeout_and_sees_set_from_other_threads():
    stop = StopEvent()
    assert stop.wait(0.05) is False
    threading.Timer(0.05, stop.set).start()
    assert stop.wait() is True


# --- who answers on a port ---------------------------------------------------------------------

LISTENER = (
    "import socket, sys, time; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); "
    "print(s.getsockname()[1], flush=True); time.sleep(60)"
)


@pytest.mark.parametrize(
    ("ip", "reaches"),
    [("127.0.0.1", True), ("127.0.0.53", True), ("0.0.0.0", True), ("::", True), ("::1", True),
     ("::ffff:127.0.0.1", True), ("10.1.2.3", False), ("fe80::1%eth0", False), ("bogus", False)],
)  # fmt: skip
def test_a_listener_counts_where_a_loopback_client_reaches_it(ip, reaches):
    assert procs._reaches_loopback(ip) is reaches


def test_the_listener_on_a_port_is_found_and_vouched_for_by_identity(service):
    with service.locked():
        proc, state = service.spawn([sys.executable, "-c", LISTENER])
    deadline = time.monotonic() + 30
    while not (port := int(service.logs().strip() or 0)):
        assert proc.poll() is None and time.monotonic() < deadline, service.logs()
        time.sleep(0.05)
    assert [p.pid for p in procs.port_listeners(port) if p] == [proc.pid]
    assert procs.foreign_listener(port, lambda p: procs.in_family(p, state.identity)) is None
    # the same process is foreign to an identity it does not match (a reused pid: other start time)
    stale = ProcessIdentity(proc.pid, state.create_time - 100, state.identity.argv)
    other = procs.foreign_listener(port, lambda p: procs.in_family(p, stale))
    assert other is not None and other.startswith(f"pid {proc.pid} ({sys.executable} -c import socket")
    assert service.stop()
    assert procs.port_listeners(port) == []
    assert procs.foreign_listener(port, lambda p: True) == "no visible process"


def test_a_descendant_is_in_its_ancestors_family_and_not_the_other_way(service):
    with service.locked():
        proc, state = service.spawn([sys.executable, "-c", "import subprocess, sys; subprocess.run([sys.executable, "
                                     "'-c', 'import time; time.sleep(60)'])"])  # fmt: skip
    deadline = time.monotonic() + 30
    while not (children := psutil.Process(proc.pid).children()):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    child = ProcessIdentity.of(children[0].pid)
    assert procs.in_family(children[0], state.identity)
    assert procs.in_family(psutil.Process(proc.pid), state.identity)
    assert not procs.in_family(psutil.Process(proc.pid), child)
    assert not procs.in_family(psutil.Process(), state.identity)
    assert procs.describe_process(None) == "a process this user cannot see"
    assert procs.describe_process(psutil.Process(proc.pid), width=20).endswith("...)")
