"""Distribute the GGUF model through object storage: publish once, fetch on every burst node.

    publish(Path("models/test/x.gguf"), "s3://bucket/models/x.gguf")
    fetch("gs://bucket/models/x.gguf", Path("models/test"))

The object carries its sha256 in object metadata (`x-amz-meta-sha256` on S3, `metadata.sha256` on
GCS); `fetch` downloads to a temp file, verifies the digest and only then moves the file into place
(with the `<file>.sha256` sidecar llmpyramid.model uses, so `ensure_model` finds it as a cache hit).

Endpoints come from the standard variables: `AWS_ENDPOINT_URL` (moto, LocalStack) and
`STORAGE_EMULATOR_HOST` (fake-gcs-server); without them the real clouds are used.
Errors are one line: unreachable endpoint or missing bucket/object -> InfrastructureError (exit 2),
bad URL, an object name that is no file name ('.', '..', a path separator), an unwritable or
unreadable local path, or missing credentials -> ConfigError (exit 3), checksum mismatch ->
ChecksumError (exit 1). Local files are written via temp file + os.replace; a symlink at the
target name is replaced, never followed.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from llmpyramid.errors import ConfigError, InfrastructureError
from llmpyramid.model import ChecksumError, is_regular_file, parse_sha256, sha256_of, write_sidecar

SHA256_KEY = "sha256"  # object metadata key carrying the hex digest
CONNECT_TIMEOUT_S = 5.0
TRANSFER_TIMEOUT_S = 300.0
SCHEMES = ("s3", "gs")
# S3 and GCS bucket names: lowercase letters, digits, '.', '-' (GCS also '_'), 3..222 characters.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class ObjectURL:
    scheme: str  # "s3" | "gs"
    bucket: str
    key: str

    @classmethod
    def parse(cls, url: str) -> ObjectURL:
        """Parse s3://bucket/key or gs://bucket/key; anything that is not a plain object URL is ConfigError.

        The key's last part becomes a local file name, so it must be one: not '', '.' or '..', and no
        part of the key may be '.', '..' or empty, or hold a backslash or a control character.
        """
        if _CONTROL.search(url.strip()):  # urlparse would silently drop tabs and newlines
            raise ConfigError(f"storage URL {url!r} contains control characters")
        try:
            parsed = urlparse(url.strip())
        except ValueError as exc:
            raise ConfigError(f"storage URL {url!r} is malformed ({exc})") from None
        if parsed.scheme not in SCHEMES:
            raise ConfigError(f"storage URL {url!r} must start with s3:// or gs://")
        key = parsed.path.lstrip("/")
        if not parsed.netloc or not key or key.endswith("/"):
            raise ConfigError(f"storage URL {url!r} must name a bucket and an object, e.g. s3://bucket/models/x.gguf")
        if parsed.query or parsed.fragment or parsed.params:
            raise ConfigError(f"storage URL {url!r} must not carry '?', '#' or ';' parts")
        if not _BUCKET.match(parsed.netloc):
            raise ConfigError(
                f"storage URL {url!r}: bucket {parsed.netloc!r} is not a valid bucket name "
                "(3-222 lowercase letters, digits, '.', '-', '_')"
            )
        parts = key.split("/")
        if any(p in ("", ".", "..") for p in parts) or "\\" in key or _CONTROL.search(key):
            raise ConfigError(
                f"storage URL {url!r}: object name {parts[-1]!r} in key {key!r} is not a file name "
                "(no '', '.', '..' parts, backslashes or control characters)"
            )
        return cls(parsed.scheme, parsed.netloc, key)

    def __str__(self) -> str:
        return f"{self.scheme}://{self.bucket}/{self.key}"


@dataclass(frozen=True)
class StoredObject:
    url: str
    size: int
    sha256: str | None
    endpoint: str


@dataclass(frozen=True)
class FetchedModel:
    path: Path
    url: str
    size: int
    sha256: str
    downloaded: bool  # False when a verified copy was already in place

    def describe(self) -> str:
        verb = "fetched" if self.downloaded else "already present, verified"
        return f"{verb}: {self.url} -> {self.path} ({self.size:,} bytes, sha256 {self.sha256[:16]}…)"


class Backend(Protocol):
    endpoint: str

    def head(self, obj: ObjectURL) -> StoredObject | None: ...
    def upload(self, path: Path, obj: ObjectURL, sha256: str) -> None: ...
    def download(self, obj: ObjectURL, dest: Path) -> None: ...


# --- S3 (boto3) ---------------------------------------------------------------------------------


class S3Backend:
    def __init__(self) -> None:
        import boto3
        from botocore.config import Config

        config = Config(
            connect_timeout=CONNECT_TIMEOUT_S,
            read_timeout=TRANSFER_TIMEOUT_S,
            retries={"max_attempts": 2, "mode": "standard"},
            s3={"addressing_style": "path"} if os.environ.get("AWS_ENDPOINT_URL") else {},
        )
        self.client = boto3.client("s3", config=config)
        self.endpoint = str(self.client.meta.endpoint_url)

    @contextlib.contextmanager
    def _errors(self, obj: ObjectURL) -> Iterator[None]:
        from botocore.exceptions import (
            ClientError,
            ConnectionError,
            HTTPClientError,
            NoCredentialsError,
            ParamValidationError,
            PartialCredentialsError,
        )

        try:
            yield
        except ParamValidationError as exc:
            raise ConfigError(f"S3 rejects {obj}: {exc}") from None
        except (NoCredentialsError, PartialCredentialsError) as exc:
            raise ConfigError(
                f"no usable AWS credentials for {obj} ({exc}); set AWS_PROFILE or AWS_ACCESS_KEY_ID"
            ) from None
        except (ConnectionError, HTTPClientError) as exc:
            raise InfrastructureError(f"S3 endpoint {self.endpoint} is not reachable: {exc}") from None
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code == "NoSuchBucket":
                raise InfrastructureError(f"bucket s3://{obj.bucket} does not exist at {self.endpoint}") from None
            if code in ("NoSuchKey", "404") or status == 404:
                raise InfrastructureError(f"{obj} does not exist at {self.endpoint}") from None
            if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch") or status == 403:
                raise ConfigError(
                    f"access denied to {obj} at {self.endpoint} ({code}); check AWS credentials"
                ) from None
            raise InfrastructureError(f"S3 error for {obj} at {self.endpoint}: {code or status}") from None

    def head(self, obj: ObjectURL) -> StoredObject | None:
        from botocore.exceptions import ClientError

        with self._errors(obj):
            try:
                meta = self.client.head_object(Bucket=obj.bucket, Key=obj.key)
            except ClientError as exc:
                if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") != 404:
                    raise
                try:  # "no such bucket" reads better than "no such object"
                    self.client.head_bucket(Bucket=obj.bucket)
                except ClientError as bucket_exc:
                    if bucket_exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                        raise InfrastructureError(
                            f"bucket s3://{obj.bucket} does not exist at {self.endpoint}"
                        ) from None
                    raise
                return None
        return StoredObject(
            str(obj), int(meta["ContentLength"]), meta.get("Metadata", {}).get(SHA256_KEY), self.endpoint
        )

    def upload(self, path: Path, obj: ObjectURL, sha256: str) -> None:
        with self._errors(obj):
            self.client.upload_file(str(path), obj.bucket, obj.key, ExtraArgs={"Metadata": {SHA256_KEY: sha256}})

    def download(self, obj: ObjectURL, dest: Path) -> None:
        with self._errors(obj):
            self.client.download_file(obj.bucket, obj.key, str(dest))


# --- GCS (google-cloud-storage) -----------------------------------------------------------------


class GCSBackend:
    def __init__(self) -> None:
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        from llmpyramid.emulators import normalize_url

        emulator = os.environ.get("STORAGE_EMULATOR_HOST", "").strip()
        try:
            if emulator:
                self.endpoint = normalize_url(emulator, "STORAGE_EMULATOR_HOST")
                self.client = storage.Client(
                    project=os.environ.get("GOOGLE_CLOUD_PROJECT", "test"),
                    credentials=AnonymousCredentials(),
                    client_options=ClientOptions(api_endpoint=self.endpoint),
                )
            else:
                self.client = storage.Client()
                self.endpoint = str(self.client.api_endpoint)
        except Exception as exc:  # google.auth raises DefaultCredentialsError, among others
            raise ConfigError(
                f"no usable GCP credentials ({type(exc).__name__}); run `gcloud auth application-default login`"
            ) from None
        from google.api_core.retry import Retry

        # Fail fast on an unreachable endpoint instead of the client's default 120 s of retries.
        self.retry = Retry(initial=0.5, maximum=2.0, timeout=10.0)

    @contextlib.contextmanager
    def _errors(self, obj: ObjectURL) -> Iterator[None]:
        import requests
        from google.api_core import exceptions as gexc
        from google.auth.exceptions import GoogleAuthError

        try:
            yield
        except GoogleAuthError as exc:
            raise ConfigError(f"GCP credentials rejected for {obj}: {type(exc).__name__}") from None
        except (requests.ConnectionError, requests.Timeout, gexc.RetryError) as exc:
            raise InfrastructureError(f"GCS endpoint {self.endpoint} is not reachable: {type(exc).__name__}") from None
        except gexc.NotFound:
            if not self.client.bucket(obj.bucket).exists(retry=self.retry, timeout=CONNECT_TIMEOUT_S):
                raise InfrastructureError(f"bucket gs://{obj.bucket} does not exist at {self.endpoint}") from None
            raise InfrastructureError(f"{obj} does not exist at {self.endpoint}") from None
        except gexc.Forbidden:
            raise ConfigError(f"access denied to {obj} at {self.endpoint}; check GCP credentials") from None
        except gexc.GoogleAPIError as exc:
            raise InfrastructureError(f"GCS error for {obj} at {self.endpoint}: {type(exc).__name__}") from None

    def head(self, obj: ObjectURL) -> StoredObject | None:
        with self._errors(obj):
            blob = self.client.bucket(obj.bucket).get_blob(obj.key, retry=self.retry, timeout=CONNECT_TIMEOUT_S)
            if blob is None:
                if not self.client.bucket(obj.bucket).exists(retry=self.retry, timeout=CONNECT_TIMEOUT_S):
                    raise InfrastructureError(f"bucket gs://{obj.bucket} does not exist at {self.endpoint}")
                return None
        return StoredObject(str(obj), int(blob.size or 0), (blob.metadata or {}).get(SHA256_KEY), self.endpoint)

    def upload(self, path: Path, obj: ObjectURL, sha256: str) -> None:
        with self._errors(obj):
            blob = self.client.bucket(obj.bucket).blob(obj.key)
            blob.metadata = {SHA256_KEY: sha256}
            blob.upload_from_filename(str(path), retry=self.retry, timeout=TRANSFER_TIMEOUT_S)

    def download(self, obj: ObjectURL, dest: Path) -> None:
        with self._errors(obj):
            blob = self.client.bucket(obj.bucket).blob(obj.key)
            blob.download_to_filename(str(dest), retry=self.retry, timeout=TRANSFER_TIMEOUT_S)


def backend_for(obj: ObjectURL) -> Backend:
    """The client for the URL's cloud; the emulator endpoint is checked first so it fails fast."""
    from llmpyramid.emulators import KINDS, check_reachable, normalize_url

    kind = KINDS["aws" if obj.scheme == "s3" else "gcs"]
    if raw := os.environ.get(kind.env_var, "").strip():
        check_reachable(kind, normalize_url(raw, kind.env_var), kind.env_var)
    return S3Backend() if obj.scheme == "s3" else GCSBackend()


# --- the operations -----------------------------------------------------------------------------


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def publish_url(url: str, name: str) -> ObjectURL:
    """Where `publish` puts a file called `name`: a URL ending in '/' gets the name appended.

    Raises ConfigError for a bad URL, so callers can check it before finding the file."""
    if not url.endswith("/"):
        return ObjectURL.parse(url)
    with contextlib.suppress(ValueError):  # a malformed URL is reported by ObjectURL.parse below
        prefix = urlparse(url.strip())
        if prefix.scheme in SCHEMES and not prefix.netloc:
            raise ConfigError(f"storage URL {url!r} must name a bucket, e.g. s3://bucket/models/")
    return ObjectURL.parse(url + name)


def publish(
    path: Path,
    url: str,
    *,
    backend: Backend | None = None,
    notify: Callable[[str], None] = _stderr,
) -> StoredObject:
    """Upload a local file with its sha256 in the object metadata (a URL ending in '/' gets the file name)."""
    path = Path(path)
    obj = publish_url(url, path.name)
    if not path.is_file():
        raise ConfigError(f"cannot publish {path}: no such file")
    try:
        digest, size = sha256_of(path), path.stat().st_size
    except OSError as exc:
        raise ConfigError(f"cannot publish {path}: {exc.strerror or exc}") from None
    backend = backend or backend_for(obj)
    existing = backend.head(obj)
    if existing and existing.sha256 == digest and existing.size == size:
        notify(f"{obj} already holds this file (sha256 {digest[:16]}…) at {backend.endpoint}; not re-uploading")
        return existing
    started = time.monotonic()
    backend.upload(path, obj, digest)
    stored = backend.head(obj)
    if stored is None or stored.sha256 != digest or stored.size != size:
        raise InfrastructureError(f"{obj} did not read back as uploaded at {backend.endpoint}")
    notify(
        f"published {path} -> {obj} ({stored.size:,} bytes, sha256 {digest[:16]}…) in {time.monotonic() - started:.1f}s"
    )
    return stored


def _target_path(dest: Path | str, name: str) -> Path:
    if "\x00" in str(dest):
        raise ConfigError(f"destination {str(dest)!r} contains a NUL byte")
    path = Path(dest)
    if path.is_dir() or str(dest).endswith(("/", os.sep)) or (not path.exists() and not path.suffix):
        return path / name
    return path


def fetch(
    url: str,
    dest: Path | str,
    *,
    expected_sha256: str | None = None,
    backend: Backend | None = None,
    notify: Callable[[str], None] = _stderr,
) -> FetchedModel:
    """Download an object as a burst node would: verify its sha256, then move it into place atomically.

    `dest` is a directory (an existing one, or a path ending in '/' or without a file suffix; the
    object's file name is kept) or a file path. The digest comes from the
    object's metadata; `expected_sha256` (if given) must agree with it.
    """
    obj = ObjectURL.parse(url)
    given = parse_sha256("the expected sha256 (--sha256)", expected_sha256) if expected_sha256 else None
    target = _target_path(dest, Path(obj.key).name)
    backend = backend or backend_for(obj)
    stored = backend.head(obj)
    if stored is None:
        raise InfrastructureError(f"{obj} does not exist at {backend.endpoint}")
    want = given or stored.sha256
    if not want:
        raise ChecksumError(f"{obj} has no '{SHA256_KEY}' metadata to verify against; re-publish it or pass a sha256")
    if given and stored.sha256 and stored.sha256 != given:
        raise ChecksumError(f"{obj} metadata sha256 {stored.sha256} does not match the expected {given}")
    try:
        if _holds(target, stored.size, want):
            fetched = FetchedModel(target, str(obj), stored.size, want, downloaded=False)
            notify(fetched.describe())
            return fetched
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        os.close(fd)
    except OSError as exc:
        raise ConfigError(f"cannot write {target}: {exc.strerror or exc}") from None
    tmp = Path(tmp_name)
    try:
        backend.download(obj, tmp)
        digest = sha256_of(tmp)
        if digest != want:
            raise ChecksumError(f"{obj} downloaded with sha256 {digest}, expected {want}; discarded the download")
        os.replace(tmp, target)
        write_sidecar(target, digest)
        size = target.stat().st_size
    except OSError as exc:
        raise ConfigError(f"cannot write {target}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
    fetched = FetchedModel(target, str(obj), size, digest, downloaded=True)
    notify(fetched.describe())
    return fetched


def _holds(target: Path, size: int, sha256: str) -> bool:
    """A regular file (never a symlink) with this size and digest is already at `target`."""
    return is_regular_file(target) and target.stat().st_size == size and sha256_of(target) == sha256


def describe(obj: StoredObject) -> dict[str, Any]:
    return {"url": obj.url, "size": obj.size, "sha256": obj.sha256, "endpoint": obj.endpoint}
