"""`python -m llmpyramid.verdict results/NAME.json`: a layer's verdict as the pipelines read it, for a CI job.

Prints one line (`passed`, `passed with 2 skipped: <why>`, `skipped: <why>`, ...). Exit code: the document's own,
except that a layer whose every check skipped exits 1 — a CI job must never be green for a layer that did not
run (GitHub shows a step as passed or failed, nothing in between). A missing or unreadable document: exit 3.
"""

from __future__ import annotations

import sys
from pathlib import Path

from llmpyramid.cli import ArgumentParser, guarded
from llmpyramid.errors import ConfigError, ExitCode
from llmpyramid.pipelines import step_verdict
from llmpyramid.results import read_json


def main(argv: list[str] | None = None) -> int:
    with guarded():
        parser = ArgumentParser(prog="python -m llmpyramid.verdict", description=__doc__.split("\n\n")[0])
        parser.add_argument("document", type=Path, help="a layer's results document (results/NAME.json)")
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
        doc = read_json(args.document)
        if doc is None:
            raise ConfigError(f"{args.document}: no readable results document")
        verdict = step_verdict(doc, int(doc.get("exit_code", 0)))
        print(f"{args.document.stem}: {verdict.get('reason') or verdict['status']}")
        if verdict["status"] == "skipped":
            return int(ExitCode.FAILURES)
        return int(verdict["exit_code"])
    return int(ExitCode.FAILURES)  # pragma: no cover - guarded() exits on error


if __name__ == "__main__":
    sys.exit(main())
