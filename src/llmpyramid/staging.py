"""The staging VM for `invoke staging`: terraform/hetzner applied in staging mode, destroyed after.

Needs HCLOUD_TOKEN (missing -> exit 3 naming it), the hetznercloud/hcloud provider (from the
registry; not obtainable offline, where `invoke staging` uses the local provisioner instead), and
STAGING_CLIENT_CIDR (this runner's address: the VM's firewall opens the inference port to it only),
STAGING_SSH_PUBLIC_KEY and STAGING_ADMIN_CIDR. The VM is a CPX31 whose cloud-init clones this
repository at the tested commit and starts the llama.cpp server with the test model
(terraform/hetzner/templates/staging-cloud-init.yaml.tftpl); the run waits until /health answers,
hands the URL to the pipeline's steps, and destroys everything in `finally`, so also on failure,
Ctrl-C and SIGTERM.

terraform runs in its own process group: a Ctrl-C/SIGTERM during apply reaches it as SIGINT, its
graceful stop that records what it was creating in the state (llmpyramid.iac.terraform.Command),
before the destroy. The state lives in a private temporary directory that a failed destroy keeps:
the log names it and the command that removes the VM by hand.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from llmpyramid.config import PROJECT_ROOT, env_value, parse_duration, patched_environ
from llmpyramid.errors import ConfigError, InfrastructureError, PyramidError
from llmpyramid.iac.terraform import Terraform
from llmpyramid.target import Target

MODULE = PROJECT_ROOT / "terraform" / "hetzner"
STAGING_VARS = {"environment": "staging", "staging_enabled": "true", "staging_server_type": "cpx31"}
REQUIRED = {
    "STAGING_CLIENT_CIDR": "this runner's address as a CIDR (e.g. 203.0.113.7/32): the inference port opens to it only",
    "STAGING_SSH_PUBLIC_KEY": "an SSH public key for the VM's admin access",
    "STAGING_ADMIN_CIDR": "the network allowed to SSH into the VM",
}
# Both values reach a YAML document and a git command line on the VM, so only plain ones pass: an
# https:// URL (no credentials, quotes, spaces, `$`, backticks) and a git ref or commit not starting with
# `-`. The validation blocks of staging_repo_url/staging_repo_ref in terraform/hetzner/variables.tf use
# these same patterns (they must agree; tests/unit/test_staging.py checks that they do).
REPO_URL_PATTERN = "^https://[A-Za-z0-9][A-Za-z0-9.-]*(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?$"
REPO_REF_PATTERN = "^[A-Za-z0-9_][A-Za-z0-9._/-]{0,199}$"
DESTROY_ARGS = ("destroy", "-auto-approve", "-input=false")
# SIGINT to an apply lets terraform finish the server it is creating and save it in the state;
# creating a CPX31 takes up to about a minute.
INTERRUPT_GRACE_S = 90.0


def _git(*args: str) -> str:
    out = subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, check=False)
    return out.stdout.strip()


def _tf_vars() -> list[str]:
    """-var arguments: staging mode, who may reach it, which commit its cloud-init serves (no secrets)."""
    missing = [f"{name} ({why})" for name, why in REQUIRED.items() if not env_value(name)]
    if missing:
        raise ConfigError(f"invoke staging with HCLOUD_TOKEN also needs: {'; '.join(missing)}")
    repo_url = env_value("STAGING_REPO_URL") or _git("remote", "get-url", "origin")
    if not repo_url:
        raise ConfigError("STAGING_REPO_URL is not set and this checkout has no `origin` remote to clone on the VM")
    repo_ref = env_value("STAGING_REPO_REF") or _git("rev-parse", "HEAD") or "main"
    _require_plain("STAGING_REPO_URL", repo_url, REPO_URL_PATTERN, "a plain https:// URL (no credentials or quotes)")
    _require_plain("STAGING_REPO_REF", repo_ref, REPO_REF_PATTERN, "a plain git branch, tag or commit")
    values = {
        **STAGING_VARS,
        "inference_allowed_cidrs": json.dumps([env_value("STAGING_CLIENT_CIDR")]),
        "admin_cidrs": json.dumps([env_value("STAGING_ADMIN_CIDR")]),
        "ssh_public_keys": json.dumps({"staging": env_value("STAGING_SSH_PUBLIC_KEY")}),
        "staging_repo_url": repo_url,
        "staging_repo_ref": repo_ref,
    }
    return [f"-var={k}={v}" for k, v in values.items()]


def _require_plain(name: str, value: str, pattern: str, what: str) -> None:
    """ConfigError naming `name` unless the whole value matches `pattern` (also its origin default)."""
    if not re.fullmatch(pattern, value):
        source = "" if env_value(name) else " (from this checkout; set it to override)"
        raise ConfigError(f"{name}{source} must be {what} matching {pattern}; got {value[:100]!r}")


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def hetzner_staging(log: Callable[[str], None]) -> Iterator[tuple[Target, dict[str, Any]]]:
    if not env_value("HCLOUD_TOKEN"):
        raise ConfigError("HCLOUD_TOKEN is not set: the staging VM needs a Hetzner Cloud API token")
    var_args = _tf_vars()
    timeout = parse_duration("STAGING_HEALTH_TIMEOUT", env_value("STAGING_HEALTH_TIMEOUT", "15m"), minimum=10)
    api_key = secrets.token_urlsafe(24)  # per run; reaches the VM through cloud-init, never printed
    # not a TemporaryDirectory: a failed destroy keeps the state here for the destroy by hand
    base = Path(tempfile.mkdtemp(prefix="llmpyramid-staging-"))
    keep = False
    try:
        workdir = base / "hetzner"
        shutil.copytree(MODULE, workdir, ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*", "tests"))
        tf = Terraform(run_dir=base / "tf", interrupt_grace=INTERRUPT_GRACE_S)
        init = tf.run("init", "-input=false", cwd=workdir)
        if not init.ok:
            raise InfrastructureError(f"terraform init failed for terraform/hetzner: {init.first_error()}")
        try:
            log("staging: terraform apply (CPX31 staging VM)")
            # The provider reads HCLOUD_TOKEN itself; the per-run key goes through TF_VAR_*, never argv.
            # Only apply needs it (cloud-init): destroy runs without, exactly as the command it logs.
            with patched_environ({"TF_VAR_staging_api_key": api_key}):
                applied = tf.run("apply", "-auto-approve", "-input=false", *var_args, cwd=workdir)
            if not applied.ok:
                raise InfrastructureError(f"terraform apply failed: {applied.first_error()}")
            out = tf.run("output", "-json", cwd=workdir)
            ip = json.loads(out.stdout or "{}").get("staging_ipv4", {}).get("value")
            port = json.loads(out.stdout or "{}").get("inference_port", {}).get("value", 8080)
            if not ip:
                raise InfrastructureError("terraform/hetzner gave no staging_ipv4 output")
            url = f"http://{ip}:{port}"
            log(f"staging: waiting up to {timeout:.0f}s for {url}/health")
            ready = Retrying(
                stop=stop_after_delay(timeout),
                wait=wait_fixed(5),
                retry=retry_if_result(lambda ok: not ok),
                retry_error_callback=lambda _: False,
            )(_healthy, url)
            if not ready:
                raise InfrastructureError(f"staging VM {url} not healthy after {timeout:.0f}s")
            yield Target(url, api_key), {"ipv4": ip, "server_type": "cpx31"}
        finally:
            keep = True  # until the destroy succeeds (an interrupt during it keeps the state too)
            keep = not _destroy(tf, workdir, var_args, base, log)
    finally:
        if not keep:
            shutil.rmtree(base, ignore_errors=True)


def _destroy(tf: Terraform, workdir: Path, var_args: list[str], base: Path, log: Callable[[str], None]) -> bool:
    """terraform destroy; on failure (also timeout or interrupt) log where the state is and the command."""
    log("staging: terraform destroy")
    reason = "interrupted"
    try:
        destroyed = tf.run(*DESTROY_ARGS, *var_args, cwd=workdir)
        reason = "" if destroyed.ok else destroyed.first_error()
    except PyramidError as exc:  # timed out (terraform stopped, the state kept)
        reason = str(exc)
    finally:
        if reason:
            command = f"cd {shlex.quote(str(workdir))} && {shlex.join([tf.binary, *DESTROY_ARGS, *var_args])}"
            log(f"staging: DESTROY FAILED ({reason}); the VM may still exist, its terraform state is kept in {base}")
            log(
                "staging: remove it by hand (export HCLOUD_TOKEN; the API key is not needed to destroy), "
                f"then delete {base}; run: {command}"
            )
    return not reason
