"""Rego (v1) policies evaluated in-process by a real engine (regorus, from PyPI).

`deny` rules are findings (exit 1), `warn` rules are reported only. `*_test.rego` files hold
OPA-style unit tests: every rule named `test_*` must evaluate to true.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import regorus

from llmpyramid.errors import ConfigError
from llmpyramid.iac.report import Finding

PACKAGES = ("terraform.security", "terraform.cost")
_PACKAGE = re.compile(r"^package\s+([\w.]+)", re.M)
_TEST_RULE = re.compile(r"^(test_\w+)\s+if\b", re.M)


def policy_files(directory: Path) -> list[Path]:
    files = sorted(p for p in directory.glob("*.rego") if not p.name.endswith("_test.rego"))
    if not files:
        raise ConfigError(f"no Rego policies in {directory}")
    return files


def test_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*_test.rego"))


def _engine(files: list[Path]) -> regorus.Engine:
    engine = regorus.Engine()
    for path in files:
        try:
            engine.add_policy(str(path), path.read_text())
        except RuntimeError as exc:
            msg = " ".join(str(exc).split()).split(" Stack backtrace")[0]
            raise ConfigError(f"invalid Rego in {path.name}: {msg[:300]}") from None
    return engine


def _query(engine: regorus.Engine, query: str) -> Any:
    """The value of a query, or None when it is undefined."""
    try:
        raw = json.loads(engine.eval_query_as_json(query))
    except RuntimeError as exc:
        msg = " ".join(str(exc).split()).split(" Stack backtrace")[0]
        raise ConfigError(f"evaluating {query}: {msg[:300]}") from None
    results = raw.get("result") or []
    if not results:
        return None
    return results[0]["expressions"][0]["value"]


@dataclass
class RegoTest:
    package: str
    name: str
    passed: bool
    error: str = ""

    __test__ = False


class PolicySet:
    """The policies of one directory, compiled once, evaluated against many inputs."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.files = policy_files(directory)
        self.engine = _engine(self.files)

    def evaluate(self, policy_input: dict[str, Any]) -> list[Finding]:
        engine = self.engine.clone()
        engine.set_input_json(json.dumps(policy_input))
        findings: list[Finding] = []
        for package in PACKAGES:
            for severity in ("deny", "warn"):
                for item in _query(engine, f"data.{package}.{severity}") or []:
                    findings.append(
                        Finding(
                            layer="rego",
                            rule=f"{package}.{item['rule']}",
                            target=str(policy_input.get("target", "")),
                            resource=item.get("resource", ""),
                            message=item.get("msg", ""),
                            severity="deny" if severity == "deny" else "warn",
                        )
                    )
        return sorted(findings, key=lambda f: (f.rule, f.resource))

    def run_tests(self) -> list[RegoTest]:
        """Every `test_*` rule of every *_test.rego file, evaluated with the policies loaded."""
        files = test_files(self.directory)
        if not files:
            raise ConfigError(f"no *_test.rego unit tests in {self.directory}")
        engine = _engine([*self.files, *files])
        results: list[RegoTest] = []
        for path in files:
            text = path.read_text()
            package = _PACKAGE.search(text)
            if package is None:
                raise ConfigError(f"{path.name} has no package declaration")
            names = sorted(set(_TEST_RULE.findall(text)))
            if not names:
                raise ConfigError(f"{path.name} defines no test_* rules")
            for name in names:
                try:
                    value = _query(engine, f"data.{package.group(1)}.{name}")
                    error = "" if value is True else f"evaluated to {json.dumps(value)}"
                    results.append(RegoTest(package.group(1), name, value is True, error))
                except ConfigError as exc:
                    results.append(RegoTest(package.group(1), name, False, str(exc)))
        return results
