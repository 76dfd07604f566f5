"""HAProxy as the hybrid layer's router: the binary, its configuration check, the managed service.

The binary is, in order: HYBRID_HAPROXY_BIN, `haproxy` on PATH, or Debian's package unpacked into
the project's cache (`.cache/haproxy/`). A fresh machine has no haproxy and installing it system-wide
needs root and would start a system service; `apt-get download` needs neither: the package and the
libraries it needs that the system lacks are unpacked (dpkg-deb -x) and the binary runs from there
with LD_LIBRARY_PATH. Nothing is installed and nothing starts outside the run.

The configuration (router/haproxy.cfg, or HYBRID_ROUTER_CONFIG) takes addresses and keys from the
environment, is checked with `haproxy -c` before the start (a bad file is exit 3 with HAProxy's own
line), and HAProxy runs in the foreground: a managed service stopped by identity like every other.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from filelock import FileLock

from llmpyramid.config import PROJECT_ROOT
from llmpyramid.errors import ConfigError
from llmpyramid.hybrid.router import HOST, ManagedRouter

CACHE_DIR = PROJECT_ROOT / ".cache" / "haproxy"
PACKAGE = "haproxy"
COMMAND_TIMEOUT_S = 180.0
VERSION_LINE = re.compile(r"HAProxy version (\S+)")
CHECK_TIMING = re.compile(r"^\s*default-server\b.*?\binter\s+(\d+)(ms|s)?\b.*?\brise\s+(\d+)", re.MULTILINE)


def _run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"haproxy not found and `{' '.join(argv[:2])}` failed: {exc}") from None


def _installed(package: str) -> bool:
    done = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True)
    return done.returncode == 0 and "install ok installed" in done.stdout


def _library_depends(package: str) -> list[str]:
    """The shared-library packages `package` depends on (apt-cache's first alternative of each)."""
    done = _run(["apt-cache", "depends", "--no-recommends", "--no-suggests", "--no-conflicts", "--no-breaks",
                 "--no-replaces", "--no-enhances", "--no-pre-depends", package])  # fmt: skip
    names = re.findall(r"^\s+Depends: (\S+)$", done.stdout, re.MULTILINE)
    return [n for n in names if n.startswith("lib") and not n.startswith("<")]


def _download(packages: list[str], into: Path) -> None:
    done = _run(["apt-get", "download", *packages], cwd=into)
    if done.returncode != 0 and os.geteuid() == 0 and "Unable to locate" in done.stderr:
        _run(["apt-get", "update"])  # a fresh image has empty package lists
        done = _run(["apt-get", "download", *packages], cwd=into)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ConfigError(f"haproxy not found and `apt-get download {' '.join(packages)}` failed: {last}; "
                          "install it (apt-get install haproxy) or set HYBRID_HAPROXY_BIN")  # fmt: skip


def _unpacked_binary() -> Path:
    return CACHE_DIR / "root" / "usr" / "sbin" / "haproxy"


def _library_path() -> str:
    return str(CACHE_DIR / "root" / "usr" / "lib" / "x86_64-linux-gnu")


def unpack_debian_package() -> Path:
    """Debian's haproxy and the libraries the system lacks, unpacked into the cache (once, under a lock)."""
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise ConfigError("haproxy not found (no haproxy on PATH, no apt-get to fetch it): install HAProxy 2.x "
                          "or set HYBRID_HAPROXY_BIN")  # fmt: skip
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with FileLock(CACHE_DIR / ".lock"):
        if _unpacked_binary().exists():
            return _unpacked_binary()
        debs = CACHE_DIR / "debs"
        shutil.rmtree(debs, ignore_errors=True)
        debs.mkdir()
        wanted, seen = [PACKAGE], set()
        while wanted:  # the package, then library packages not installed here, recursively
            batch = [p for p in wanted if p not in seen]
            seen.update(batch)
            _download(batch, debs)
            wanted = [d for p in batch for d in _library_depends(p) if d not in seen and not _installed(d)]
        staging = CACHE_DIR / "root.partial"
        shutil.rmtree(staging, ignore_errors=True)
        for deb in sorted(debs.glob("*.deb")):
            done = _run(["dpkg-deb", "-x", str(deb), str(staging)])
            if done.returncode != 0:
                raise ConfigError(f"could not unpack {deb.name}: {done.stderr.strip()[-200:]}")
        shutil.rmtree(CACHE_DIR / "root", ignore_errors=True)
        staging.rename(CACHE_DIR / "root")  # all or nothing: a half-unpacked tree is never used
        shutil.rmtree(debs, ignore_errors=True)
    return _unpacked_binary()


def haproxy_command(explicit: Path | None = None) -> tuple[Path, dict[str, str]]:
    """(binary, environment it needs): HYBRID_HAPROXY_BIN, PATH, else Debian's package from the cache."""
    if explicit is not None:
        if not os.access(explicit, os.X_OK):
            raise ConfigError(f"HYBRID_HAPROXY_BIN {explicit} is not an executable file")
        return explicit, {}
    if found := shutil.which("haproxy"):
        return Path(found), {}
    return unpack_debian_package(), {"LD_LIBRARY_PATH": _library_path()}


class HAProxyRouter(ManagedRouter):
    """HAProxy in the foreground with router/haproxy.cfg: base first (`balance first`, maxconn = slots)."""

    kind = "haproxy"
    ready_path = "/router-ready"  # both backends up (router/haproxy.cfg)

    def __init__(self, config: Path, run_dir: Path, *, binary: Path | None = None, startup_timeout: float,
                 stop_grace: float = 5.0) -> None:  # fmt: skip
        super().__init__(config, run_dir, startup_timeout=startup_timeout, stop_grace=stop_grace)
        self._explicit = binary
        self._binary: tuple[Path, dict[str, str]] | None = None
        self._env: dict[str, str] = {}

    @property
    def binary(self) -> tuple[Path, dict[str, str]]:
        if self._binary is None:
            self._binary = haproxy_command(self._explicit)
        return self._binary

    def version(self) -> str:
        path, env = self.binary
        done = subprocess.run([str(path), "-v"], capture_output=True, text=True, env={**os.environ, **env})
        match = VERSION_LINE.search(done.stdout)
        if done.returncode != 0 or match is None:
            raise ConfigError(f"{path} -v did not print an HAProxy version: {(done.stderr or done.stdout)[-200:]}")
        return match.group(1)

    def check_config(self) -> None:
        """`haproxy -c` on the file with placeholder addresses: a bad file is one line, exit 3, before any start."""
        if not self.config.is_file():
            raise ConfigError(f"router config {self.config}: no such file")
        env = {"HYBRID_ROUTER_BIND": f"{HOST}:1", "HYBRID_ROUTER_KEY": "k", "HYBRID_BACKEND_API_KEY": "k",
               "HYBRID_BASE_ADDR": f"{HOST}:2", "HYBRID_BURST_ADDR": f"{HOST}:3", "HYBRID_BASE_SLOTS": "1",
               "HYBRID_BURST_SLOTS": "1"}  # fmt: skip
        path, lib_env = self.binary
        done = subprocess.run([str(path), "-c", "-q", "-f", str(self.config)], capture_output=True, text=True,
                              env={**os.environ, **lib_env, **env})  # fmt: skip
        if done.returncode != 0:
            alerts = [ln for ln in (done.stderr + done.stdout).splitlines() if "ALERT" in ln] or ["no output"]
            raise ConfigError(f"router config {self.config} is not valid HAProxy configuration: {alerts[0].strip()}")

    def stated_fail_back_s(self) -> float | None:
        """`rise` passing checks `inter` apart (default-server line) before a recovered server is used again."""
        match = CHECK_TIMING.search(self.config.read_text(errors="replace"))
        if match is None:
            return None
        inter = int(match.group(1)) / (1000 if match.group(2) == "ms" else 1)
        return inter * int(match.group(3))

    def argv(self, port: int) -> list[str]:
        return [str(self.binary[0]), "-db", "-f", str(self.config)]  # -db: foreground, no daemon

    def environ(self, port: int, api_key: str, backend_env: Mapping[str, str]) -> dict[str, str]:
        return {**os.environ, **self.binary[1], **backend_env, "HYBRID_ROUTER_BIND": f"{HOST}:{port}",
                "HYBRID_ROUTER_KEY": api_key}  # fmt: skip
