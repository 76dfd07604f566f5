"""Known deviations in the contract suite: identified from the body (not the Server header),
declared with CONTRACT_KNOWN_DEVIATIONS, reported as xfailed with the reason, never masking more."""

from __future__ import annotations

import pytest

from llmpyramid import checks
from llmpyramid.client import Client
from llmpyramid.errors import ConfigError
from tests.support.fake_openai import FakeOpenAI

DECLARED = checks.ServerProfile(declared=frozenset({"error_code_int"}))


def _profile(*faults: str, declared: frozenset[str] = frozenset()) -> checks.ServerProfile:
    with FakeOpenAI(*faults) as fake, Client(fake.target, timeout=10) as c:
        return checks.server_profile(c, declared)


def _error_probe(profile: checks.ServerProfile, *faults: str) -> None:
    with FakeOpenAI(*faults) as fake, Client(fake.target, timeout=10) as c:
        checks.probe_contract_error(c, profile)


def test_llamacpp_is_identified_by_its_props_body() -> None:
    assert _profile("llamacpp").implementation == "llama.cpp"


def test_a_server_header_alone_identifies_nothing() -> None:
    """Proxies replace the header (and anyone can send it): only what passes through counts."""
    assert _profile("server_header").implementation is None


def test_healthy_server_meets_the_contract_without_deviations() -> None:
    _error_probe(checks.ServerProfile())


def test_llamacpp_error_code_is_a_known_deviation() -> None:
    with pytest.raises(checks.KnownDeviation, match=r"known deviation error_code_int: .*identified by GET /props"):
        _error_probe(_profile("llamacpp"), "llamacpp")


def test_declared_deviation_is_known() -> None:
    with pytest.raises(checks.KnownDeviation, match=r"known deviation error_code_int: .*CONTRACT_KNOWN_DEVIATIONS"):
        _error_probe(DECLARED, "error_code_int")


def test_undeclared_deviation_fails() -> None:
    with pytest.raises(checks.CheckFailed, match="violates OpenAI error_response schema at error/code"):
        _error_probe(checks.ServerProfile(), "error_code_int")


def test_declared_deviation_that_the_server_lacks_fails() -> None:
    with pytest.raises(checks.CheckFailed, match=r"deviation error_code_int .* was expected but error.code is None"):
        _error_probe(DECLARED)


@pytest.mark.parametrize("fault", ["error_no_object", "error_plain_text", "invalid_200", "error_param_int"])
def test_a_declared_deviation_never_masks_another_break(fault: str) -> None:
    with pytest.raises(checks.CheckFailed):
        _error_probe(DECLARED, "error_code_int", fault)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(None, set()), ("", set()), ("error_code_int", {"error_code_int"}), (" error_code_int, ,", {"error_code_int"})],
)
def test_parse_deviations(raw: str | None, expected: set[str]) -> None:
    assert checks.parse_deviations(checks.DEVIATIONS_ENV, raw) == expected


def test_unknown_deviation_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match=r"KNOWN_DEVIATIONS: unknown deviation.*bogus.*known: error_code_int"):
        checks.parse_deviations(checks.DEVIATIONS_ENV, "error_code_int,bogus")
