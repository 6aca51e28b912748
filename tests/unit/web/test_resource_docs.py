# Copyright 2026 stalwart contributors
"""The FastAPI and Flask examples of docs/web/health.md and docs/web/conditional.md run.

They import the public ``stalwart.web.fastapi`` / ``stalwart.web.flask`` modules, which
re-export the resource shells once the web kit's branches are merged; until then the blocks
are marked ```python fragment``` (tests/unit/test_docs_examples.py would fail on the import)
and run here with those imports pointed at the private shells. Once ``stalwart.web.fastapi``
and ``.flask`` re-export them, turn the fences into ```python and delete this file.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from unit.test_docs_examples import FRAGMENT, ROOT, fences

PAGES = [ROOT / "docs" / "web" / "health.md", ROOT / "docs" / "web" / "conditional.md"]
SHELLS = {
    "from stalwart.web.fastapi import": "from stalwart.web._fastapi_resources import",
    "from stalwart.web.flask import": "from stalwart.web._flask_resources import",
}
CASES = [
    pytest.param(page, line, body, id=f"{page.name}:{line}")
    for page in PAGES
    for info, body, line in fences(page)
    if info == FRAGMENT and any(public in body for public in SHELLS)
]


def test_every_page_has_examples_for_both_frameworks():
    for page in PAGES:
        bodies = [body for info, body, _ in fences(page) if info == FRAGMENT]
        assert any("from stalwart.web.fastapi import" in body for body in bodies), page
        assert any("from stalwart.web.flask import" in body for body in bodies), page


@pytest.mark.parametrize(("page", "line", "source"), CASES)
def test_example_runs(page: Path, line: int, source: str, tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    for public, private in SHELLS.items():
        source = source.replace(public, private)
    module = types.ModuleType(f"web_doc_example_{line}")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(source, f"{page}:{line}", "exec", dont_inherit=True), module.__dict__)
