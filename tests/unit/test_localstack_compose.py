"""docker-compose.localstack.yml cannot run here (no Docker engine): validate it against the Compose Spec."""

from __future__ import annotations

from pathlib import Path

import pytest
from compose_spec import PyCompose

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.localstack.yml"


@pytest.fixture(scope="module")
def compose() -> dict:
    spec = PyCompose.from_yaml(COMPOSE_FILE.read_text())
    spec.validate()
    return spec.to_dict()


def test_runs_localstack_and_fake_gcs_server(compose):
    assert set(compose["services"]) == {"localstack", "fake-gcs"}
    assert compose["services"]["localstack"]["image"].startswith("localstack/localstack:")
    assert compose["services"]["fake-gcs"]["image"].startswith("fsouza/fake-gcs-server:")


@pytest.mark.parametrize("service", ["localstack", "fake-gcs"])
def test_images_are_pinned(compose, service):
    tag = compose["services"][service]["image"].rpartition(":")[2]
    assert tag and tag not in ("latest", "stable")


@pytest.mark.parametrize(("service", "port"), [("localstack", 4566), ("fake-gcs", 4443)])
def test_ports_published_on_loopback_only(compose, service, port):
    assert compose["services"][service]["ports"] == [f"127.0.0.1:{port}:{port}"]


@pytest.mark.parametrize(
    ("service", "url"),
    [("localstack", "http://localhost:4566/_localstack/health"), ("fake-gcs", "http://localhost:4443/storage/v1/b")],
)
def test_healthchecks_probe_the_service_endpoint(compose, service, url):
    hc = compose["services"][service]["healthcheck"]
    assert hc["test"][0] == "CMD"
    assert url in hc["test"]
    assert hc["retries"] >= 1


def test_localstack_enables_what_terraform_aws_creates(compose):
    services = set(compose["services"]["localstack"]["environment"]["SERVICES"].split(","))
    assert {"s3", "iam", "sts", "ec2"} <= services


def test_fake_gcs_serves_plain_http_with_matching_external_url(compose):
    cmd = compose["services"]["fake-gcs"]["command"]
    assert cmd[cmd.index("-scheme") + 1] == "http"
    assert cmd[cmd.index("-external-url") + 1] == "http://127.0.0.1:4443"


def test_resource_limits(compose):
    for svc in compose["services"].values():
        limits = svc["deploy"]["resources"]["limits"]
        assert limits["cpus"] and limits["memory"]


def test_no_interpolation_the_validator_cannot_check():
    assert "${" not in COMPOSE_FILE.read_text()
