"""Bad input through `scripts/wait_healthy.sh URL [TIMEOUT_SECONDS]`: exit 3 for malformed
arguments, 2 for a well-formed URL where nothing answers, the last stderr line one `error:` line."""

from __future__ import annotations

import pytest
from frontdoor_harness import BAD_NUMBERS, BAD_URLS, CRED_HOST_URL, PROJECT_ROOT, Marks, Sandbox, assert_rejected, bug

WAIT = [str(PROJECT_ROOT / "scripts" / "wait_healthy.sh")]
USAGE_LAST_BUG = bug("wait_healthy.sh prints the usage line after the error: two lines, the last not `error:`")
URL_CHECK_BUG = bug("wait_healthy.sh accepts a malformed URL (regex ^https?://[^/ ]+), waits, exits 2 not 3")
HUGE_BUG = bug("wait_healthy.sh: a huge TIMEOUT_SECONDS leaks bash's `integer expression expected`, then usage")
SECRET_BUG = bug("wait_healthy.sh echoes user:password@ of the URL in its messages")
# Malformed URLs its regex lets through (they have http(s):// and a non-empty host part).
REGEX_PASSES = {"http://[::1", "http://h:99999", "http://h:-1", "http://h:abc", "http://exa mple.com"}
REGEX_PASSES |= {u for u in BAD_URLS if "@" in u}

# (id, argv, expected exit, marks)
CASES: list[tuple[str, list[str], int, Marks]] = [
    *[(f"url {u}", [u, "1"], 3, URL_CHECK_BUG if u in REGEX_PASSES else USAGE_LAST_BUG) for u in BAD_URLS],
    *[(f"timeout {n}", ["http://127.0.0.1:1", n], 3, USAGE_LAST_BUG) for n in [*BAD_NUMBERS[:-1], "0"]],
    ("timeout huge", ["http://127.0.0.1:1", BAD_NUMBERS[-1]], 3, HUGE_BUG),
    ("no arguments", [], 3, USAGE_LAST_BUG),
    ("three arguments", ["http://127.0.0.1:1", "1", "x"], 3, USAGE_LAST_BUG),
    ("url with shell metacharacters", ["http://127.0.0.1:1/;touch PWNED;$(touch PWNED)", "1"], 2, ()),
    ("credentials unreachable", [CRED_HOST_URL, "1"], 2, SECRET_BUG),
    ("unreachable", ["http://127.0.0.1:1", "1"], 2, ()),
]


@pytest.mark.parametrize(("argv", "code"), [pytest.param(c[1], c[2], id=c[0], marks=c[3]) for c in CASES])
def test_bad_input_is_one_line(sandbox: Sandbox, argv: list[str], code: int) -> None:
    out = sandbox.run([*WAIT, *(a.replace("PWNED", str(sandbox.pwned)) for a in argv)])
    assert_rejected(out, code)
