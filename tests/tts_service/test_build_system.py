"""The build requirements can build this pyproject on a fresh machine."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_setuptools_is_new_enough_for_the_license_expression() -> None:
    with PYPROJECT.open("rb") as file:
        project = tomllib.load(file)
    # A string `license` (PEP 639 SPDX expression) is an error before setuptools 77, so a
    # fresh build environment resolving an older setuptools fails to build saybot.
    assert isinstance(project["project"]["license"], str)
    (setuptools,) = (
        Requirement(r)
        for r in project["build-system"]["requires"]
        if Requirement(r).name == "setuptools"
    )
    for too_old in ("69.0", "75.8.0", "76.1.0"):
        assert not setuptools.specifier.contains(too_old), f"{setuptools} allows {too_old}"
    assert setuptools.specifier.contains("77.0.3")
