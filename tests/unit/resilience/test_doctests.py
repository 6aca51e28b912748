"""The examples in the resilience docstrings run, so they cannot rot."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "stalwart.resilience._breaker",
    "stalwart.resilience._budget",
    "stalwart.resilience._bulkhead",
    "stalwart.resilience._deadline",
    "stalwart.resilience._fallback",
    "stalwart.resilience._pipeline",
    "stalwart.resilience._retry",
    "stalwart.resilience._shared",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    if not name.endswith("_shared"):
        assert result.attempted > 0
