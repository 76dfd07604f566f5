"""docker-compose.test.yml cannot run here (no Docker engine): validate it against the Compose Spec."""

from __future__ import annotations

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
    assert compose["services"]["inference"]["image"].startswith("ghcr.io/ggml-org/llama.cpp:server")


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
