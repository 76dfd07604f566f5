"""Bad input through every `python -m invoke` task (tasks.py and invoke_tasks/).

Nothing may start before the input is checked: the sandbox's STACK_RUN_DIR / EMULATORS_RUN_DIR are
empty tmp dirs, and the model tripwire turns a stack start into a fast exit 2 (a failed case).

Cases run invoke's own Program in-process (it loads tasks.py from the project root, as `python -m
invoke -r ROOT` does; frontdoor_harness explains why that is safe). SUBPROCESS_SAMPLE, one to three
cases per task family, and the cases marked SUBPROCESS run `python -m invoke` for real, in the namespace.
"""

from __future__ import annotations

import json

import pytest

from tests.support.frontdoor_harness import (
    BAD_NUMBERS,
    BAD_URLS,
    CRED_HOST_URL,
    SECRET,
    SUBPROCESS,
    Sandbox,
    assert_rejected,
    invoke,
    mode_marks,
    subprocess_sample,
)

PIPELINES = ("local", "ci", "staging", "preprod")

# (id, invoke argv, env, expected exit, marks)
CASES: list[tuple[str, list[str], dict[str, str], int]] = [
    # stack.*: every typed flag and STACK_* variable is parsed by the project
    *[(f"stack.up --port {n}", ["stack.up", "--port", n], {}, 3) for n in [*BAD_NUMBERS, "99999"]],
    *[(f"stack.up --threads {n}", ["stack.up", "--threads", n], {}, 3) for n in ["0", "abc", "nan", "1e999"]],
    *[(f"stack.up --parallel {n}", ["stack.up", "--parallel", n], {}, 3) for n in ["0", "-5", "inf"]],
    *[(f"stack.up --ctx-size {n}", ["stack.up", "--ctx-size", n], {}, 3) for n in ["100", "abc", "1e999"]],
    ("stack.up ctx too small per slot", ["stack.up", "--ctx-size", "256", "--parallel", "64"], {}, 3),
    ("stack.up --api-key-file missing", ["stack.up", "--api-key-file", "/nonexistent/key"], {}, 3),
    ("stack.up --api-key-file a directory", ["stack.up", "--api-key-file", "/"], {}, 3),
    (
        "stack.up --api-key and --api-key-file",
        ["stack.up", "--api-key", SECRET, "--api-key-file", "/etc/hostname"],
        {},
        3,
    ),
    ("stack.up --api-key with a bad port", ["stack.up", "--api-key", SECRET, "--port", "abc"], {}, 3),
    ("stack.up STACK_RUN_DIR unwritable", ["stack.up"], {"STACK_RUN_DIR": "/proc/x/y"}, 3),
    ("stack.up unknown flag", ["stack.up", "--bogus"], {}, 3),
    ("preprod unknown flag", ["preprod", "--bogus", "--dry-run"], {}, 3),
    ("unknown task", ["no-such-task"], {}, 3),
    *[(f"stack.logs --lines {n}", ["stack.logs", "--lines", n], {}, 3) for n in [*BAD_NUMBERS, "0"]],
    ("stack.down STACK_STOP_GRACE nan", ["stack.down"], {"STACK_STOP_GRACE": "nan"}, 3),
    ("stack.status STACK_PORT abc", ["stack.status", "--json"], {"STACK_PORT": "abc"}, 3),
    # model.*
    ("model.download --path missing", ["model.download", "--path", "/nonexistent/model.gguf"], {}, 3),
    ("model.download --path a directory", ["model.download", "--path", "/"], {}, 3),
    ("model.download --path not GGUF", ["model.download", "--path", "/etc/hostname"], {}, 3),
    ("model.download MODEL_DIR unwritable", ["model.download"], {"MODEL_DIR": "/proc/x/y"}, 3),
    *[
        (f"model.fetch {u}", ["model.fetch", u], {}, 3)
        for u in [
            "s3://bucket/models/..",
            "s3://bucket/models/.",
            "s3://bucket/",
            "s3://",
            "gs://b/a/../x.gguf",
            "ftp://x/y.gguf",
            "http://[::1/x.gguf",
            "s3://bucket/models\\x.gguf",
            "bucket/models/x.gguf",
        ]
    ],
    ("model.fetch --sha256 not hex", ["model.fetch", "s3://bucket/m/x.gguf", "--sha256", "zz"], {}, 3),
    ("model.fetch --dest unwritable", ["model.fetch", "s3://bucket/m/x.gguf", "--dest", "/proc/x/y"], {}, 3),
    *[(f"model.publish {u}", ["model.publish", u], {}, 3) for u in ["ftp://x/", "s3://", "s3://bucket/models/.."]],
    ("model.publish --path missing", ["model.publish", "s3://bucket/m/", "--path", "/nonexistent/m.gguf"], {}, 3),
    (
        "model.fetch credentials in endpoint",
        ["model.fetch", "s3://bucket/m/x.gguf"],
        {"AWS_ENDPOINT_URL": CRED_HOST_URL, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"},
        2,
    ),
    # emulators.*
    ("emulators.up --only mars", ["emulators.up", "--only", "mars"], {}, 3),
    ("emulators.down --only mars", ["emulators.down", "--only", "aws,mars"], {}, 3),
    ("emulators.up EMULATORS_STARTUP_TIMEOUT nan", ["emulators.up"], {"EMULATORS_STARTUP_TIMEOUT": "nan"}, 3),
    (
        "emulators.up EMULATORS_RUN_DIR unwritable",
        ["emulators.up", "--only", "aws"],
        {"EMULATORS_RUN_DIR": "/proc/x/y"},
        3,
    ),
    *[
        (f"emulators.up AWS_ENDPOINT_URL {u}", ["emulators.up", "--only", "aws"], {"AWS_ENDPOINT_URL": u}, 3)
        for u in ["http://[::1", "ftp://x", "http://h:99999"]
    ],
    (
        "emulators.up AWS_ENDPOINT_URL credentials unreachable",
        ["emulators.up", "--only", "aws"],
        {"AWS_ENDPOINT_URL": CRED_HOST_URL},
        2,
    ),
    (
        "emulators.status STORAGE_EMULATOR_HOST malformed",
        ["emulators.status"],
        {"STORAGE_EMULATOR_HOST": "http://[::1"},
        3,
    ),
    # load (invoke declares some flags as int/float: invoke would convert them itself)
    *[
        (f"load --users {n}", ["load", "--users", n], {"BASE_URL": "http://127.0.0.1:1"}, 3)
        for n in ["abc", "nan", "-5"]
    ],
    *[(f"load --workers {n}", ["load", "--workers", n], {"BASE_URL": "http://127.0.0.1:1"}, 3) for n in ["abc", "-5"]],
    *[(f"load --rate {n}", ["load", "--rate", n], {"BASE_URL": "http://127.0.0.1:1"}, 3) for n in ["nan", "abc"]],
    ("load --tolerance abc", ["load", "--tolerance", "abc"], {"BASE_URL": "http://127.0.0.1:1"}, 3),
    ("load --shape bogus", ["load", "--shape", "bogus"], {"BASE_URL": "http://127.0.0.1:1"}, 3),
    ("load --base-url malformed", ["load", "--base-url", "http://[::1"], {}, 3),
    ("load --base-url credentials unreachable", ["load", "--base-url", CRED_HOST_URL], {}, 2),
    ("load --results-dir unwritable", ["load", "--results-dir", "/proc/x/y"], {"BASE_URL": "http://127.0.0.1:1"}, 3),
    # pipelines: --output is an enum; --dry-run still validates what it was given
    *[(f"{p} --output xml", [p, "--output", "xml"], {}, 3) for p in PIPELINES],
    *[(f"{p} --dry-run --output xml", [p, "--dry-run", "--output", "xml"], {}, 3) for p in PIPELINES],
    *[(f"preprod --dry-run --base-url {u}", ["preprod", "--dry-run", "--base-url", u], {}, 3) for u in BAD_URLS[:4]],
    ("preprod --dry-run credentials malformed", ["preprod", "--dry-run", "--base-url", BAD_URLS[-1]], {}, 3),
    ("preprod --base-url malformed", ["preprod", "--base-url", "http://[::1"], {}, 3),
    ("preprod BASE_URL malformed", ["preprod"], {"BASE_URL": "http://[::1"}, 3),
    ("staging STAGING_PROVISIONER bogus", ["staging", "--dry-run"], {"STAGING_PROVISIONER": "bogus"}, 3),
    ("staging STAGING_EUR_PER_HOUR nan", ["staging", "--dry-run"], {"STAGING_EUR_PER_HOUR": "nan"}, 3),
    ("preprod PREPROD_EUR_PER_RUN -5", ["preprod", "--dry-run"], {"PREPROD_EUR_PER_RUN": "-5"}, 3),
    ("ci PIPELINE_RESULTS_DIR unwritable", ["ci"], {"PIPELINE_RESULTS_DIR": "/proc/x/y"}, 3),
]


# Also run as `python -m invoke`, per task family: the exit 3 of an unknown task or flag comes from
# tasks.py's import-time patch of invoke; the exit 2 cases reach a (dead) loopback endpoint for real.
SUBPROCESS_SAMPLE = subprocess_sample(
    {
        "unknown task",
        "stack.up unknown flag",
        "stack.up STACK_RUN_DIR unwritable",
        "model.download --path not GGUF",
        "model.fetch credentials in endpoint",
        "emulators.up --only mars",
        "emulators.up AWS_ENDPOINT_URL credentials unreachable",
        "load --base-url credentials unreachable",
        "preprod --dry-run credentials malformed",
        "ci PIPELINE_RESULTS_DIR unwritable",
    },
    [c[0] for c in CASES],
)


@pytest.mark.parametrize(
    ("argv", "env", "code"), [pytest.param(*c[1:], id=c[0], marks=mode_marks(c[0], SUBPROCESS_SAMPLE)) for c in CASES]
)
def test_bad_input_is_one_line(sandbox: Sandbox, argv: list[str], env: dict[str, str], code: int) -> None:
    out = sandbox.run(invoke(*argv), env)
    assert_rejected(out, code)


@SUBPROCESS  # the load family's results-file case
def test_load_results_file_is_this_runs(sandbox: Sandbox) -> None:
    results_dir = sandbox.root / "load results"
    marker = sandbox.stale(results_dir / "load_results.json")
    out = sandbox.run(
        invoke("load", "--users", "abc", "--results-dir", str(results_dir)), {"BASE_URL": "http://127.0.0.1:1"}
    )
    assert_rejected(out, 3, results=results_dir / "load_results.json", stale_marker=marker)
    assert json.loads((results_dir / "load_results.json").read_text())["exit_code"] == 3


@SUBPROCESS  # always: `stack.logs --follow` runs `tail -f`, and an in-process case may not start a process
def test_stack_logs_follow_with_shell_metacharacters_in_the_run_dir(sandbox: Sandbox) -> None:
    """Issue 13 item 1: STACK_RUN_DIR reached `tail -f` through a shell."""
    run_dir = sandbox.path_with_spaces("stack")
    run_dir.mkdir(parents=True)
    (run_dir / "server.log").write_text("first line\n")
    out = sandbox.run(invoke("stack.logs", "--lines", "5"), {"STACK_RUN_DIR": str(run_dir)})
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.describe()
    assert "first line" in out.stdout, out.describe()
    # --follow never returns on a live file: a missing one makes tail exit, so the case ends
    (run_dir / "server.log").unlink()
    out = sandbox.run(invoke("stack.logs", "--follow"), {"STACK_RUN_DIR": str(run_dir)})
    assert "Traceback" not in out.stdout + out.stderr, out.describe()
    assert not sandbox.pwned.exists()


def test_api_key_file_path_with_spaces_works_and_the_key_stays_hidden(sandbox: Sandbox) -> None:
    key_file = sandbox.path_with_spaces("key")
    key_file.parent.mkdir(parents=True)
    key_file.write_text(SECRET)
    out = sandbox.run(invoke("stack.up", "--api-key-file", str(key_file), "--port", "99999"))
    assert_rejected(out, 3)  # the key file is read, the port rejected, and the key shown nowhere
