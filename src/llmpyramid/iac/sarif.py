"""Rego findings as SARIF 2.1.0, so GitHub code scanning shows them next to checkov's.

Code scanning needs a file and line for every result: the line of the finding's
`resource "<type>" "<name>"` block in its module, or line 1 of the module's first file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from llmpyramid.iac.report import Finding

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
TOOL = "llmpyramid-rego"
_INDEX = re.compile(r"\[[^\]]*\]$")


def locate(root: Path, target: str, resource: str) -> tuple[str, int]:
    """(path relative to root, 1-based line) of the resource's block, else the module's first file."""
    module = root / target
    files = sorted(module.glob("*.tf"))
    if not files:
        return target, 1
    rtype, _, name = _INDEX.sub("", resource).partition(".")
    if rtype and name:
        block = re.compile(rf'^[ \t]*resource\s+"{re.escape(rtype)}"\s+"{re.escape(name)}"', re.M)
        for tf in files:
            text = tf.read_text()
            if m := block.search(text):
                return tf.relative_to(root).as_posix(), text.count("\n", 0, m.start()) + 1
    return files[0].relative_to(root).as_posix(), 1


def rego_sarif(findings: Iterable[Finding], root: Path) -> dict[str, Any]:
    findings = [f for f in findings if f.layer == "rego"]
    rules = sorted({f.rule for f in findings})
    results = []
    for f in findings:
        path, line = locate(root, f.target, f.resource)
        results.append(
            {
                "ruleId": f.rule,
                "ruleIndex": rules.index(f.rule),
                "level": "error" if f.severity == "deny" else "warning",
                "message": {"text": f"{f.resource}: {f.message}" if f.resource else f.message},
                "locations": [{"physicalLocation": {"artifactLocation": {"uri": path}, "region": {"startLine": line}}}],
            }
        )
    return {
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": TOOL,
                        "informationUri": "https://www.openpolicyagent.org/docs/policy-language",
                        "rules": [{"id": r, "name": r, "shortDescription": {"text": r}} for r in rules],
                    }
                },
                "results": results,
            }
        ],
    }


def write_rego_sarif(findings: Iterable[Finding], root: Path, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rego_sarif(findings, root), indent=2) + "\n")
    return path
