"""The terraform CLI with a CLI config generated at run time (local provider mirror, if any).

Nothing machine-specific is committed: the mirror comes from TF_PLUGIN_MIRROR or a well-known
default, and each run writes its own CLI config, data dirs and plugin cache under a run directory.

Every terraform process runs as a `Command`: its own process group (the provider plugins it starts
join it) with a parent-death signal. Ctrl-C/SIGTERM of ours (or a timeout) sends it SIGINT, terraform's
graceful stop that finishes in-flight operations and saves state, for at most a grace period; then
SIGKILL to whatever is left of the group. Nothing is left running, and state is not cut short.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import IO, Any

import hcl2
import psutil

from llmpyramid.errors import ConfigError, InfrastructureError
from llmpyramid.procs import die_with_parent, signals_deferred

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


INTERRUPT_GRACE_S = 60.0  # terraform's own graceful stop after SIGINT, before SIGKILL


@dataclass
class Command:
    """One terraform process in its own process group (see the module docstring)."""

    args: list[str]
    proc: subprocess.Popen[bytes]
    started_at: float  # wall clock, comparable with psutil's create_time
    started_mono: float
    out: Path | None = None  # where its output goes, when the caller keeps it in a file

    @property
    def name(self) -> str:
        return self.args[1] if len(self.args) > 1 else self.args[0]

    @classmethod
    def start(
        cls,
        args: list[str],
        *,
        cwd: Path,
        env: dict[str, str],
        stdout: IO[bytes],
        stderr: IO[bytes] | int = subprocess.STDOUT,
        out: Path | None = None,
    ) -> Command:
        proc: subprocess.Popen[bytes] | None = None
        started_at = time.time()
        try:
            # a Ctrl-C during the spawn is delivered once the process is known, so it can be stopped
            with signals_deferred():
                proc = subprocess.Popen(
                    args,
                    cwd=cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=stdout,
                    stderr=stderr,
                    start_new_session=True,  # its own group: the plugins join it, a terminal Ctrl-C does not
                    preexec_fn=die_with_parent,  # SIGTERM when we die: terraform stops its providers and exits
                )
        except BaseException:
            if proc is not None:
                cls(args, proc, started_at, time.monotonic(), out).stop()
            raise
        return cls(args, proc, started_at, time.monotonic(), out)

    def wait(self, timeout: float, grace: float = INTERRUPT_GRACE_S) -> int:
        """The exit code. On timeout (subprocess.TimeoutExpired) or an interrupt it is stopped first."""
        try:
            self.proc.wait(timeout=max(0.0, self.started_mono + timeout - time.monotonic()))
        except BaseException:  # timeout, Ctrl-C, SIGTERM (raised as KeyboardInterrupt), pytest.exit
            self.stop(grace)
            raise
        self.kill_group()  # normally empty: terraform stops its plugins on exit
        return self.proc.returncode

    def stop(self, grace: float = INTERRUPT_GRACE_S) -> None:
        """SIGINT (terraform's graceful stop), bounded by `grace`; then SIGKILL to everything left in its group."""
        try:
            if self.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGINT)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=grace)
        finally:  # also when a second Ctrl-C cuts the grace short
            self.kill_group()

    def kill_group(self) -> None:
        """SIGKILL what is left of the process group: its provider plugins if terraform died first.
        Members are recognised by group id and start time, so a reused group id is never hit."""
        members = []
        for proc in psutil.process_iter(["create_time"]):
            with contextlib.suppress(psutil.Error, OSError):
                if os.getpgid(proc.pid) == self.proc.pid and proc.info["create_time"] >= self.started_at - 1.0:
                    members.append(proc)
        for proc in members:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(members, timeout=5)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)


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
    interrupt_grace: float = INTERRUPT_GRACE_S

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

    def start(
        self,
        *args: str,
        cwd: Path,
        data_dir: Path | None = None,
        stdout: IO[bytes],
        stderr: IO[bytes] | int = subprocess.STDOUT,
        out: Path | None = None,
    ) -> Command:
        """`terraform <args>` started in the background as a `Command` (wait or stop it)."""
        return Command.start(
            [self.binary, *args], cwd=cwd, env=self.env(data_dir), stdout=stdout, stderr=stderr, out=out
        )

    def run(self, *args: str, cwd: Path, data_dir: Path | None = None) -> Result:
        """`terraform <args>` to completion, bounded by `timeout`; interrupted: SIGINT to it, then re-raised."""
        # files, not pipes: nothing must block terraform's output while it saves state after SIGINT
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            cmd = self.start(*args, cwd=cwd, data_dir=data_dir, stdout=out, stderr=err)
            try:
                returncode = cmd.wait(self.timeout, self.interrupt_grace)
            except subprocess.TimeoutExpired:
                raise InfrastructureError(f"terraform {args[0]} timed out after {self.timeout:.0f}s in {cwd}") from None
            out.seek(0)
            err.seek(0)
            return Result(
                cmd.args, returncode, out.read().decode(errors="replace"), err.read().decode(errors="replace")
            )

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
