"""The shared choices: one band parser for CLI and QGIS, one wording for bad bands."""

from __future__ import annotations

import pytest

from wsfusion_core.errors import InputError
from wsfusion_core.options import band_problem, check_choice, parse_bands


@pytest.mark.parametrize("text, bands", [("1,2,3", (1, 2, 3)), (" 4, 3 ,2 ", (4, 3, 2)),
                                         ("3;2;1", (3, 2, 1)), ("1 2 3", (1, 2, 3)),
                                         ("", None), (None, None), ("  ", None)])
def test_parse_bands(text, bands):
    assert parse_bands(text) == bands


@pytest.mark.parametrize("text", ["a,b", "1,x", "0,1,2", "-1", ",,"])
def test_parse_bands_refuses(text):
    with pytest.raises(ValueError, match="band"):
        parse_bands(text)


def test_band_problem_names_the_file_and_band(tmp_path):
    assert band_problem((1, 2, 3), 4, tmp_path / "a.tif", explicit=True) is None
    err = band_problem((1, 2, 5), 4, tmp_path / "a.tif", explicit=True)
    assert isinstance(err, InputError) and err.path == tmp_path / "a.tif"
    assert "band 5 does not exist" in str(err) and err.hint is None
    default = band_problem((1, 2, 3), 1, tmp_path / "gray.tif", explicit=False)
    assert default is not None and "1,1,1" in (default.hint or "")


def test_check_choice():
    check_choice("mean", ("mean", "median"), "method")
    with pytest.raises(ValueError, match="unknown method 'max'; choose one of mean, median"):
        check_choice("max", ("mean", "median"), "method")
