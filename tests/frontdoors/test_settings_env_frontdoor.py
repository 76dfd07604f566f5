"""Bad environment variables for every `knob(...)` of every Settings class, each through the front
door that reads it: one line naming the variable, exit 3, never a traceback.

The table is derived from the settings classes themselves (their parser and bounds), so a knob
added later is swept too; a Settings class with no front door mapped here fails the sweep.

Cases call their front door in-process (frontdoor_harness explains why that is safe); the first case
of each Settings class (marked SUBPROCESS) runs its front door's real command line, in the namespace.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

import pytest

from llmpyramid import config
from llmpyramid.config import Settings
from tests.support.frontdoor_harness import PROJECT_ROOT, PYTHON, SUBPROCESS, Sandbox, assert_rejected, invoke

SETTINGS_MODULES = (
    "llmpyramid.config",
    "llmpyramid.emulators.manager",
    "llmpyramid.cloud.settings",
    "llmpyramid.hybrid.config",
    "llmpyramid.pipelines",
)
UNREACHABLE = "http://127.0.0.1:1"
IN_SANDBOX = "{sandbox}"  # replaced by the case's tmp dir
RESULTS = f"{IN_SANDBOX}/results.json"  # run_tests' default results file is in the shared work tree

# Settings class -> (argv of a front door that builds it and starts nothing once it is valid, extra env)
FRONT_DOORS: dict[str, tuple[list[str], dict[str, str]]] = {
    "StackSettings": (invoke("stack.status", "--json"), {}),
    "ModelSettings": (invoke("model.download"), {}),
    "Thresholds": (
        [PYTHON, str(PROJECT_ROOT / "scripts" / "run_tests.py"), "--suite", "smoke", "--results-file", RESULTS],
        {"BASE_URL": UNREACHABLE},
    ),
    "EmulatorSettings": (invoke("emulators.down"), {}),
    "CloudSettings": ([PYTHON, "-m", "llmpyramid.cloud", "estimate", "--cloud", "aws"], {}),
    "HybridSettings": ([PYTHON, "-m", "llmpyramid.hybrid", "--router-url", UNREACHABLE], {}),
    "PipelineSettings": (invoke("preprod", "--dry-run"), {}),
}
# Overridden by a flag of the front door above, so the variable itself is not read there.
OVERRIDDEN = {"CLOUD", "HYBRID_ROUTER_URL"}
HUGE = "99999999999999999999999999"


def _settings_classes() -> list[type[Settings]]:
    for name in SETTINGS_MODULES:
        importlib.import_module(name)
    found: list[type[Settings]] = []
    todo = list(Settings.__subclasses__())
    while todo:
        cls = todo.pop()
        # only these modules' classes: in-process cases import more of the package into this process
        if cls.__module__ in SETTINGS_MODULES:
            found.append(cls)
        todo.extend(cls.__subclasses__())
    return sorted(found, key=lambda c: c.__name__)


def _bad_values(parse: Any, bounds: dict[str, Any]) -> list[str]:
    """Values the knob's own parser and bounds must refuse."""
    minimum, maximum = bounds.get("minimum", 0), bounds.get("maximum")
    below = ["-5"] if minimum is not None and minimum > -5 else []
    above = [HUGE] if maximum is not None else []
    if parse is config.parse_int:
        return ["abc", "1e999", *below, *above]
    if parse is config.parse_float:
        return ["nan", "inf", *below, *above]
    if parse is config.parse_duration:
        return ["nan", "-5", *above]
    if parse is config.parse_bool:
        return ["maybe"]
    if parse is config.parse_url:
        return ["http://[::1", "ftp://x", "http://h:99999"]
    if parse is config.parse_str and bounds.get("choices"):
        return ["bogus"]
    if getattr(parse, "__name__", "") == "parse_scenarios":
        return ["z", ","]
    if getattr(parse, "__name__", "") == "parse_command":
        return ["kill 'x"]
    return []  # free text or a path: any value is well-formed here


def _cases() -> list[Any]:
    cases = []
    for cls in _settings_classes():
        sampled = False  # each class's first case runs as a subprocess (the sample)
        for f in dataclasses.fields(cls):  # type: ignore[arg-type,unused-ignore]
            env = f.metadata.get("env")
            if not env or env in OVERRIDDEN:
                continue
            for value in _bad_values(f.metadata.get("parse"), f.metadata.get("bounds", {})):
                marks = () if sampled else SUBPROCESS
                sampled = True
                cases.append(pytest.param(cls.__name__, env, value, id=f"{env}={value}", marks=marks))
    return cases


def test_every_settings_class_has_a_front_door() -> None:
    assert {c.__name__ for c in _settings_classes()} <= set(FRONT_DOORS)


@pytest.mark.parametrize(("settings", "env", "value"), _cases())
def test_bad_variable_is_one_line_naming_it(sandbox: Sandbox, settings: str, env: str, value: str) -> None:
    argv, extra = FRONT_DOORS[settings]
    out = sandbox.run([a.replace(IN_SANDBOX, str(sandbox.root)) for a in argv], {**extra, env: value})
    assert_rejected(out, 3)
    assert env in out.stderr_lines[-1], out.describe()
