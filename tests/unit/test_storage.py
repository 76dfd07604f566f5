"""llmpyramid.storage without a network: URL parsing, publish/fetch logic on an in-memory backend,
and the S3 error mapping with botocore's Stubber. The real round trip is tests/integration."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from llmpyramid import storage
from llmpyramid.errors import ConfigError, ExitCode, InfrastructureError
from llmpyramid.storage import ChecksumError, ObjectURL, StoredObject

QUIET = {"notify": lambda _m: None}


class MemoryBackend:
    """A fake object store: {key: (bytes, sha256 metadata)}."""

    endpoint = "memory://test"

    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, str | None]] = {}
        self.uploads = 0

    def head(self, obj: ObjectURL) -> StoredObject | None:
        if str(obj) not in self.objects:
            return None
        data, sha = self.objects[str(obj)]
        return StoredObject(str(obj), len(data), sha, self.endpoint)

    def upload(self, path: Path, obj: ObjectURL, sha256: str) -> None:
        self.uploads += 1
        self.objects[str(obj)] = (path.read_bytes(), sha256)

    def download(self, obj: ObjectURL, dest: Path) -> None:
        dest.write_bytes(self.objects[str(obj)][0])


@pytest.fixture
def backend() -> MemoryBackend:
    return MemoryBackend()


@pytest.fixture
def model(tmp_path) -> Path:
    path = tmp_path / "src" / "m.gguf"
    path.parent.mkdir()
    path.write_bytes(b"GGUF" + bytes(range(256)) * 64)
    return path


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- URLs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "parts"),
    [
        ("s3://bucket/models/x.gguf", ("s3", "bucket", "models/x.gguf")),
        ("gs://b-1/x.gguf", ("gs", "b-1", "x.gguf")),
        ("gs://my_bucket.example/a b/x y.gguf", ("gs", "my_bucket.example", "a b/x y.gguf")),
    ],
)
def test_parse_url(url, parts):
    obj = ObjectURL.parse(url)
    assert (obj.scheme, obj.bucket, obj.key) == parts
    assert str(obj) == url


@pytest.mark.parametrize(
    "url", ["http://bucket/x", "s3://", "s3://bucket", "s3://bucket/", "gs:///x", "s3://bucket/dir/", "s3://[::1/x"]
)
def test_bad_urls_are_config_errors(url):
    with pytest.raises(ConfigError) as err:
        ObjectURL.parse(url)
    assert err.value.exit_code == ExitCode.CONFIGURATION


# Object names that are no file name: the last key part becomes a local file, so '..' would be the
# destination's parent and '.' the destination itself (main crashed with an OSError traceback).
@pytest.mark.parametrize(
    "url",
    [
        "s3://bucket/models/..",
        "s3://bucket/..",
        "s3://bucket/.",
        "s3://bucket/models/.",
        "s3://bucket/../x.gguf",
        "s3://bucket/models/./x.gguf",
        "s3://bucket/a//x.gguf",
        "s3://bucket/a\\b.gguf",
    ],
)
def test_object_names_that_are_not_file_names_are_config_errors(url):
    with pytest.raises(ConfigError, match="is not a file name") as err:
        ObjectURL.parse(url)
    assert err.value.exit_code == ExitCode.CONFIGURATION


@pytest.mark.parametrize("url", ["gs://bucket/x\x00.gguf", "gs://bucket/x\n.gguf", "s3://bucket/x\t.gguf"])
def test_control_characters_are_refused_not_dropped(url):
    with pytest.raises(ConfigError, match="contains control characters"):
        ObjectURL.parse(url)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("s3://b/x.gguf", "not a valid bucket name"),
        ("s3://Bucket/x.gguf", "not a valid bucket name"),
        ("s3://user@bucket/x.gguf", "not a valid bucket name"),
        ("s3://bucket:9000/x.gguf", "not a valid bucket name"),
        ("s3://bucket/x.gguf?versionId=1", "must not carry"),
        ("s3://bucket/x.gguf#frag", "must not carry"),
    ],
)
def test_bucket_names_and_url_extras_are_checked_locally(url, message):
    with pytest.raises(ConfigError, match=message):
        ObjectURL.parse(url)


def test_fetch_of_a_dot_dot_object_is_refused_before_any_request(backend, tmp_path):
    """The issue's reproduction (`invoke model.fetch s3://bucket/models/..`), minus the network."""
    backend.objects["s3://bucket/models/.."] = (b"GGUF", hashlib.sha256(b"GGUF").hexdigest())
    with pytest.raises(ConfigError, match="is not a file name"):
        storage.fetch("s3://bucket/models/..", tmp_path / "dest/", backend=backend, **QUIET)
    assert not (tmp_path / "dest").exists()


# --- publish / fetch ------------------------------------------------------------------------------


def test_publish_to_a_prefix_keeps_the_file_name_and_records_sha256(backend, model):
    stored = storage.publish(model, "s3://bucket/models/", backend=backend, **QUIET)
    assert stored.url == "s3://bucket/models/m.gguf"
    assert stored.sha256 == sha(model) and stored.size == model.stat().st_size


def test_publish_same_file_twice_uploads_once(backend, model):
    storage.publish(model, "s3://bucket/m.gguf", backend=backend, **QUIET)
    storage.publish(model, "s3://bucket/m.gguf", backend=backend, **QUIET)
    assert backend.uploads == 1


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://bucket/", "must start with s3:// or gs://"),
        ("s3://", "'s3://' must name a bucket"),
        ("gs://bucket", "must name a bucket and an object"),
    ],
)
def test_publish_bad_url_is_config_error_naming_it_before_the_file_is_read(backend, tmp_path, url, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        storage.publish(tmp_path / "nope.gguf", url, backend=backend, **QUIET)


def test_publish_url_to_a_prefix_keeps_the_file_name():
    assert str(storage.publish_url("gs://bkt/models/", "m.gguf")) == "gs://bkt/models/m.gguf"
    assert str(storage.publish_url("gs://bkt/x.gguf", "m.gguf")) == "gs://bkt/x.gguf"


def test_publish_of_a_file_called_dot_dot_is_refused(backend):
    with pytest.raises(ConfigError, match="is not a file name"):
        storage.publish(Path(".."), "s3://bucket/models/", backend=backend, **QUIET)


def test_publish_missing_file_is_config_error(backend, tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        storage.publish(tmp_path / "nope.gguf", "s3://bucket/x.gguf", backend=backend, **QUIET)


def test_publish_that_does_not_read_back_is_infrastructure_error(backend, model):
    backend.head = lambda obj: None  # type: ignore[method-assign]
    with pytest.raises(InfrastructureError, match="did not read back"):
        storage.publish(model, "s3://bucket/x.gguf", backend=backend, **QUIET)


def test_fetch_installs_verified_file_with_sidecar(backend, model, tmp_path):
    storage.publish(model, "gs://bucket/m.gguf", backend=backend, **QUIET)
    dest = tmp_path / "node"
    dest.mkdir()
    got = storage.fetch("gs://bucket/m.gguf", dest, backend=backend, **QUIET)
    assert got.downloaded and got.path == dest / "m.gguf"
    assert got.sha256 == sha(model) == sha(got.path)
    assert (dest / "m.gguf.sha256").read_text().split()[0] == got.sha256
    assert sorted(p.name for p in dest.iterdir()) == ["m.gguf", "m.gguf.sha256"]


def test_fetch_again_is_a_verified_no_op(backend, model, tmp_path):
    storage.publish(model, "gs://bucket/m.gguf", backend=backend, **QUIET)
    storage.fetch("gs://bucket/m.gguf", tmp_path, backend=backend, **QUIET)
    again = storage.fetch("gs://bucket/m.gguf", tmp_path, backend=backend, **QUIET)
    assert not again.downloaded


def test_fetch_replaces_a_corrupted_local_copy(backend, model, tmp_path):
    storage.publish(model, "gs://bucket/m.gguf", backend=backend, **QUIET)
    (tmp_path / "m.gguf").write_bytes(b"GGUF corrupted")
    got = storage.fetch("gs://bucket/m.gguf", tmp_path, backend=backend, **QUIET)
    assert got.downloaded and sha(got.path) == sha(model)


def test_fetch_wrong_checksum_installs_nothing(backend, model, tmp_path):
    backend.objects["s3://bucket/m.gguf"] = (model.read_bytes(), "0" * 64)
    with pytest.raises(ChecksumError, match=r"expected 0{64}; discarded") as err:
        storage.fetch("s3://bucket/m.gguf", tmp_path / "node/", backend=backend, **QUIET)
    assert err.value.exit_code == ExitCode.FAILURES
    assert list((tmp_path / "node").iterdir()) == []


def test_fetch_without_metadata_refuses(backend, model, tmp_path):
    backend.objects["s3://bucket/m.gguf"] = (model.read_bytes(), None)
    with pytest.raises(ChecksumError, match="no 'sha256' metadata"):
        storage.fetch("s3://bucket/m.gguf", tmp_path, backend=backend, **QUIET)


def test_fetch_without_metadata_but_with_expected_digest(backend, model, tmp_path):
    backend.objects["s3://bucket/m.gguf"] = (model.read_bytes(), None)
    got = storage.fetch("s3://bucket/m.gguf", tmp_path, expected_sha256=sha(model), backend=backend, **QUIET)
    assert got.sha256 == sha(model)


def test_expected_digest_must_match_metadata(backend, model, tmp_path):
    storage.publish(model, "s3://bucket/m.gguf", backend=backend, **QUIET)
    with pytest.raises(ChecksumError, match="does not match the expected"):
        storage.fetch("s3://bucket/m.gguf", tmp_path, expected_sha256="a" * 64, backend=backend, **QUIET)


def test_fetch_missing_object_is_infrastructure_error(backend, tmp_path):
    with pytest.raises(InfrastructureError, match=r"s3://bucket/none.gguf does not exist at memory://test"):
        storage.fetch("s3://bucket/none.gguf", tmp_path, backend=backend, **QUIET)


@pytest.mark.parametrize("dest", ["/proc/llmpyramid-test/", "/proc/self/status/x/"])
def test_fetch_into_an_impossible_path_is_one_line_config_error(backend, model, dest):
    storage.publish(model, "s3://bucket/m.gguf", backend=backend, **QUIET)
    with pytest.raises(ConfigError, match="cannot write") as err:
        storage.fetch("s3://bucket/m.gguf", dest, backend=backend, **QUIET)
    assert "\n" not in str(err.value)


def test_fetch_to_a_destination_with_a_nul_byte_is_config_error(backend, model):
    storage.publish(model, "s3://bucket/m.gguf", backend=backend, **QUIET)
    with pytest.raises(ConfigError, match="contains a NUL byte"):
        storage.fetch("s3://bucket/m.gguf", "models/te\x00st/", backend=backend, **QUIET)


def test_fetch_onto_an_existing_directory_name_is_one_line_config_error(backend, model, tmp_path):
    storage.publish(model, "s3://bucket/m.gguf", backend=backend, **QUIET)
    (tmp_path / "node" / "m.gguf").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"cannot write .*node/m\.gguf"):
        storage.fetch("s3://bucket/m.gguf", tmp_path / "node", backend=backend, **QUIET)


@pytest.mark.parametrize("sha", ["xyz", "a" * 63, "g" * 64])
def test_malformed_expected_sha256_is_config_error(backend, model, tmp_path, sha):
    storage.publish(model, "s3://bucket/m.gguf", backend=backend, **QUIET)
    with pytest.raises(ConfigError, match="must be a sha256 hex digest"):
        storage.fetch("s3://bucket/m.gguf", tmp_path, expected_sha256=sha, backend=backend, **QUIET)


def test_publish_of_an_unreadable_file_is_config_error(backend, model, monkeypatch):
    def denied(_path):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(storage, "sha256_of", denied)
    with pytest.raises(ConfigError, match=r"cannot publish .*: Permission denied"):
        storage.publish(model, "s3://bucket/m.gguf", backend=backend, **QUIET)


def test_fetch_replaces_planted_symlinks_and_never_writes_through_them(backend, model, tmp_path):
    """A link at the model or sidecar name must not redirect the write to another file."""
    storage.publish(model, "s3://bucket/m.gguf", backend=backend, **QUIET)
    dest = tmp_path / "node"
    dest.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (dest / "m.gguf").symlink_to(victim)
    (dest / "m.gguf.sha256").symlink_to(victim)
    got = storage.fetch("s3://bucket/m.gguf", dest, backend=backend, **QUIET)
    assert victim.read_text() == "precious"
    assert got.downloaded
    assert not (dest / "m.gguf").is_symlink() and not (dest / "m.gguf.sha256").is_symlink()
    assert sha(dest / "m.gguf") == sha(model)


def test_a_symlink_to_a_good_copy_is_not_taken_as_already_present(backend, model, tmp_path):
    storage.publish(model, "s3://bucket/m.gguf", backend=backend, **QUIET)
    dest = tmp_path / "node"
    dest.mkdir()
    (dest / "m.gguf").symlink_to(model)
    got = storage.fetch("s3://bucket/m.gguf", dest, backend=backend, **QUIET)
    assert got.downloaded and not (dest / "m.gguf").is_symlink()
    assert model.read_bytes() == (dest / "m.gguf").read_bytes()


@pytest.mark.parametrize(
    ("dest", "expected"),
    [("existing", "existing/x.gguf"), ("new/", "new/x.gguf"), ("newdir", "newdir/x.gguf"), ("file.gguf", "file.gguf")],
)
def test_target_path(tmp_path, dest, expected):
    (tmp_path / "existing").mkdir()
    assert storage._target_path(f"{tmp_path}/{dest}", "x.gguf") == tmp_path / expected


# --- the endpoint check and S3 error mapping -------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "var"), [("s3://bkt/x.gguf", "AWS_ENDPOINT_URL"), ("gs://bkt/x.gguf", "STORAGE_EMULATOR_HOST")]
)
def test_unreachable_emulator_endpoint_fails_fast_naming_it(monkeypatch, url, var):
    from llmpyramid.ports import free_port

    dead = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv(var, dead)
    with pytest.raises(InfrastructureError, match=rf"endpoint http://{dead} \({var}\) is not reachable"):
        storage.backend_for(ObjectURL.parse(url))


@pytest.fixture
def stubbed_s3(monkeypatch):
    pytest.importorskip("boto3", reason="dependency group `emulators`")
    from botocore.stub import Stubber

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    for name, value in {
        "AWS_ACCESS_KEY_ID": "t",
        "AWS_SECRET_ACCESS_KEY": "t",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    backend = storage.S3Backend()
    with Stubber(backend.client) as stub:
        yield backend, stub


def test_s3_missing_object_in_existing_bucket_is_none(stubbed_s3):
    backend, stub = stubbed_s3
    stub.add_client_error("head_object", "404", http_status_code=404)
    stub.add_response("head_bucket", {})
    assert backend.head(ObjectURL.parse("s3://bucket/x.gguf")) is None


def test_s3_missing_bucket_is_named(stubbed_s3):
    backend, stub = stubbed_s3
    stub.add_client_error("head_object", "404", http_status_code=404)
    stub.add_client_error("head_bucket", "404", http_status_code=404)
    with pytest.raises(InfrastructureError, match=r"bucket s3://bucket does not exist at http://127.0.0.1:9"):
        backend.head(ObjectURL.parse("s3://bucket/x.gguf"))


def test_s3_access_denied_is_config_error(stubbed_s3):
    backend, stub = stubbed_s3
    stub.add_client_error("head_object", "403", http_status_code=403)
    with pytest.raises(ConfigError, match="access denied"):
        backend.head(ObjectURL.parse("s3://bucket/x.gguf"))


def test_s3_head_reads_sha256_metadata(stubbed_s3):
    backend, stub = stubbed_s3
    stub.add_response("head_object", {"ContentLength": 5, "Metadata": {"sha256": "ab" * 32}})
    got = backend.head(ObjectURL.parse("s3://bucket/x.gguf"))
    assert got is not None and got.size == 5 and got.sha256 == "ab" * 32


def test_gcs_backend_uses_emulator_with_anonymous_credentials(monkeypatch):
    pytest.importorskip("google.cloud.storage", reason="dependency group `emulators`")
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "localhost:4443")
    backend = storage.GCSBackend()
    assert backend.endpoint == "http://localhost:4443"
    assert type(backend.client._credentials).__name__ == "AnonymousCredentials"
