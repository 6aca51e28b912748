"""The examples in the stalwart.frames docstrings run, so they cannot rot."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "stalwart.frames",
    "stalwart.frames._convert",
    "stalwart.frames._pages",
    "stalwart.frames._read",
    "stalwart.frames._write",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0
