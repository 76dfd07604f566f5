"""The terraform CLI with a CLI config generated at run time (local provider mirror, if any).

Nothing machine-specific is committed: the mirror comes from TF_PLUGIN_MIRROR or a well-known
default, and each run writes its own CLI config, data dirs and plugin cache under a run directory.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import hcl2

from llmpyramid.errors import ConfigError, InfrastructureError

DEFAULT_MIRRORS = ("/opt/tf-plugins", "/usr/share/terraform/plugins", "~/.terraform.d/plugins")
REGISTRY = "registry.terraform.io"
OFFLINE_AWS_PROVIDER = """\
# Written by llmpyramid.iac for an offline plan: fake credentials, no API calls before apply.
provider "aws" {
  region                      = "eu-central-1"
  access_key                  = "offline-plan"
  secret_key                  = "offline-plan"
  skip_credentials_validation = true
  skip_requesting_account_id  = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
}
"""


def terraform_bin() -> str:
    found = os.environ.get("TERRAFORM_BIN") or shutil.which("terraform")
    if not found or not Path(found).exists():
        raise ConfigError(
            "terraform not found: install Terraform >= 1.7 "
            "(https://developer.hashicorp.com/terraform/install) or set TERRAFORM_BIN"
        )
    return found


def find_mirror() -> Path | None:
    """TF_PLUGIN_MIRROR (must exist), else the first existing well-known mirror, else None."""
    if env := os.environ.get("TF_PLUGIN_MIRROR"):
        path = Path(env).expanduser()
        if not path.is_dir():
            raise ConfigError(f"TF_PLUGIN_MIRROR={env} is not a directory")
        return path
    for candidate in DEFAULT_MIRRORS:
        path = Path(candidate).expanduser()
        if path.is_dir() and any(path.glob("*/*/*")):
            return path
    return None


def mirrored_providers(mirror: Path | None) -> set[str]:
    """Provider sources (host/namespace/type) present in a filesystem mirror, packed or unpacked."""
    if mirror is None:
        return set()
    return {"/".join(p.relative_to(mirror).parts) for p in mirror.glob("*/*/*") if p.is_dir() and any(p.iterdir())}


def registry_reachable(host: str = REGISTRY, timeout: float = 3.0) -> bool:
    """The registry answered a request (its service discovery document): a DNS answer alone is not
    enough where names resolve but nothing can leave the machine."""
    import httpx

    try:
        return httpx.get(f"https://{host}/.well-known/terraform.json", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def required_providers(module: Path) -> dict[str, str]:
    """Local name -> source address (host/namespace/type) from a module's terraform blocks."""
    found: dict[str, str] = {}
    for tf in sorted(module.glob("*.tf")):
        with tf.open() as fh:
            doc = hcl2.load(fh, serialization_options=_HCL_OPTIONS)
        for block in doc.get("terraform", []):
            for req in block.get("required_providers", []):
                for local, spec in req.items():
                    source = spec.get("source", f"hashicorp/{local}") if isinstance(spec, dict) else spec
                    found[local] = source if source.count("/") == 2 else f"{REGISTRY}/{source}"
    return found


_HCL_OPTIONS = hcl2.SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True)


@dataclass
class Result:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def first_error(self) -> str:
        for line in self.output.splitlines():
            if line.strip().startswith(("Error:", "│ Error:")):
                return " ".join(line.replace("│", "").split())
        tail = [line for line in self.output.splitlines() if line.strip()]
        return tail[-1].strip() if tail else f"exit {self.returncode}"


def _require_aws_only(module: Path) -> None:
    """Offline plans can only use the aws provider (the one in the local mirror)."""
    sources = set(required_providers(module).values())
    if sources - {f"{REGISTRY}/hashicorp/aws"}:
        raise ConfigError(f"offline plans support the aws provider only; {module} needs {sorted(sources)}")


@dataclass
class Terraform:
    """One run's terraform environment: CLI config, plugin cache and data dirs under run_dir."""

    run_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="llmpyramid-tf-")))
    mirror: Path | None = field(default_factory=find_mirror)
    timeout: float = 600.0

    def __post_init__(self) -> None:
        self.binary = terraform_bin()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.cli_config = self.write_cli_config()

    @cached_property
    def mirrored(self) -> set[str]:
        return mirrored_providers(self.mirror)

    @cached_property
    def online(self) -> bool:
        return registry_reachable()

    def write_cli_config(self) -> Path:
        cache = self.run_dir / "plugin-cache"
        cache.mkdir(exist_ok=True)
        lines = [f"plugin_cache_dir = {json.dumps(str(cache))}", "", "provider_installation {"]
        if self.mirror is not None and self.mirrored:
            include = json.dumps(sorted(self.mirrored))
            lines += [
                "  filesystem_mirror {",
                f"    path    = {json.dumps(str(self.mirror))}",
                f"    include = {include}",
                "  }",
                "  direct {",
                f"    exclude = {include}",
                "  }",
            ]
        else:
            lines += ["  direct {}"]
        lines.append("}")
        path = self.run_dir / "terraform.rc"
        path.write_text("\n".join(lines) + "\n")
        return path

    def env(self, data_dir: Path | None = None) -> dict[str, str]:
        env = {
            **os.environ,
            "TF_CLI_CONFIG_FILE": str(self.cli_config),
            "TF_IN_AUTOMATION": "1",
            "TF_INPUT": "0",
            "CHECKPOINT_DISABLE": "1",  # no version-check call home
        }
        env.pop("TF_DATA_DIR", None)
        if data_dir is not None:
            env["TF_DATA_DIR"] = str(data_dir)
        return env

    def run(self, *args: str, cwd: Path, data_dir: Path | None = None) -> Result:
        cmd = [self.binary, *args]
        try:
            proc = subprocess.run(
                cmd,
                cwd=cwd,
                env=self.env(data_dir),
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise InfrastructureError(f"terraform {args[0]} timed out after {self.timeout:.0f}s in {cwd}") from None
        return Result(cmd, proc.returncode, proc.stdout, proc.stderr)

    # --- provider availability ---------------------------------------------------------------

    def missing_providers(self, module: Path) -> list[str]:
        """Providers the module needs that can be had neither from the mirror nor the registry."""
        if self.online:
            return []
        return sorted(src.rsplit("/", 1)[-1] for src in required_providers(module).values() if src not in self.mirrored)

    # --- commands ----------------------------------------------------------------------------

    def fmt_check(self, path: Path) -> list[str]:
        """Files `terraform fmt -check -recursive` would rewrite (needs no providers)."""
        result = self.run("fmt", "-check", "-recursive", "-list=true", "-no-color", ".", cwd=path)
        if result.returncode not in (0, 3):
            raise InfrastructureError(f"terraform fmt failed in {path}: {result.first_error()}")
        return [line.strip() for line in result.stdout.splitlines() if line.strip()]

    def workdir(self, module: Path, tag: str, extra_files: dict[str, str] | None = None) -> Path:
        """A private copy of a module so init never writes lock files or state into the tree."""
        dest = self.run_dir / "work" / f"{module.name}-{tag}"
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(
            module,
            dest,
            ignore=shutil.ignore_patterns(".terraform", ".terraform.lock.hcl", "*.tfstate*"),
        )
        for name, text in (extra_files or {}).items():
            (dest / name).write_text(text)
        return dest

    def init(self, workdir: Path) -> Result:
        data = self.run_dir / "data" / workdir.name
        return self.run("init", "-backend=false", "-input=false", "-no-color", cwd=workdir, data_dir=data)

    def data_dir(self, workdir: Path) -> Path:
        return self.run_dir / "data" / workdir.name

    def test(self, module: Path) -> TestOutcome:
        """`terraform test` in a private copy; skipped when a provider cannot be installed here."""
        missing = self.missing_providers(module)
        if missing:
            return TestOutcome(
                module.name,
                "skipped",
                reason=f"skipped: provider {', '.join(missing)} not available offline",
            )
        work = self.workdir(module, "test")
        init = self.init(work)
        if not init.ok:
            return TestOutcome(module.name, "error", reason=f"init: {init.first_error()}", output=init.output)
        result = self.run("test", "-no-color", cwd=work, data_dir=self.data_dir(work))
        runs = parse_test_runs(result.stdout)
        status = "passed" if result.ok and runs else "failed"
        reason = "" if result.ok else result.first_error()
        if result.ok and not runs:
            reason = "terraform test ran no run blocks"
        return TestOutcome(module.name, status, reason=reason, runs=runs, output=result.output)

    def plan_json(self, module: Path, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """Offline plan of an aws-only module as a root config; returns `terraform show -json`."""
        _require_aws_only(module)
        work = self.workdir(module, "plan", {"_llmpyramid_offline_provider.tf": OFFLINE_AWS_PROVIDER})
        shutil.rmtree(work / "tests", ignore_errors=True)
        (work / "plan.auto.tfvars.json").write_text(json.dumps(variables or {}))
        return self._init_plan_show(work, module.name)

    def _init_plan_show(self, work: Path, what: str) -> dict[str, Any]:
        """`init`, an offline `plan`, then `show -json` of that plan, in `work`."""
        data = self.data_dir(work)
        for step in (
            ["init", "-backend=false", "-input=false", "-no-color"],
            ["plan", "-refresh=false", "-lock=false", "-input=false", "-no-color", "-out=plan.bin"],
            ["show", "-json", "plan.bin"],
        ):
            result = self.run(*step, cwd=work, data_dir=data)
            if not result.ok:
                raise InfrastructureError(f"terraform {step[0]} of {what} failed: {result.first_error()}")
        plan: dict[str, Any] = json.loads(result.stdout)
        return plan

    def plan_modules(self, modules: dict[str, tuple[Path, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
        """Plan several aws-only modules in one offline root (one init, one plan, one show).

        Each becomes `module.<key>` of a generated root; returns key -> a plan document shaped as
        if that module had been planned alone (planned_values and configuration of its root).
        """
        for path, _ in modules.values():
            _require_aws_only(path)
        work = self.run_dir / "work" / "_batch-plan"
        if work.exists():
            shutil.rmtree(work)
        (work / "modules").mkdir(parents=True)
        root: dict[str, Any] = {"module": {}}
        for key, (path, variables) in modules.items():
            shutil.copytree(
                path,
                work / "modules" / key,
                ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*", "tests", "*.json"),
            )
            root["module"][key] = {"source": f"./modules/{key}", **variables}
        (work / "main.tf.json").write_text(json.dumps(root, indent=2))
        (work / "provider.tf").write_text(OFFLINE_AWS_PROVIDER)
        plan = self._init_plan_show(work, ", ".join(modules))
        children = {
            c["address"]: c for c in plan.get("planned_values", {}).get("root_module", {}).get("child_modules", [])
        }
        calls = plan.get("configuration", {}).get("root_module", {}).get("module_calls", {})
        out: dict[str, dict[str, Any]] = {}
        for key in modules:
            prefix = f"module.{key}."
            child = children.get(f"module.{key}", {"resources": []})
            resources = [{**r, "address": r["address"].removeprefix(prefix)} for r in child.get("resources", [])]
            out[key] = {
                "planned_values": {"root_module": {"resources": resources}},
                "configuration": {"root_module": calls.get(key, {}).get("module", {})},
            }
        return out


_RUN_LINE = re.compile(r'^\s*run "([^"]+)"\.\.\. (pass|fail|skip)', re.M)
_FILE_LINE = re.compile(r"^(\S+\.tftest\.(?:hcl|json))\.\.\. (?:in progress|pass|fail|skip)", re.M)


def parse_test_runs(stdout: str) -> list[dict[str, str]]:
    """[{file, run, status}] from `terraform test` text output (one line per run block)."""
    runs: list[dict[str, str]] = []
    current = ""
    for line in stdout.splitlines():
        if m := _FILE_LINE.match(line):
            current = m.group(1)
        elif m := _RUN_LINE.match(line):
            runs.append({"file": current, "run": m.group(1), "status": m.group(2)})
    return runs


@dataclass
class TestOutcome:
    module: str
    status: str  # passed | failed | skipped | error
    reason: str = ""
    runs: list[dict[str, str]] = field(default_factory=list)
    output: str = ""

    __test__ = False  # not a pytest class

    @property
    def failed_runs(self) -> list[dict[str, str]]:
        return [r for r in self.runs if r["status"] != "pass"]
