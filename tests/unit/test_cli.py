"""The front door: errors become one line and the documented exit code."""

from __future__ import annotations

import pytest

from llmpyramid.cli import guarded
from llmpyramid.errors import ConfigError, InfrastructureError, PyramidError


@pytest.mark.parametrize(("exc", "code"), [(ConfigError, 3), (InfrastructureError, 2), (PyramidError, 1)])
def test_errors_map_to_exit_codes_with_one_line(exc, code, capsys):
    with pytest.raises(SystemExit) as done, guarded():
        raise exc("something\n  went   wrong")
    assert done.value.code == code
    assert capsys.readouterr().err == "error: something went wrong\n"


def test_ctrl_c_is_exit_130(capsys):
    with pytest.raises(SystemExit) as done, guarded():
        raise KeyboardInterrupt
    assert done.value.code == 130
    assert "interrupted" in capsys.readouterr().err
