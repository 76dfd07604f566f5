"""Nox sessions: one per layer of the test pyramid, each in its own virtualenv.

Sessions only isolate and install; the logic lives in `src/llmpyramid`. Dependencies come from
`uv.lock` (dependency groups in pyproject.toml), so every session runs pinned versions.

    nox -l                 # list sessions
    nox                    # default local pyramid (no credentials, no Docker needed)
    nox -s smoke           # starts the embedded llama.cpp stack when no BASE_URL is given
    nox -t iac             # every infrastructure-as-code session
    nox -t bench           # benchmarks (print numbers; never part of the default run)
"""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "uv"
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True
# The default local pyramid: everything that needs no cloud account, no Docker and no network.
nox.options.sessions = [
    "lint",
    "unit",
    "stack",
    "smoke",
    "integration",
    "contract",
    "load",
    "load_faults",
    "static_iac",
    "terraform",
    "localstack",
]

PYTHON = "3.11"


def install(session: nox.Session, *groups: str) -> None:
    """Install the project plus the given dependency groups, exactly as pinned in uv.lock."""
    args = ["uv", "sync", "--frozen", "--no-default-groups"]
    for group in groups:
        args += ["--group", group]
    session.run_install(*args, env={"UV_PROJECT_ENVIRONMENT": session.virtualenv.location})


def pytest(session: nox.Session, *args: str) -> None:
    """Run pytest with the session's extra arguments (`nox -s smoke -- -k health`)."""
    session.run("pytest", *args, *session.posargs)


# --- code quality -----------------------------------------------------------------------------


@nox.session(python=PYTHON, tags=["quality"])
def lint(session: nox.Session) -> None:
    """Ruff (lint + format check) and mypy over the library, tests and front doors."""
    install(session, "dev")  # mypy must see every layer's real dependencies, not Any
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")


# --- the inference pyramid --------------------------------------------------------------------


@nox.session(python=PYTHON, tags=["pyramid"])
def unit(session: nox.Session) -> None:
    """Unit tests: instant, no network, mocks allowed only here (covers every layer's library code)."""
    install(session, "test", "load", "iac", "emulators")
    pytest(session, "tests/unit")


@nox.session(python=PYTHON, tags=["pyramid"])
def stack(session: nox.Session) -> None:
    """The embedded llama.cpp stack for real: lifecycle, failure modes, invoke tasks, wait_healthy.sh."""
    install(session, "test")
    pytest(session, "tests/stack")


# --- inference suites -------------------------------------------------------------------------
# With no BASE_URL / --base-url, each session starts the embedded llama.cpp stack once (free port,
# temporary run dir) and stops it afterwards. `nox -s smoke -- --base-url http://host:8080`.


@nox.session(python=PYTHON, tags=["pyramid"])
def smoke(session: nox.Session) -> None:
    """Smoke: health, completions, chat, models, p95 latency under SMOKE_LATENCY_MS."""
    install(session, "test")
    pytest(session, "tests/test_smoke.py", "-m", "smoke")


@nox.session(python=PYTHON, tags=["pyramid"])
def integration(session: nox.Session) -> None:
    """Integration: concurrency, streaming, invalid input, max_tokens/stop, API key, memory stability."""
    install(session, "test")
    pytest(session, "tests/test_integration.py", "-m", "integration")


@nox.session(python=PYTHON, tags=["pyramid"])
def contract(session: nox.Session) -> None:
    """Contract: OpenAI schemas for bodies and SSE chunks, headers, error object, official client."""
    install(session, "test")
    pytest(session, "tests/test_contract.py", "-m", "contract")


# --- load -------------------------------------------------------------------------------------


@nox.session(python=PYTHON, tags=["load"])
def load(session: nox.Session) -> None:
    """LLM load test with locust, 20 s (`nox -s load -- --duration 60`; any `python -m llmpyramid.load` flag)."""
    install(session, "load")
    session.run("python", "-m", "llmpyramid.load", "--duration", "20", *session.posargs)


@nox.session(python=PYTHON, tags=["load"])
def load_faults(session: nox.Session) -> None:
    """The load layer for real: seed locust command, bad input, server dying, unreachable, no leftovers."""
    install(session, "test", "load")
    pytest(session, "tests/load", "-m", "load")


@nox.session(python=PYTHON, tags=["bench"])
def bench_stack(session: nox.Session) -> None:
    """Benchmark of the embedded stack: up-to-healthy time, RSS idle/after 100 requests, tok/s at n_parallel 1/4/8."""
    install(session, "test")
    session.run("python", "-m", "llmpyramid.stack.bench", *session.posargs)


@nox.session(python=PYTHON, tags=["load", "bench"])
def bench(session: nox.Session) -> None:
    """Benchmark of the load harness: fidelity vs server timings, CPU per 1k tokens, max rps on one core."""
    install(session, "load")
    session.run("python", "-m", "llmpyramid.load.bench", *session.posargs)


# --- infrastructure as code -------------------------------------------------------------------
# The terraform CLI config (local provider mirror from TF_PLUGIN_MIRROR or a well-known path) is
# generated at run time by llmpyramid.iac; nothing machine-specific is committed.


def checkov_venv(session: nox.Session) -> str:
    """checkov in its own venv beside the session's (its `hcl2` clashes with python-hcl2)."""
    venv = f"{session.virtualenv.location}-checkov"
    session.run_install("uv", "venv", "--quiet", "--allow-existing", venv, external=True)
    session.run_install(
        "uv", "pip", "install", "--quiet", "--python", f"{venv}/bin/python",
        "-r", "requirements/checkov.txt", external=True,
    )  # fmt: skip
    return f"{venv}/bin/checkov"


@nox.session(python=PYTHON, tags=["iac"])
def static_iac(session: nox.Session) -> None:
    """Static IaC: fmt, TFLint (or skipped), Checkov SARIF, Rego + *_test.rego, broken fixtures caught.

    Checkov runs from requirements/checkov.txt in its own venv; results land in results/.
    """
    install(session, "test", "iac")
    session.env["IAC_CHECKOV_BIN"] = checkov_venv(session)
    pytest(session, "tests/iac", "--ignore=tests/iac/test_terraform_native.py")


@nox.session(python=PYTHON, tags=["iac"])
def terraform(session: nox.Session) -> None:
    """terraform test per module (plan-only, mocked providers); offline-missing providers skip.

    hcloud and google cannot be installed offline: reported as skipped, never passed.
    """
    install(session, "test", "iac")
    pytest(session, "tests/iac/test_terraform_native.py", "-m", "terraform")


# --- emulated cloud ---------------------------------------------------------------------------


@nox.session(python=PYTHON, tags=["iac"])
def localstack(session: nox.Session) -> None:
    """Emulated AWS/GCS: terraform/aws applied to moto, checked, destroyed; model storage round trip.

    Starts moto + fake-gcs-server on free loopback ports (stopped afterwards) unless AWS_ENDPOINT_URL /
    STORAGE_EMULATOR_HOST name running emulators (e.g. docker-compose.localstack.yml). No terraform
    on PATH: the apply tests are reported as skipped, never passed. `-- -k Config`: config checks only.
    """
    install(session, "test", "emulators", "iac")
    pytest(session, "tests/integration")
