"""`python -m llmpyramid.verdict`: the CI job's gate on a layer's document — a layer that did not run is not green."""

from __future__ import annotations

import json

import pytest

from llmpyramid import results
from llmpyramid.verdict import main


def _doc(tmp_path, statuses, reason="no unshare here", exit_code=0):
    tests = [
        results.test_entry(f"t{i}", s, 0.1, **({"reason": reason} if s == "skipped" else {}))
        for i, s in enumerate(statuses)
    ]
    path = tmp_path / "cloud_emulated.json"
    doc = results.build_document(tests, 1.0, suite="cloud_emulated", target=None, exit_code=exit_code)
    path.write_text(json.dumps(doc))
    return str(path)


def test_every_check_skipped_is_not_green(tmp_path, capsys):
    assert main([_doc(tmp_path, ["skipped", "skipped"])]) == 1
    assert capsys.readouterr().out == "cloud_emulated: skipped: no unshare here\n"


def test_partial_skips_pass_and_say_so(tmp_path, capsys):
    assert main([_doc(tmp_path, ["passed", "skipped"])]) == 0
    assert capsys.readouterr().out == "cloud_emulated: passed with 1 skipped: no unshare here\n"


def test_a_failed_layer_keeps_its_exit_code(tmp_path):
    assert main([_doc(tmp_path, ["passed", "failed"], exit_code=1)]) == 1


def test_a_missing_document_is_a_configuration_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        main([str(tmp_path / "nope.json")])
    assert done.value.code == 3 and "no readable results document" in capsys.readouterr().err
