# Copyright 2026 stalwart contributors
"""docs/idempotency.md's Python examples run, so they cannot rot."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "idempotency.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def test_docs_have_function_fastapi_and_flask_examples() -> None:
    assert len(BLOCKS) == 3
    assert "idempotent_route_class" in BLOCKS[1]
    assert "FlaskIdempotency" in BLOCKS[2]


@pytest.mark.parametrize("source", BLOCKS, ids=["functions", "fastapi", "flask"])
def test_docs_example_runs(source: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # A real module, as a reader's script would be: pydantic resolves annotations through it.
    module = types.ModuleType("docs_example")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(source, str(DOC), "exec"), module.__dict__)
