"""The IaC pyramid, bottom up: static analysis, terraform native tests, and the proof that every
check bites (each broken fixture rejected by the layer meant to catch it, citing its rule)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmpyramid.errors import ConfigError, PyramidError
from llmpyramid.iac import inputs, paths
from llmpyramid.iac.checkov import run_checkov
from llmpyramid.iac.policy import PolicySet
from llmpyramid.iac.report import Check, Finding, FixtureVerdict, Report, Status
from llmpyramid.iac.sarif import write_rego_sarif
from llmpyramid.iac.terraform import REGISTRY, Terraform, required_providers
from llmpyramid.iac.tflint import TFLint, tflint_bin
from llmpyramid.iac.tools import ensure_checkov

STATIC_LAYERS = ("fmt", "tflint", "checkov", "rego")
ALL_PARTS = ("static", "native", "fixtures")

# Variables for the offline plan of the shipped aws module: exercise the optional network too.
AWS_PLAN_VARS: dict[str, Any] = {
    "environment": "test",
    "create_network": True,
    "admin_cidrs": ["203.0.113.0/24"],
    "inference_allowed_cidrs": ["198.51.100.0/24"],
}


@dataclass
class Context:
    root: Path
    results_dir: Path
    terraform: Terraform
    policies: PolicySet = field(init=False)
    plans: dict[str, dict[str, Any]] = field(default_factory=dict)  # target -> plan document
    # checkov runs started early (start_checkov) so they overlap the terraform plan; keyed by their arguments
    checkov_runs: dict[tuple[Any, ...], Future[list[Finding]]] = field(default_factory=dict)
    pool: ThreadPoolExecutor | None = None

    def __post_init__(self) -> None:
        self.policies = PolicySet(self.root / "terraform" / "policies")

    def plannable(self, module: Path) -> bool:
        """Only aws-only modules can be planned here (fake credentials, offline mirror)."""
        sources = set(required_providers(module).values())
        return sources == {f"{REGISTRY}/hashicorp/aws"} and not self.terraform.missing_providers(module)

    def start_checkov(self, dirs: list[Path], sarif: Path, use_config: bool) -> None:
        """Start a checkov run in the background; `checkov()` with the same arguments collects it."""
        if self.pool is not None and dirs:
            binary = ensure_checkov(self.root)  # installs it once, here, before any thread needs it
            key = (tuple(dirs), sarif, use_config)
            self.checkov_runs[key] = self.pool.submit(
                run_checkov, binary, dirs, sarif, root=self.root, use_config=use_config
            )

    def checkov(self, dirs: list[Path], sarif: Path, use_config: bool) -> list[Finding]:
        if started := self.checkov_runs.pop((tuple(dirs), sarif, use_config), None):
            return started.result()
        return run_checkov(ensure_checkov(self.root), dirs, sarif, root=self.root, use_config=use_config)

    def prepare_plans(self, targets: dict[str, tuple[Path, dict[str, Any]]]) -> None:
        """Plan every plannable target in one terraform root (saves an init+plan+show per module)."""
        batch = {paths.rel(d): (d, v) for d, v in targets.values() if self.plannable(d)}
        if not batch:
            return
        keys = {t: f"m{i}" for i, t in enumerate(batch)}
        planned = self.terraform.plan_modules({keys[t]: spec for t, spec in batch.items()})
        self.plans.update({t: planned[keys[t]] for t in batch})


def _timed(report: Report, layer: str, target: str, body: Callable[[Check], None]) -> Check:
    """Run one check; a tool failure becomes an `error` check (exit 2), not a traceback."""
    check = Check(layer=layer, target=target, status="passed")
    start = time.monotonic()
    try:
        body(check)
    except ConfigError:
        raise
    except PyramidError as exc:
        check.status, check.reason = "error", str(exc)
    check.duration_seconds = round(time.monotonic() - start, 2)
    if check.status == "passed" and any(f.severity == "deny" for f in check.findings):
        check.status = "failed"
    return report.add(check)


def policy_input(ctx: Context, module: Path, target: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """Plan JSON where an offline plan is possible (aws only), parsed HCL otherwise."""
    hcl = inputs.from_hcl(module, target)
    if target in ctx.plans:
        return inputs.from_plan(ctx.plans[target], target, layer=hcl["layer"])
    if ctx.plannable(module):
        plan = ctx.terraform.plan_json(module, variables)
        return inputs.from_plan(plan, target, layer=hcl["layer"])
    return hcl


# --- static analysis ------------------------------------------------------------------------------


def run_static(ctx: Context, report: Report, modules: Iterable[str], layers: Iterable[str] = STATIC_LAYERS) -> None:
    modules = list(modules)
    layers = set(layers)
    dirs = {m: paths.module_dir(m) for m in modules}

    if "fmt" in layers:
        for m, d in dirs.items():

            def fmt(check: Check, d: Path = d, m: str = m) -> None:
                for f in ctx.terraform.fmt_check(d):
                    check.findings.append(Finding("fmt", "terraform_fmt", paths.rel(d), f, "not in canonical format"))

            _timed(report, "fmt", paths.rel(d), fmt)

    if "tflint" in layers:
        binary = tflint_bin()
        for _m, d in dirs.items():
            if binary is None:
                report.add(Check("tflint", paths.rel(d), "skipped", reason="skipped: tflint not installed"))
                continue
            linter = TFLint(binary, ctx.root)

            def lint(check: Check, d: Path = d, linter: TFLint = linter) -> None:
                check.findings.extend(linter.lint(d, paths.rel(d)))

            _timed(report, "tflint", paths.rel(d), lint)

    if "checkov" in layers and dirs:

        def checkov(check: Check) -> None:
            sarif = static_checkov_sarif(ctx)
            check.findings.extend(ctx.checkov(list(dirs.values()), sarif, use_config=True))
            check.details["sarif"] = paths.rel(sarif)

        _timed(report, "checkov", ", ".join(paths.rel(d) for d in dirs.values()), checkov)

    if "rego" in layers:

        def unit(check: Check) -> None:
            tests = ctx.policies.run_tests()
            check.details["tests"] = len(tests)
            for t in tests:
                if not t.passed:
                    check.findings.append(
                        Finding("rego-unit", f"{t.package}.{t.name}", "terraform/policies", message=t.error)
                    )

        _timed(report, "rego-unit", "terraform/policies", unit)
        for m, d in dirs.items():

            def rego(check: Check, d: Path = d, m: str = m) -> None:
                data = policy_input(ctx, d, paths.rel(d), AWS_PLAN_VARS if m == "aws" else None)
                check.details["source"] = data["source"]
                check.details["resources"] = len(data["resources"])
                check.findings.extend(ctx.policies.evaluate(data))

            _timed(report, "rego", paths.rel(d), rego)
        rego_findings = [f for c in report.checks if c.layer == "rego" for f in c.findings]
        write_rego_sarif(rego_findings, ctx.root, ctx.results_dir / "rego.sarif")


# --- terraform native tests -----------------------------------------------------------------------


def run_native(ctx: Context, report: Report, modules: Iterable[str]) -> None:
    for m in modules:
        d = paths.module_dir(m)

        def native(check: Check, d: Path = d) -> None:
            outcome = ctx.terraform.test(d)
            check.details["runs"] = outcome.runs
            if outcome.status == "skipped":
                check.status, check.reason = "skipped", outcome.reason
            elif outcome.status == "error":
                check.status, check.reason = "error", outcome.reason
            elif outcome.status == "failed":
                check.status, check.reason = "failed", outcome.reason
                for r in outcome.failed_runs or [{"file": "", "run": "terraform test"}]:
                    check.findings.append(Finding("terraform-test", r["run"], paths.rel(d), r["file"], outcome.reason))

        _timed(report, "terraform-test", paths.rel(d), native)


# --- proof that the checks bite ----------------------------------------------------------------


def load_fixtures(root: Path) -> list[tuple[Path, dict[str, Any]]]:
    base = root / "terraform" / "fixtures" / "broken"
    found = []
    for d in sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []:
        exp = d / "expected.json"
        if not exp.is_file():
            raise ConfigError(f"fixture {paths.rel(d)} has no expected.json")
        spec = json.loads(exp.read_text())
        if not spec.get("expect"):
            raise ConfigError(f"fixture {paths.rel(d)} expects nothing")
        found.append((d, spec))
    return found


def static_checkov_sarif(ctx: Context) -> Path:
    return ctx.results_dir / "checkov.sarif"


def fixtures_checkov_sarif(ctx: Context) -> Path:
    return ctx.results_dir / "checkov-fixtures.sarif"


def fixture_checkov_dirs(fixtures: list[tuple[Path, dict[str, Any]]]) -> list[Path]:
    return [d for d, spec in fixtures if any(e["layer"] == "checkov" for e in spec["expect"])]


def fixture_findings(
    ctx: Context, report: Report, fixtures: list[tuple[Path, dict[str, Any]]]
) -> dict[str, dict[str, Any]]:
    """layer -> fixture dir name -> list of findings, or the reason the layer was skipped."""
    needed = {e["layer"] for _, spec in fixtures for e in spec["expect"]}
    out: dict[str, dict[str, Any]] = {layer: {} for layer in needed}

    def for_layer(layer: str) -> list[Path]:
        return [d for d, spec in fixtures if any(e["layer"] == layer for e in spec["expect"])]

    if "checkov" in needed:
        dirs = fixture_checkov_dirs(fixtures)
        findings = ctx.checkov(dirs, fixtures_checkov_sarif(ctx), use_config=False)
        for d in dirs:
            out["checkov"][d.name] = [f for f in findings if f"/{d.name}/" in f"/{f.resource}"]
    for d in for_layer("rego"):
        out["rego"][d.name] = ctx.policies.evaluate(policy_input(ctx, d, paths.rel(d)))
    for d in for_layer("fmt"):
        out["fmt"][d.name] = [Finding("fmt", "terraform_fmt", paths.rel(d), f) for f in ctx.terraform.fmt_check(d)]
    for d in for_layer("terraform-test"):
        outcome = ctx.terraform.test(d)
        if outcome.status in ("skipped", "error"):
            out["terraform-test"][d.name] = outcome.reason
        else:
            out["terraform-test"][d.name] = [
                Finding("terraform-test", r["run"], paths.rel(d), r["file"]) for r in outcome.failed_runs
            ]
    if "tflint" in needed:
        tflint = tflint_bin()
        linter = TFLint(tflint, ctx.root) if tflint else None
        for d in for_layer("tflint"):
            out["tflint"][d.name] = linter.lint(d, paths.rel(d)) if linter else "skipped: tflint not installed"
    return out


def run_fixtures(ctx: Context, report: Report) -> None:
    fixtures = load_fixtures(ctx.root)
    start = time.monotonic()
    try:
        by_layer = fixture_findings(ctx, report, fixtures)
    except ConfigError:
        raise
    except PyramidError as exc:
        report.add(Check("fixtures", "terraform/fixtures/broken", "error", reason=str(exc)))
        return
    for d, spec in fixtures:
        for e in spec["expect"]:
            got = by_layer[e["layer"]].get(d.name, [])
            if isinstance(got, str):
                report.fixtures.append(FixtureVerdict(d.name, e["layer"], e["rule"], "skipped", got))
                continue
            rules = sorted({f.rule for f in got})
            caught = e["rule"] in rules
            report.fixtures.append(
                FixtureVerdict(
                    d.name,
                    e["layer"],
                    e["rule"],
                    "caught" if caught else "missed",
                    "" if caught else f"layer reported {rules or 'nothing'}",
                )
            )
    report.add(fixtures_check(report.fixtures, time.monotonic() - start, len(fixtures)))


def fixtures_check(verdicts: list[FixtureVerdict], seconds: float, fixtures: int) -> Check:
    """The fixtures' check: failed on a miss; skipped when every expectation was; a skip is never a pass,
    so partly skipped expectations make it "passed with N skipped", with why."""
    skipped = [v for v in verdicts if v.status == "skipped"]
    why = "; ".join(sorted({f"{v.fixture} by {v.layer}: {v.reason}" for v in skipped}))
    status: Status
    if any(v.status == "missed" for v in verdicts):
        status, reason = "failed", ""
    elif skipped and len(skipped) == len(verdicts):
        status, reason = "skipped", why
    else:
        status, reason = "passed", f"passed with {len(skipped)} skipped: {why}" if skipped else ""
    return Check("fixtures", "terraform/fixtures/broken", status, round(seconds, 2), reason=reason,
                 details={"fixtures": fixtures}, skipped_parts=len(skipped))  # fmt: skip


# --- entry point ----------------------------------------------------------------------------------


def run_iac(
    results_dir: Path | str = "results",
    *,
    parts: Iterable[str] = ALL_PARTS,
    modules: Iterable[str] = paths.MODULES,
    static_layers: Iterable[str] = STATIC_LAYERS,
    run_dir: Path | None = None,
) -> Report:
    """Run the IaC pyramid and write `<results_dir>/iac.json`; `report.exit_code` is the verdict.

    Raises ConfigError (exit 3) for a missing terraform binary or broken configuration; tool
    failures become `error` checks (exit 2); findings and missed fixtures give exit 1.
    """
    parts = set(parts)
    unknown = parts - set(ALL_PARTS)
    if unknown:
        raise ConfigError(f"unknown IaC part(s) {sorted(unknown)}: expected {', '.join(ALL_PARTS)}")
    root = paths.repo_root()
    results = Path(results_dir)
    if not results.is_absolute():
        results = root / results
    try:
        results.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot use --results-dir {results}: {exc.strerror or exc}") from None
    tf = Terraform(run_dir=run_dir) if run_dir else Terraform()
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="checkov") as pool:
        ctx = Context(root=root, results_dir=results, terraform=tf, pool=pool)
        report = _run_parts(ctx, parts, list(modules), list(static_layers))
    report.finish().write(results / "iac.json")
    return report


def _run_parts(ctx: Context, parts: set[str], modules: list[str], static_layers: list[str]) -> Report:
    report = Report()
    root = ctx.root
    # the checkov runs need no plan: started first, they overlap the terraform plan below
    if "static" in parts and "checkov" in static_layers and modules:
        ctx.start_checkov([paths.module_dir(m) for m in modules], static_checkov_sarif(ctx), use_config=True)
    if "fixtures" in parts:
        ctx.start_checkov(fixture_checkov_dirs(load_fixtures(root)), fixtures_checkov_sarif(ctx), use_config=False)
    targets: dict[str, tuple[Path, dict[str, Any]]] = {}
    if "static" in parts and "rego" in static_layers and "aws" in modules:
        targets["aws"] = (paths.module_dir("aws"), AWS_PLAN_VARS)
    if "fixtures" in parts:
        for d, spec in load_fixtures(root):
            if any(e["layer"] == "rego" for e in spec["expect"]):
                targets[d.name] = (d, {})
    try:
        ctx.prepare_plans(targets)
    except ConfigError:
        raise
    except PyramidError as exc:
        report.add(Check("plan", "terraform", "error", reason=str(exc)))
    if "static" in parts:
        run_static(ctx, report, modules, static_layers)
    if "native" in parts:
        run_native(ctx, report, modules)
    if "fixtures" in parts:
        run_fixtures(ctx, report)
    return report
