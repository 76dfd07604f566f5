"""The GitHub workflows, checked offline: the workflow JSON Schema (check-jsonschema), the Actions
security linter (zizmor), and the project's own rules — least-privilege permissions, actions pinned
by commit, pinned tool versions, no `${{ }}` inside shell scripts, the test matrix from the layer
table, SARIF to code scanning, and the preprod workflow's schedule, inputs, concurrency and sweep.
actionlint cannot be installed offline; it runs in test.yml on GitHub.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmpyramid.layers import LAYERS

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
VERSION_COMMENT = re.compile(r"@[0-9a-f]{40} # v\d+\.\d+\.\d+$", re.M)
VERSION_INPUTS = {"version", "terraform_version", "tflint_version", "go-version", "python-version"}


def tool(name: str) -> str:
    """The CLI from this interpreter's environment (the lint group), else PATH; skip if absent."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if not found:
        pytest.skip(f"skipped: {name} not installed (it is in the `lint` dependency group)")
    return found


def load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    if True in doc:  # YAML 1.1 reads the key `on` as a boolean
        doc["on"] = doc.pop(True)
    return doc


def steps(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for job in doc["jobs"].values() for s in job.get("steps", [])]


def workflow(name: str) -> dict[str, Any]:
    return load(ROOT / ".github" / "workflows" / name)


def test_workflows_exist() -> None:
    assert {p.name for p in WORKFLOWS} >= {"test.yml", "iac.yml", "preprod.yml"}


def test_github_workflow_schema() -> None:
    cmd = [tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *map(str, WORKFLOWS)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_zizmor_reports_nothing() -> None:
    cmd = [tool("zizmor"), "--offline", "--format", "json", str(ROOT / ".github" / "workflows")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    findings = json.loads(proc.stdout or "[]")
    listed = [f"{f['ident']}: {f['desc']}" for f in findings]
    assert proc.returncode == 0 and not findings, f"{len(findings)} zizmor findings: {listed}\n{proc.stderr[-500:]}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
class TestEveryWorkflow:
    def test_no_permissions_by_default_and_declared_per_job(self, path: Path) -> None:
        doc = load(path)
        assert doc.get("permissions") == {}, "top level must be `permissions: {}`"
        for name, job in doc["jobs"].items():
            assert "permissions" in job, f"job {name} does not declare its permissions"
            assert "write-all" not in json.dumps(job["permissions"])

    def test_actions_pinned_by_commit_with_version_comment(self, path: Path) -> None:
        text = path.read_text()
        for step in steps(load(path)):
            uses = step.get("uses")
            if uses and not uses.startswith("./"):
                assert PINNED.match(uses), f"{uses} is not pinned by a full commit SHA"
        uses_lines = [line for line in text.splitlines() if "uses:" in line and "@" in line]
        assert all(VERSION_COMMENT.search(line) for line in uses_lines), "each pin needs its `# vX.Y.Z` comment"

    def test_checkout_keeps_no_credentials(self, path: Path) -> None:
        for step in steps(load(path)):
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step.get("with", {}).get("persist-credentials") is False

    def test_tool_versions_pinned(self, path: Path) -> None:
        doc = load(path)
        for step in steps(doc):
            for key, value in step.get("with", {}).items():
                if key in VERSION_INPUTS:
                    assert str(value).startswith("${{ env.") or re.fullmatch(r"v?\d+\.\d+\.\d+", str(value)), (
                        f"{key}: {value} is not an exact version"
                    )
        for key, value in doc.get("env", {}).items():
            if key.endswith("_VERSION"):
                assert re.fullmatch(r"v?\d+\.\d+\.\d+", str(value)), f"{key}={value} is not an exact version"

    def test_no_expressions_inside_shell_scripts(self, path: Path) -> None:
        for step in steps(load(path)):
            assert "${{" not in step.get("run", ""), f"step {step.get('name')!r}: pass values through env"


def test_test_matrix_is_the_default_layers_of_the_table(tmp_path: Path) -> None:
    """The `sessions` job's own script, run here: its matrix must be the table's default layers."""
    doc = workflow("test.yml")
    (list_step,) = [s for s in doc["jobs"]["sessions"]["steps"] if s.get("id") == "list"]
    assert doc["jobs"]["nox"]["strategy"]["matrix"]["session"] == "${{ fromJson(needs.sessions.outputs.matrix) }}"
    for needed in ("bash", "jq", "uv"):
        if not shutil.which(needed):
            pytest.skip(f"skipped: {needed} not on PATH")
    output = tmp_path / "github_output"
    proc = subprocess.run(
        ["bash", "-eo", "pipefail", "-c", list_step["run"]],
        cwd=ROOT,
        # the script's `uv run` must neither sync the shared .venv nor reach the package index
        env={**os.environ, "GITHUB_OUTPUT": str(output), "UV_NO_SYNC": "1", "UV_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-1000:]
    (line,) = output.read_text().splitlines()
    key, _, value = line.partition("=")
    assert key == "matrix"
    assert json.loads(value) == [layer.name for layer in LAYERS if layer.default]


def test_test_workflow_runs_actionlint_and_uploads_results() -> None:
    doc = workflow("test.yml")
    runs = " ".join(s.get("run", "") for s in steps(doc))
    assert "github.com/rhysd/actionlint/cmd/actionlint@${ACTIONLINT_VERSION}" in runs
    uploads = [s for s in steps(doc) if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert uploads and all(s.get("if") == "always()" for s in uploads)


def test_every_matrix_session_is_gated_on_its_verdict_and_the_namespace_layer_runs_as_root() -> None:
    """On a runner without root every cloud_emulated test would skip and the job show green."""
    job = workflow("test.yml")["jobs"]["nox"]
    names = [s.get("name") for s in job["steps"]]
    session_step = job["steps"][names.index("nox session")]
    assert 'sudo --preserve-env env "PATH=$PATH" uv run nox -s "$SESSION"' in session_step["run"]
    needs_root = sorted(layer.name for layer in LAYERS if "netns" in (layer.wrap or ()))
    assert needs_root == ["cloud_emulated"] and '"$SESSION" = cloud_emulated' in session_step["run"]
    gate = job["steps"][names.index("nox session") + 1]
    assert gate["run"] == 'uv run python -m llmpyramid.verdict "results/$SESSION.json"' and "if" not in gate


def test_iac_sends_checkov_and_rego_sarif_to_code_scanning() -> None:
    job = workflow("iac.yml")["jobs"]["nox-iac"]
    assert job["permissions"] == {"contents": "read", "security-events": "write"}
    sarif = {
        s["with"]["sarif_file"]: s["with"]["category"]
        for s in job["steps"]
        if s.get("uses", "").startswith("github/codeql-action/upload-sarif@")
    }
    assert sarif == {"results/checkov.sarif": "checkov", "results/rego.sarif": "rego"}


class TestPreprodWorkflow:
    @pytest.fixture(autouse=True)
    def _load(self) -> None:
        self.doc = workflow("preprod.yml")
        self.job = self.doc["jobs"]["preprod"]

    def test_weekly_schedule_and_manual_dispatch_with_a_cloud_choice(self) -> None:
        on = self.doc["on"]
        (schedule,) = on["schedule"]
        _minute, _hour, dom, month, dow = schedule["cron"].split()
        assert dom == month == "*" and dow.isdigit(), "weekly"
        inputs = on["workflow_dispatch"]["inputs"]
        assert inputs["cloud"]["type"] == "choice" and inputs["cloud"]["options"] == ["aws", "gcp", "azure"]
        assert inputs["base_url"]["type"] == "string"

    def test_inputs_reach_the_commands_through_env_only(self) -> None:
        assert "inputs.base_url" in self.job["env"]["BASE_URL"] and "inputs.cloud" in self.job["env"]["CLOUD"]
        runs = [s.get("run", "") for s in self.job["steps"]]
        assert 'uv run invoke preprod --base-url "$BASE_URL" --output json' in runs
        assert 'uv run nox -s cloud -- --cloud "$CLOUD"' in runs

    def test_credentials_by_oidc_for_each_cloud(self) -> None:
        assert self.job["permissions"] == {"contents": "read", "id-token": "write"}
        by_cloud = {s["if"]: s["uses"].split("@")[0] for s in self.job["steps"] if "CLOUD ==" in s.get("if", "")}
        assert by_cloud == {
            "env.CLOUD == 'aws'": "aws-actions/configure-aws-credentials",
            "env.CLOUD == 'gcp'": "google-github-actions/auth",
            "env.CLOUD == 'azure'": "azure/login",
        }
        assert self.job["environment"] == "preprod", "secrets belong to a protected environment"

    def test_one_run_at_a_time_and_the_sweep_always_runs(self) -> None:
        assert self.doc["concurrency"] == {"group": "preprod", "cancel-in-progress": False}
        (sweep,) = [s for s in self.job["steps"] if "cloud.sweep" in s.get("run", "")]
        # the cloud this run launched on (without --cloud it always swept aws)
        assert sweep["run"] == 'uv run invoke cloud.sweep --cloud "$CLOUD"' and sweep["if"] == "always()"
        names = [s.get("name") for s in self.job["steps"]]
        assert names.index(sweep["name"]) > names.index("Cloud spot smoke")
        # no --older-than: it removes this run's resources (by the run id every one carries) at any age
        assert self.job["env"]["LLMPYRAMID_RUN_ID"] == "gh-${{ github.run_id }}-${{ github.run_attempt }}"

    def test_the_key_reaches_only_the_pipeline_step_after_the_allow_list(self) -> None:
        assert "API_KEY" not in self.job["env"], "a job-level secret is in every step's environment"
        holders = [s["name"] for s in self.job["steps"] if "secrets.PREPROD_API_KEY" in str(s.get("env", {}))]
        assert holders == ["Pre-production pipeline"]
        assert self.job["steps"][0]["name"] == "Check the server against the allow-list"

    @pytest.mark.parametrize(
        ("requested", "allowed", "code"),
        [
            ("", "", 0),  # the protected PREPROD_BASE_URL
            ("https://pre.example.net", "https://a.example.net https://pre.example.net", 0),
            ("https://evil.example.com", "https://pre.example.net", 1),
            ("https://pre.example.net.evil.com", "https://pre.example.net", 1),
            ("https://pre.example.net", "", 1),
        ],
    )
    def test_allow_list_step_refuses_a_server_nobody_listed(self, requested: str, allowed: str, code: int) -> None:
        step = self.job["steps"][0]
        assert set(step["env"]) == {"REQUESTED", "ALLOWED"} and "inputs.base_url" in step["env"]["REQUESTED"]
        env = {"PATH": os.environ["PATH"], "REQUESTED": requested, "ALLOWED": allowed}
        done = subprocess.run(["bash", "-e", "-c", step["run"]], env=env, capture_output=True, text=True, timeout=30)
        assert done.returncode == code, done.stdout + done.stderr
        if code:
            assert "is not in PREPROD_ALLOWED_BASE_URLS" in done.stdout

    def test_one_cloud_launch_per_run(self) -> None:
        """The cloud smoke is its own step; the preprod pipeline before it must not launch another."""
        (pipeline,) = [s for s in self.job["steps"] if "invoke preprod" in s.get("run", "")]
        assert pipeline["env"]["PREPROD_CLOUDS"] == "none"


# Variables read by a tool a step runs, not by this project's code.
READ_BY_TOOLS = {"GITHUB_TOKEN"}  # tflint --init downloads its rulesets with it


def _read_by_code() -> str:
    return "\n".join(p.read_text() for d in ("src", "invoke_tasks") for p in (ROOT / d).rglob("*.py"))


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_variable_a_workflow_sets_is_read(path: Path) -> None:
    """A name the code never reads (LLAMA_API_KEY where the code reads API_KEY) runs the job keyless:
    each variable a workflow sets is read by the code or by the workflow's own steps."""
    doc = load(path)
    text = path.read_text()
    code = _read_by_code()
    scopes = [doc, *doc["jobs"].values(), *steps(doc)]
    names = {name for scope in scopes for name in (scope.get("env") or {})}
    unread = sorted(
        n for n in names - READ_BY_TOOLS
        if f'"{n}"' not in code and not re.search(rf"\$\{{?{n}\b|env\.{n}\b", text)
    )  # fmt: skip
    assert not unread, f"{path.name} sets {unread}, which nothing reads"
