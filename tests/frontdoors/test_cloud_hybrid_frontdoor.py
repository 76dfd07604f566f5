"""Bad input through `python -m llmpyramid.cloud` and `python -m llmpyramid.hybrid`: rejected before
SkyPilot, a router or a backend starts; one line, exit 3 (2 when well-formed but unreachable).

Cases call the `main(argv)` of each package's __main__ in-process (frontdoor_harness explains why that
is safe); the SUBPROCESS_SAMPLE of each table runs `python -m ...` for real, in the namespace."""

from __future__ import annotations

import pytest

from tests.support.frontdoor_harness import (
    BAD_URLS,
    CRED_HOST_URL,
    PYTHON,
    Marks,
    Sandbox,
    assert_rejected,
    mode_marks,
    subprocess_sample,
)

CLOUD = [PYTHON, "-m", "llmpyramid.cloud"]
HYBRID = [PYTHON, "-m", "llmpyramid.hybrid", "--output", "json"]

CLOUD_CASES = [
    ("no command", []),
    ("unknown command", ["bogus"]),
    ("smoke without --cloud", ["smoke"]),
    ("smoke unknown cloud", ["smoke", "--cloud", "mars"]),
    ("estimate unknown cloud", ["estimate", "--cloud", "mars;touch PWNED"]),
    *[
        (f"sweep --run-id {v[:12]}", ["sweep", "--cloud", "aws", "--run-id", v])
        for v in ["Upper", "-5", "a;touch PWNED", "x" * 64]
    ],
    ("unknown flag", ["estimate", "--cloud", "aws", "--bogus"]),
    ("netns without a command", ["netns"]),
]


CLOUD_SUBPROCESS_SAMPLE = subprocess_sample({"unknown flag", "netns without a command"}, [c[0] for c in CLOUD_CASES])


@pytest.mark.parametrize(
    "argv", [pytest.param(c[1], id=c[0], marks=mode_marks(c[0], CLOUD_SUBPROCESS_SAMPLE)) for c in CLOUD_CASES]
)
def test_cloud_bad_input_is_one_line(sandbox: Sandbox, argv: list[str]) -> None:
    assert_rejected(sandbox.run([*CLOUD, *argv]), 3)


# (id, argv, expected exit, marks)
HYBRID_CASES: list[tuple[str, list[str], int, Marks]] = [
    *[(f"--router-url {u}", ["--router-url", u], 3, ()) for u in BAD_URLS],
    ("--base-url malformed", ["--router-url", "http://127.0.0.1:1", "--base-url", "http://[::1"], 3, ()),
    ("--burst-url malformed", ["--router-url", "http://127.0.0.1:1", "--burst-url", "ftp://x"], 3, ()),
    ("--base-stop-cmd unbalanced quote", ["--router-url", "http://127.0.0.1:1", "--base-stop-cmd", "kill 'x"], 3, ()),
    ("--output xml", ["--output", "xml"], 3, ()),
    ("--router nginx", ["--router", "nginx"], 3, ()),
    ("unknown flag", ["--bogus"], 3, ()),
    ("router credentials unreachable", ["--router-url", CRED_HOST_URL], 2, ()),
    ("router unreachable", ["--router-url", "http://127.0.0.1:1"], 2, ()),
]


HYBRID_SUBPROCESS_SAMPLE = subprocess_sample(
    {"unknown flag", "router credentials unreachable"}, [c[0] for c in HYBRID_CASES]
)


@pytest.mark.parametrize(
    ("argv", "code"),
    [pytest.param(c[1], c[2], id=c[0], marks=mode_marks(c[0], HYBRID_SUBPROCESS_SAMPLE, c[3])) for c in HYBRID_CASES],
)
def test_hybrid_bad_input_is_one_line(sandbox: Sandbox, argv: list[str], code: int) -> None:
    assert_rejected(sandbox.run([*HYBRID, *argv]), code)
