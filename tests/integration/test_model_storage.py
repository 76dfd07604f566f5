"""Model distribution round trip against both emulators: publish the real test GGUF, fetch it as a
burst node would, verify sha256; plus a missing object, a wrong checksum and an unreachable endpoint."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmpyramid import storage
from llmpyramid.errors import ExitCode, InfrastructureError
from llmpyramid.model import ModelFile, ensure_model
from llmpyramid.ports import free_port

pytestmark = [pytest.mark.localstack, pytest.mark.timeout(300)]

CLOUDS = ["s3", "gs"]


@pytest.fixture(scope="session")
def test_model() -> ModelFile:
    return ensure_model(notify=lambda _m: None)


@pytest.fixture(scope="module", params=CLOUDS)
def cloud(request, run_id) -> tuple[str, str]:
    """(scheme, bucket): a fresh bucket on the cloud's emulator for this run."""
    scheme = request.param
    bucket = f"llmpyramid-models-{run_id}"
    if scheme == "s3":
        request.getfixturevalue("s3").create_bucket(Bucket=bucket)
    else:
        request.getfixturevalue("gcs").create_bucket(bucket)
    return scheme, bucket


@pytest.fixture(scope="module")
def published(cloud, test_model) -> storage.StoredObject:
    scheme, bucket = cloud
    return storage.publish(test_model.path, f"{scheme}://{bucket}/models/", notify=lambda _m: None)


def test_publish_records_sha256_in_object_metadata(published, test_model):
    assert published.size == test_model.size
    assert published.sha256 == test_model.sha256


def test_fetch_as_a_burst_node_verifies_and_installs(published, test_model, tmp_path):
    fetched = storage.fetch(published.url, tmp_path, notify=lambda _m: None)
    assert fetched.downloaded
    assert fetched.path == tmp_path / test_model.path.name
    assert fetched.sha256 == test_model.sha256 == storage.sha256_of(fetched.path)
    assert not list(tmp_path.glob(".*.part")), "temp file left behind"


def test_fetched_model_is_a_cache_hit_for_ensure_model(published, tmp_path):
    from llmpyramid.config import ModelSettings

    storage.fetch(published.url, tmp_path, notify=lambda _m: None)
    found = ensure_model(ModelSettings(model_dir=tmp_path, offline_only=True), notify=lambda _m: None)
    assert found.source == "cache" and found.path.parent == tmp_path


def test_second_fetch_is_a_verified_no_op(published, tmp_path):
    first = storage.fetch(published.url, tmp_path, notify=lambda _m: None)
    second = storage.fetch(published.url, tmp_path, notify=lambda _m: None)
    assert first.downloaded and not second.downloaded
    assert second.sha256 == first.sha256


def test_republishing_the_same_file_skips_the_upload(published, test_model):
    messages: list[str] = []
    storage.publish(test_model.path, published.url, notify=messages.append)
    assert "not re-uploading" in messages[0]


def test_missing_object_is_an_infrastructure_error(cloud, tmp_path):
    scheme, bucket = cloud
    url = f"{scheme}://{bucket}/models/does-not-exist.gguf"
    with pytest.raises(InfrastructureError, match="does not exist") as err:
        storage.fetch(url, tmp_path, notify=lambda _m: None)
    assert url in str(err.value)
    assert err.value.exit_code == ExitCode.INFRASTRUCTURE
    assert list(tmp_path.iterdir()) == []


def test_missing_bucket_is_named(cloud, tmp_path):
    scheme, _ = cloud
    with pytest.raises(InfrastructureError, match=r"bucket .*no-such-bucket-\w+ does not exist"):
        storage.fetch(f"{scheme}://no-such-bucket-{free_port()}/x.gguf", tmp_path, notify=lambda _m: None)


def test_wrong_checksum_is_rejected_and_nothing_installed(cloud, tmp_path):
    scheme, bucket = cloud
    url = f"{scheme}://{bucket}/models/tampered.gguf"
    payload = tmp_path / "src" / "tampered.gguf"
    payload.parent.mkdir()
    payload.write_bytes(b"GGUF" + b"\0" * 1024)
    obj = storage.ObjectURL.parse(url)
    storage.backend_for(obj).upload(payload, obj, "0" * 64)  # metadata that does not match the bytes

    dest = tmp_path / "node"
    dest.mkdir()
    with pytest.raises(storage.ChecksumError, match=r"expected 0{64}") as err:
        storage.fetch(url, dest, notify=lambda _m: None)
    assert err.value.exit_code == ExitCode.FAILURES
    assert list(dest.iterdir()) == [], "a file that failed verification must not be installed"


def test_expected_sha256_must_agree_with_metadata(published, tmp_path):
    with pytest.raises(storage.ChecksumError, match="does not match the expected"):
        storage.fetch(published.url, tmp_path, expected_sha256="f" * 64, notify=lambda _m: None)


@pytest.mark.parametrize(("scheme", "env_var"), [("s3", "AWS_ENDPOINT_URL"), ("gs", "STORAGE_EMULATOR_HOST")])
def test_unreachable_endpoint_is_exit_2_naming_it(scheme, env_var, monkeypatch, tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv(env_var, dead)
    with pytest.raises(InfrastructureError) as err:
        storage.fetch(f"{scheme}://bucket-x/models/m.gguf", tmp_path, notify=lambda _m: None)
    assert err.value.exit_code == ExitCode.INFRASTRUCTURE
    assert dead in str(err.value) and env_var in str(err.value)


def test_publish_of_a_missing_file_is_a_config_error(tmp_path):
    from llmpyramid.errors import ConfigError

    with pytest.raises(ConfigError, match="no such file"):
        storage.publish(Path(tmp_path / "nope.gguf"), "s3://bucket-x/models/")


# --- issue 13, item 4: an object named like a directory entry, through the real front door ---------

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("key", ["models/..", ".", "models/."])
def test_fetch_of_an_object_that_is_no_file_name_is_exit_3_in_one_line(cloud, key, tmp_path):
    """`invoke model.fetch s3://bucket/models/..` crashed with an OSError traceback on main."""
    import hashlib
    import subprocess
    import sys

    scheme, bucket = cloud
    if scheme == "s3":  # S3 stores such keys; the object exists, so only the name check stops the fetch
        obj = storage.ObjectURL(scheme, bucket, key)  # built directly: ObjectURL.parse refuses this key
        payload = tmp_path / "payload.gguf"
        payload.write_bytes(b"GGUF" + b"\0" * 64)
        storage.backend_for(obj).upload(payload, obj, hashlib.sha256(payload.read_bytes()).hexdigest())
    dest = tmp_path / "dest"
    proc = subprocess.run(
        [sys.executable, "-m", "invoke", "-r", str(ROOT), "model.fetch", f"{scheme}://{bucket}/{key}",
         "--dest", f"{dest}/"],
        capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == int(ExitCode.CONFIGURATION), proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("error: ") and "\n" not in proc.stderr.strip()
    assert "is not a file name" in proc.stderr
    assert not dest.exists()
