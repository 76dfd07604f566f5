"""Nox sessions: one per layer of the test pyramid, generated from llmpyramid.layers (THE table).

A session installs its layer's dependency groups (pinned by `uv.lock`), then runs the layer's one
executor, `python -m llmpyramid.run_tests --suite NAME`: the same call, flags and results document
as `scripts/run_tests.py --suite NAME`. The document goes to results/NAME.json (under a pipeline:
the step's directory).

    nox -l                 # list sessions (= run_tests.py --suite names = the CI matrix)
    nox                    # default local pyramid (no credentials, no Docker, no network)
    nox -s smoke           # starts the embedded llama.cpp stack when no BASE_URL is given
    nox -s smoke -- --base-url http://host:8080 -k health
    nox -s unit -- -- -x tests/unit/test_config.py   # after the second --: pytest's own arguments
    nox -s load -- --duration 30s -- --users 4        # ... or the load command's flags
    nox -t iac             # every infrastructure-as-code session
    nox -t bench           # benchmarks (print numbers; never part of the default run)
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import nox

sys.path.insert(0, str(Path(__file__).parent / "src"))  # the table and the signal rule need no install
from llmpyramid.cli import interrupt_once, interrupted
from llmpyramid.layers import LAYERS, REPORT_DIR_ENV, STEP_RESULTS_FILE, Layer

nox.options.default_venv_backend = "uv"
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

PYTHON = "3.11"
# On Ctrl-C or SIGTERM nox interrupts its session's command, then gives it time to stop what it started
# (fixture teardowns: servers, emulators, a bounded terraform destroy) before it escalates to SIGKILL.
# nox's first step waits INTERRUPT_TIMEOUT_S for the command to act on a terminal's Ctrl-C by itself, sending
# nothing: where nox alone was signalled (a pipeline stopping its steps, `kill`, a CI cancel) the command
# heard of it only that much later (5 s, measured in every interrupted pipeline). So it is told at once; after
# a terminal's Ctrl-C, nox's SIGTERM is a second signal, which the command holds back.
INTERRUPT_TIMEOUT_S = 0.0
TERMINATE_TIMEOUT_S = 300.0  # after nox's SIGTERM, before SIGKILL (covers a bounded cleanup destroy)


# nox exits 130 on KeyboardInterrupt: SIGTERM takes the same path (else: exit 143, children orphaned), and
# a second signal while nox waits for its session's command to stop is held back instead of abandoning it.
interrupt_once()


def stop_if_interrupted() -> None:
    """nox swallows the interrupt when the command it interrupted still exits 0 (an install that was just
    finishing): the session then stops at its next step, as it would have in the command."""
    if interrupted():
        raise KeyboardInterrupt


def install(session: nox.Session, *groups: str) -> None:
    """Install the project plus the given dependency groups, exactly as pinned in uv.lock."""
    args = ["uv", "sync", "--frozen", "--no-default-groups"]
    for group in groups:
        args += ["--group", group]
    session.run_install(*args, env={"UV_PROJECT_ENVIRONMENT": session.virtualenv.location})


def checkov_venv(session: nox.Session) -> None:
    """checkov in its own venv beside the session's (its `hcl2` module clashes with python-hcl2)."""
    venv = f"{session.virtualenv.location}-checkov"
    session.run_install("uv", "venv", "--quiet", "--allow-existing", venv, external=True)
    session.run_install(
        "uv", "pip", "install", "--quiet", "--python", f"{venv}/bin/python",
        "-r", "requirements/checkov.txt", external=True,
    )  # fmt: skip
    session.env["IAC_CHECKOV_BIN"] = f"{venv}/bin/checkov"


# Debian packages behind the system tools the emulated cloud needs: SkyPilot syncs with rsync; the
# loopback-only network namespace is made with unshare (util-linux) and brought up with ip (iproute2).
CLOUD_EMULATED_TOOLS = {"rsync": "rsync", "ip": "iproute2", "unshare": "util-linux"}


def system_tools(session: nox.Session) -> None:
    """Install missing system tools with apt where we may (root), else stop naming the command that does."""
    missing = sorted({pkg for tool, pkg in CLOUD_EMULATED_TOOLS.items() if shutil.which(tool) is None})
    if not missing:
        return
    command = f"apt-get install -y {' '.join(missing)}"
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        session.error(f"{session.name} needs {', '.join(missing)}: run `sudo {command}`")
    session.log(f"installing {', '.join(missing)} (apt)")
    session.run_install("apt-get", "update", "-qq", external=True)
    session.run_install("apt-get", "install", "-y", "-qq", *missing, external=True)


# Extra preparation a layer's session needs beyond its dependency groups.
PREPARE: dict[str, Callable[[nox.Session], None]] = {"static_iac": checkov_venv, "cloud_emulated": system_tools}


def results_file(layer: Layer) -> str:
    """Where the session's results document goes: the pipeline step's directory, else results/NAME.json."""
    report_dir = os.environ.get(REPORT_DIR_ENV)
    return str(Path(report_dir, STEP_RESULTS_FILE) if report_dir else Path("results", f"{layer.name}.json"))


def all_skipped(document: str) -> str | None:
    """The reasons, when every test of the session's results document was skipped."""
    try:
        doc = json.loads(Path(document).read_text())
    except (OSError, ValueError):
        return None
    summary = doc.get("summary") or {}
    if not summary.get("total") or summary.get("skipped") != summary["total"]:
        return None
    return "; ".join(sorted({t.get("reason", "") for t in doc.get("tests", [])} - {""})) or "every test was skipped"


def make_session(layer: Layer) -> None:
    def body(session: nox.Session) -> None:
        install(session, *layer.groups)
        stop_if_interrupted()
        if prepare := PREPARE.get(layer.name):
            prepare(session)
            stop_if_interrupted()
        document = results_file(layer)
        session.run(
            "python", "-m", "llmpyramid.run_tests", "--suite", layer.name, "--results-file", document,
            *session.posargs, interrupt_timeout=INTERRUPT_TIMEOUT_S, terminate_timeout=TERMINATE_TIMEOUT_S,
        )  # fmt: skip
        stop_if_interrupted()
        if why := all_skipped(document):
            session.skip(why)  # nox lists it as skipped, with why: a skip is never a success

    body.__doc__ = layer.checks
    nox.session(body, name=layer.name, python=PYTHON, tags=list(layer.tags), default=layer.default)


for _layer in LAYERS:
    make_session(_layer)
