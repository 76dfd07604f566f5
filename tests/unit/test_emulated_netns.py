"""The emulated cloud's network namespace: its ephemeral port range is changed only in a namespace this run
created (the sysctl is per namespace: one someone else made is not ours to change), and restored after."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from llmpyramid.cloud import emulator
from llmpyramid.cloud.emulator import CREATED_FROM_ENV, EPHEMERAL_PORTS, OWNED_ENV

HOST_RANGE = "32768\t60999\n"
NARROWED = "{} {}\n".format(*EPHEMERAL_PORTS)


@pytest.mark.parametrize(
    ("marker", "here", "created"),
    [
        ("net:[1]", "net:[2]", True),  # run_in_netns left namespace 1; we are in a new one
        (None, "net:[2]", False),  # `netns --inside` run by hand
        ("net:[2]", "net:[2]", False),  # a marker inherited into the namespace it names: nothing was created
        ("net:[1]", None, False),  # no /proc to tell
    ],
)
def test_created_by_this_run_needs_the_creators_marker_naming_another_namespace(monkeypatch, marker, here, created):
    monkeypatch.setattr(emulator, "netns_id", lambda: here)
    environ = {} if marker is None else {CREATED_FROM_ENV: marker}
    assert emulator.created_by_this_run(environ) is created


@pytest.fixture
def namespace(monkeypatch, tmp_path):
    """A fake namespace: its port range sysctl in a file, the command's run recorded with the range it saw."""
    sysctl = tmp_path / "ip_local_port_range"
    sysctl.write_text(HOST_RANGE)
    runs = []
    monkeypatch.setattr(emulator, "PORT_RANGE_SYSCTL", sysctl)
    monkeypatch.setattr(emulator, "netns_id", lambda: "net:[2]")
    monkeypatch.setattr(emulator, "loopback_only_reason", lambda: None)
    monkeypatch.setattr(emulator, "bring_loopback_up", lambda: runs.append("lo up"))

    def call(command, env=None):
        runs.append((command, sysctl.read_text(), dict(os.environ if env is None else env)))
        return 0

    monkeypatch.setattr(emulator.subprocess, "call", call)
    return sysctl, runs


def test_a_namespace_this_run_created_is_narrowed_for_the_command_then_restored(monkeypatch, namespace):
    sysctl, runs = namespace
    monkeypatch.setenv(CREATED_FROM_ENV, "net:[1]")
    assert emulator.inside_netns(["cmd"]) == 0
    assert runs[0] == "lo up"
    command, seen, env = runs[1]
    assert (command, seen) == (["cmd"], NARROWED)
    assert env[OWNED_ENV] == "net:[2]" and CREATED_FROM_ENV not in env
    assert sysctl.read_text() == HOST_RANGE


def test_a_namespace_this_run_did_not_create_is_left_as_it_is(monkeypatch, namespace):
    sysctl, runs = namespace
    monkeypatch.delenv(CREATED_FROM_ENV, raising=False)
    assert emulator.inside_netns(["cmd"]) == 0
    [(command, seen, env)] = runs  # and loopback was not touched either
    assert (command, seen) == (["cmd"], HOST_RANGE) and OWNED_ENV not in env
    assert sysctl.read_text() == HOST_RANGE


def test_an_isolated_namespace_we_cannot_replace_is_used_unchanged(monkeypatch, namespace):
    sysctl, runs = namespace
    monkeypatch.setattr(emulator, "_cannot_create_netns", lambda: "creating a network namespace needs root")
    assert emulator.run_in_netns(["cmd"]) == 0
    [(command, seen, env)] = runs
    assert (command, seen) == (["cmd"], HOST_RANGE) and emulator.UNAVAILABLE_ENV not in env
    assert sysctl.read_text() == HOST_RANGE


def test_the_creator_marks_the_namespace_it_leaves(monkeypatch, namespace):
    _, runs = namespace
    monkeypatch.setattr(emulator, "_cannot_create_netns", lambda: None)
    assert emulator.run_in_netns(["cmd"]) == 0
    [(command, _, env)] = runs
    assert command[1:3] == ["-n", "--"] and command[-4:] == ["netns", "--inside", "--", "cmd"]
    assert env[CREATED_FROM_ENV] == "net:[2]"


def test_for_real_the_range_changes_inside_our_namespace_only():
    """Root only: a real `unshare -n`; the command sees the narrowed range, this namespace keeps its own."""
    if reason := emulator._cannot_create_netns():
        pytest.skip(reason)
    before = emulator.PORT_RANGE_SYSCTL.read_text()
    probe = (
        "from llmpyramid.cloud import emulator; "
        "print(emulator.PORT_RANGE_SYSCTL.read_text().split(), emulator.namespace_is_ours())"
    )
    out = subprocess.run(
        [sys.executable, "-m", "llmpyramid.cloud", "netns", "--", sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[0] == f"{[str(p) for p in EPHEMERAL_PORTS]} True"
    assert emulator.PORT_RANGE_SYSCTL.read_text() == before
