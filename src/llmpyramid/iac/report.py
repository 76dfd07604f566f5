"""Findings and the IaC report: one JSON document and one exit code for every layer."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from llmpyramid.errors import ExitCode

Status = Literal["passed", "failed", "skipped", "error"]
Severity = Literal["deny", "warn"]


@dataclass(frozen=True)
class Finding:
    """One violation: which layer saw it, under which rule, where."""

    layer: str  # fmt | tflint | checkov | rego | terraform-test
    rule: str  # e.g. CKV_AWS_24, terraform.security.ssh_world_open, a tftest run name
    target: str  # module or fixture directory, relative to the repo
    resource: str = ""
    message: str = ""
    severity: Severity = "deny"


@dataclass
class Check:
    """One layer run over one target (a module or a fixture)."""

    layer: str
    target: str
    status: Status
    duration_seconds: float = 0.0
    reason: str = ""  # why skipped / error detail / what part of a passed check was skipped
    findings: list[Finding] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    skipped_parts: int = 0  # a passed check whose expectations were partly skipped is "passed with N skipped"


@dataclass
class FixtureVerdict:
    """Whether a deliberately broken fixture was rejected by the layer meant to catch it."""

    fixture: str
    layer: str
    rule: str
    status: Literal["caught", "missed", "skipped"]
    reason: str = ""


@dataclass
class Report:
    suite: str = "iac"
    checks: list[Check] = field(default_factory=list)
    fixtures: list[FixtureVerdict] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    duration_seconds: float = 0.0

    def add(self, check: Check) -> Check:
        self.checks.append(check)
        return check

    @property
    def findings(self) -> list[Finding]:
        return [f for c in self.checks for f in c.findings]

    @property
    def denials(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "deny"]

    @property
    def exit_code(self) -> ExitCode:
        if any(c.status == "error" for c in self.checks):
            return ExitCode.INFRASTRUCTURE
        failed = any(c.status == "failed" for c in self.checks)
        missed = any(v.status == "missed" for v in self.fixtures)
        return ExitCode.FAILURES if failed or missed or self.denials else ExitCode.OK

    def finish(self) -> Report:
        self.duration_seconds = round(time.monotonic() - self.started, 2)
        return self

    def to_dict(self) -> dict[str, Any]:
        statuses = [c.status for c in self.checks]
        return {
            "suite": self.suite,
            "summary": {
                "total": len(self.checks),
                "passed": statuses.count("passed"),
                "passed_with_skips": sum(c.status == "passed" and c.skipped_parts > 0 for c in self.checks),
                "failed": statuses.count("failed"),
                "skipped": statuses.count("skipped"),
                "errors": statuses.count("error"),
                "findings": len(self.denials),
                "warnings": len(self.findings) - len(self.denials),
                "fixtures_caught": sum(v.status == "caught" for v in self.fixtures),
                "fixtures_missed": sum(v.status == "missed" for v in self.fixtures),
                "fixtures_skipped": sum(v.status == "skipped" for v in self.fixtures),
                "duration_seconds": self.duration_seconds,
                "exit_code": int(self.exit_code),
            },
            "checks": [{**asdict(c), "findings": [asdict(f) for f in c.findings]} for c in self.checks],
            "fixtures": [asdict(v) for v in self.fixtures],
        }

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    def to_text(self) -> str:
        lines = []
        for c in self.checks:
            extra = f" ({c.reason})" if c.reason else ""
            lines.append(f"{c.status:8} {c.layer:15} {c.target}{extra}")
            for f in c.findings:
                where = f" {f.resource}" if f.resource else ""
                lines.append(f"         {f.severity}: {f.rule}{where}: {f.message}")
        for v in self.fixtures:
            extra = f" ({v.reason})" if v.reason else ""
            lines.append(f"fixture  {v.status:8} {v.fixture} by {v.layer} rule {v.rule}{extra}")
        s = self.to_dict()["summary"]
        lines.append(
            f"iac: {s['passed']} passed, {s['failed']} failed, {s['skipped']} skipped, "
            f"{s['errors']} errors, {s['findings']} findings, fixtures caught "
            f"{s['fixtures_caught']}/{len(self.fixtures)} in {s['duration_seconds']}s"
        )
        return "\n".join(lines)
