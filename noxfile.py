"""Nox sessions: one per layer of the test pyramid, generated from llmpyramid.layers (THE table).

Sessions only isolate and install; the logic lives in `src/llmpyramid`. Dependencies come from
`uv.lock` (dependency groups in pyproject.toml), so every session runs pinned versions.

    nox -l                 # list sessions (= run_tests.py --suite names = the CI matrix)
    nox                    # default local pyramid (no credentials, no Docker, no network)
    nox -s smoke           # starts the embedded llama.cpp stack when no BASE_URL is given
    nox -s smoke -- --base-url http://host:8080 -k health
    nox -t iac             # every infrastructure-as-code session
    nox -t bench           # benchmarks (print numbers; never part of the default run)
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import nox

sys.path.insert(0, str(Path(__file__).parent / "src"))  # the table is plain data: no install needed
from llmpyramid.layers import LAYERS, REPORT_DIR_ENV, Layer, pytest_report_name, skip_note_name

nox.options.default_venv_backend = "uv"
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

PYTHON = "3.11"
# On Ctrl-C or SIGTERM nox interrupts its session's command; give it time to stop what it started
# (fixture teardowns: servers, emulators, a bounded terraform destroy) before nox escalates.
INTERRUPT_TIMEOUT_S = 5.0  # for the child to act on a terminal Ctrl-C by itself
TERMINATE_TIMEOUT_S = 300.0  # after nox's SIGTERM, before SIGKILL (covers a bounded cleanup destroy)


def _sigterm_as_interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


# nox exits 130 on KeyboardInterrupt; make SIGTERM take the same path (else: exit 143, children orphaned).
signal.signal(signal.SIGTERM, _sigterm_as_interrupt)


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


def cloud_credentials(session: nox.Session) -> None:
    """Real cloud smoke only where SkyPilot finds credentials; otherwise a skip that says why, never a pass."""
    args = list(session.posargs)
    cloud = args[args.index("--cloud") + 1] if "--cloud" in args[:-1] else None
    if cloud is None:
        session.error("nox -s cloud -- --cloud aws|gcp|azure")
    check = session.run("python", "-m", "llmpyramid.cloud", "check", "--cloud", cloud, success_codes=[0, 3],
                        silent=True)  # fmt: skip
    if isinstance(check, str) and "error:" in check:
        skip(session, check.strip().splitlines()[-1])


def skip(session: nox.Session, reason: str) -> None:
    """session.skip, and under a pipeline a note saying why (nox itself exits 0 for a skipped session)."""
    if report_dir := os.environ.get(REPORT_DIR_ENV):
        Path(report_dir, skip_note_name(session.name)).write_text(reason + "\n")
    session.skip(reason)


# Extra preparation a layer's session needs beyond its dependency groups.
PREPARE: dict[str, Callable[[nox.Session], None]] = {"static_iac": checkov_venv, "cloud": cloud_credentials}


def report_args(layer: Layer) -> list[str]:
    """Under a pipeline (llmpyramid.pipelines), pytest also writes a JSON report for its results document."""
    report_dir = os.environ.get(REPORT_DIR_ENV)
    if not report_dir:
        return []
    report_file = Path(report_dir, pytest_report_name(layer.name))
    return ["--json-report", f"--json-report-file={report_file}", "--json-report-omit",
            "keywords", "streams", "log", "collectors_passed"]  # fmt: skip


def make_session(layer: Layer) -> None:
    def body(session: nox.Session) -> None:
        install(session, *layer.groups)
        if prepare := PREPARE.get(layer.name):
            prepare(session)
        timeouts = {"interrupt_timeout": INTERRUPT_TIMEOUT_S, "terminate_timeout": TERMINATE_TIMEOUT_S}
        if layer.is_pytest:
            session.run("python", "-m", "pytest", *layer.pytest_args, *report_args(layer), *session.posargs, **timeouts)
        else:
            session.run(*layer.command, *session.posargs, **timeouts)

    body.__doc__ = layer.checks
    nox.session(body, name=layer.name, python=PYTHON, tags=list(layer.tags), default=layer.default)


for _layer in LAYERS:
    make_session(_layer)
