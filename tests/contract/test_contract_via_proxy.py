"""The contract verdict does not depend on what stands in front of the server.

The contract suite (tests/test_contract.py) runs twice, at once, against the same server — directly and
through a real pass-through HTTP proxy on loopback that replaces the `Server:` header, as proxies
and load balancers do — and must reach the same verdict, test by test. On the embedded llama.cpp
stack that verdict is a pass with its one known deviation reported as xfailed in both runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from llmpyramid import checks
from llmpyramid.client import Client
from llmpyramid.config import PROJECT_ROOT
from llmpyramid.target import Target
from tests.support.passthrough import PassThroughProxy

pytestmark = [pytest.mark.contract, pytest.mark.timeout(900)]

ERROR_TEST = "tests/test_contract.py::test_error_object_matches_openai_schema"


@dataclass
class Verdict:
    exit_code: int
    outcomes: dict[str, str]  # nodeid -> passed / failed / xfailed / ...
    reasons: dict[str, str]  # nodeid -> why it did not pass (failure or xfail reason)


def run_contract_suites(runs: dict[str, tuple[str, Target]], out_dir: Path) -> dict[str, Verdict]:
    """Run the contract suite once per (base URL, target), all at once (each is mostly waiting on the server)."""
    started = {}
    for name, (base_url, target) in runs.items():
        env = {k: v for k, v in os.environ.items() if k != "BASE_URL"}
        env.update(API_KEY=target.api_key or "", MODEL=target.model or "")
        report = out_dir / f"{name}.json"
        cmd = [
            sys.executable, "-m", "pytest", "tests/test_contract.py", "--base-url", base_url,
            "-p", "no:cacheprovider", "-q", "--json-report", f"--json-report-file={report}",
            "--json-report-omit", "keywords", "streams", "log", "collectors_passed",
        ]  # fmt: skip
        proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)  # fmt: skip
        started[name] = (proc, report)
    verdicts = {}
    try:
        for name, (proc, report) in started.items():
            out, _ = proc.communicate(timeout=420)
            assert report.exists(), f"the {name} contract run wrote no report (exit {proc.returncode}): {out[-2000:]}"
            tests = json.loads(report.read_text())["tests"]
            verdicts[name] = Verdict(
                proc.returncode,
                {t["nodeid"]: t["outcome"] for t in tests},
                {t["nodeid"]: str((t.get("call") or {}).get("longrepr", ""))[-600:]
                 for t in tests if t["outcome"] != "passed"},
            )  # fmt: skip
    finally:
        for proc, _ in started.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return verdicts


def test_contract_verdict_is_the_same_through_a_proxy(target, embedded_stack, tmp_path):
    with PassThroughProxy(target.base_url) as proxy:
        proxied_target = Target(proxy.url, target.api_key, target.model)
        runs = {"direct": (target.base_url, target), "proxy": (proxy.url, proxied_target)}
        verdicts = run_contract_suites(runs, tmp_path)
        direct, via_proxy = verdicts["direct"], verdicts["proxy"]
        server_direct = httpx.get(target.url("/health"), timeout=30).headers.get("server", "")
        server_via_proxy = httpx.get(proxied_target.url("/health"), timeout=30).headers.get("server", "")
        with Client(target) as c, Client(proxied_target) as p:
            identified = (checks.identify_server(c), checks.identify_server(p))
    assert proxy.requests > len(via_proxy.outcomes), "the second run did not go through the proxy"
    assert server_via_proxy != server_direct, "the proxy must hide the server's own Server header"
    assert via_proxy.outcomes == direct.outcomes, {"direct": direct.reasons, "via proxy": via_proxy.reasons}
    assert via_proxy.exit_code == direct.exit_code
    assert identified[0] == identified[1], "the server must be identified the same way through the proxy"
    if embedded_stack is not None:  # a healthy llama.cpp: pass, its known deviation xfailed with the reason
        assert server_direct.startswith("llama.cpp") and identified == ("llama.cpp", "llama.cpp")
        assert direct.exit_code == 0, direct.outcomes
        for verdict in (direct, via_proxy):
            assert verdict.outcomes[ERROR_TEST] == "xfailed"
            assert "known deviation error_code_int" in verdict.reasons[ERROR_TEST]
