"""The Docker path: `docker-compose.test.yml` with the official llama.cpp server image."""

from __future__ import annotations

import shutil
import subprocess

from llmpyramid.config import PROJECT_ROOT
from llmpyramid.errors import ConfigError, InfrastructureError

COMPOSE_FILE = PROJECT_ROOT / "docker-compose.test.yml"
DOCKER_URL = "http://127.0.0.1:8080"


def compose_command() -> list[str]:
    """`docker compose` (v2 plugin) or `docker-compose`, once a Docker engine answers."""
    if not shutil.which("docker"):
        raise InfrastructureError("docker is not installed; use the embedded stack (the default)")
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=20, check=False)
    if info.returncode != 0:
        raise InfrastructureError(
            "no Docker engine is available (docker info failed); use the embedded stack (the default)"
        )
    if subprocess.run(["docker", "compose", "version"], capture_output=True, check=False).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise InfrastructureError(
        "the docker compose plugin is not installed (neither `docker compose` nor `docker-compose`)"
    )


def compose(*args: str, command: list[str] | None = None) -> None:
    cmd = [*(command or compose_command()), "-f", str(COMPOSE_FILE), *args]
    proc = subprocess.run(cmd, cwd=PROJECT_ROOT, check=False)
    if proc.returncode != 0:
        raise InfrastructureError(f"`{' '.join(cmd)}` failed with exit code {proc.returncode}")


def up() -> None:
    """Check for an engine first (no point fetching a model otherwise), then start the compose stack."""
    from llmpyramid.model import MODEL_FILE_NAME, ensure_model

    command = compose_command()
    found = ensure_model(notify=print)  # the compose file mounts ./models/test/MODEL_FILE_NAME
    if found.path.resolve() != (PROJECT_ROOT / "models" / "test" / MODEL_FILE_NAME).resolve():
        raise ConfigError(
            f"the Docker path serves models/test/{MODEL_FILE_NAME}; {found.path} was chosen (MODEL_PATH/HF_FILE): "
            "use the embedded stack for other models"
        )
    compose("up", "-d", command=command)
