"""The `lint` layer: ruff (lint + format check), mypy, and the GitHub workflows (schema + zizmor).

    python -m llmpyramid.lint

Each tool runs with an argument list (no shell); the exit code is 0 when every tool passed, else 1.
actionlint cannot be installed offline (its PyPI package downloads a binary): it runs in GitHub.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from llmpyramid.config import PROJECT_ROOT

WORKFLOWS = sorted(str(p.relative_to(PROJECT_ROOT)) for p in (PROJECT_ROOT / ".github" / "workflows").glob("*.yml"))

CHECKS: tuple[tuple[str, ...], ...] = (
    ("ruff", "check", "."),
    ("ruff", "format", "--check", "."),
    ("mypy",),
    ("check-jsonschema", "--builtin-schema", "vendor.github-workflows", *WORKFLOWS),
    ("zizmor", "--offline", ".github/workflows"),
)


def main() -> int:
    failed = []
    bindir = Path(sys.executable).parent
    for argv in CHECKS:
        exe = shutil.which(argv[0], path=str(bindir)) or shutil.which(argv[0])
        if exe is None:
            print(f"lint: {argv[0]} is not installed (it belongs to the lint dependency group)", file=sys.stderr)
            failed.append(argv[0])
            continue
        print(f"lint: {' '.join(argv)}", file=sys.stderr, flush=True)
        if subprocess.run([exe, *argv[1:]], cwd=PROJECT_ROOT, check=False).returncode != 0:
            failed.append(argv[0])
    if failed:
        print(f"lint: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    print("lint: all checks passed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
