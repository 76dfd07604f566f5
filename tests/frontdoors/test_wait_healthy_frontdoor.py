"""Bad input through `scripts/wait_healthy.sh URL [TIMEOUT_SECONDS]`: exit 3 for malformed
arguments, 2 for a well-formed URL where nothing answers, the last stderr line one `error:` line.

Every case here is a subprocess in the namespace (SUBPROCESS on the module): a shell script has no
function to call in-process."""

from __future__ import annotations

import pytest

from tests.support.frontdoor_harness import (
    BAD_NUMBERS,
    BAD_URLS,
    CRED_HOST_URL,
    PROJECT_ROOT,
    SUBPROCESS,
    Marks,
    Sandbox,
    assert_rejected,
)

pytestmark = SUBPROCESS

WAIT = [str(PROJECT_ROOT / "scripts" / "wait_healthy.sh")]

# (id, argv, expected exit, marks)
CASES: list[tuple[str, list[str], int, Marks]] = [
    *[(f"url {u}", [u, "1"], 3, ()) for u in BAD_URLS],
    *[(f"timeout {n}", ["http://127.0.0.1:1", n], 3, ()) for n in [*BAD_NUMBERS[:-1], "0"]],
    ("timeout huge", ["http://127.0.0.1:1", BAD_NUMBERS[-1]], 3, ()),
    ("no arguments", [], 3, ()),
    ("three arguments", ["http://127.0.0.1:1", "1", "x"], 3, ()),
    # whitespace makes it malformed (the project's URL rule), so 3; either way nothing is executed
    ("url with shell metacharacters", ["http://127.0.0.1:1/;touch PWNED;$(touch PWNED)", "1"], 3, ()),
    ("credentials unreachable", [CRED_HOST_URL, "1"], 2, ()),
    ("unreachable", ["http://127.0.0.1:1", "1"], 2, ()),
]


@pytest.mark.parametrize(("argv", "code"), [pytest.param(c[1], c[2], id=c[0], marks=c[3]) for c in CASES])
def test_bad_input_is_one_line(sandbox: Sandbox, argv: list[str], code: int) -> None:
    out = sandbox.run([*WAIT, *(a.replace("PWNED", str(sandbox.pwned)) for a in argv)])
    assert_rejected(out, code)
