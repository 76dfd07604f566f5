"""Proof that the checks bite: each deliberately broken fixture is rejected by the layer meant to
catch it, citing the rule named in its expected.json. A skipped layer is a skip, never a pass."""

from __future__ import annotations

import pytest

from llmpyramid.iac.paths import repo_root
from llmpyramid.iac.report import Report
from llmpyramid.iac.runner import load_fixtures

pytestmark = [pytest.mark.terraform]

EXPECTATIONS = [
    pytest.param(d.name, e["layer"], e["rule"], id=f"{d.name}-{e['layer']}-{e['rule']}")
    for d, spec in load_fixtures(repo_root())
    for e in spec["expect"]
]


@pytest.mark.parametrize(("fixture", "layer", "rule"), EXPECTATIONS)
def test_broken_fixture_rejected(static_report: Report, fixture: str, layer: str, rule: str) -> None:
    verdicts = [v for v in static_report.fixtures if (v.fixture, v.layer, v.rule) == (fixture, layer, rule)]
    assert len(verdicts) == 1, f"no verdict for {fixture} / {layer} / {rule}"
    verdict = verdicts[0]
    if verdict.status == "skipped":
        pytest.skip(verdict.reason)
    assert verdict.status == "caught", f"{layer} did not reject {fixture} with {rule}: {verdict.reason}"


def test_every_fixture_breaks_only_what_it_claims_for_rego(static_report: Report) -> None:
    """The shipped modules pass the same policies, so a fixture's catch is due to its breakage."""
    shipped = [c for c in static_report.checks if c.layer == "rego"]
    assert shipped and all(c.status == "passed" for c in shipped)
