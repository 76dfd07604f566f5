#!/usr/bin/env bash
# Task run: serve the fetched model on SERVE_HOST:SERVE_PORT with the API_KEY secret (read from the
# environment by the server, never put on a command line).
set -euo pipefail
export PATH="$HOME/.local/bin:$PATH"
exec uv run --no-sync python -m llmpyramid.cloud.node serve
