"""The examples in stalwart.http's docstrings run, so they cannot rot."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import stalwart.http

MODULES = sorted(
    ["stalwart.http"]
    + [info.name for info in pkgutil.iter_modules(stalwart.http.__path__, "stalwart.http.")]
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0, f"{name} has no docstring example"


def test_public_names() -> None:
    assert sorted(stalwart.http.__all__) == sorted(
        name for name in vars(stalwart.http) if not name.startswith("_") and name != "annotations"
    )
