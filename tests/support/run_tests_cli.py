"""scripts/run_tests.py called in-process, as the tests of its front door do."""

from __future__ import annotations

from llmpyramid import results
from llmpyramid import run_tests as runner
from llmpyramid.errors import ExitCode
from llmpyramid.ports import free_port


def run(*args: str) -> tuple[dict, ExitCode]:
    """(document, exit code) of `run_tests.py ARGS`, the document validated against the schema."""
    document, code, _ = runner.execute(list(args))
    results.validate(document)
    assert document["exit_code"] == int(code)
    return document, code


def closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}"
