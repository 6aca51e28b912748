"""The Python examples of docs/resilience.md run, so they cannot rot."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from servers import RunningServer

DOC = Path(__file__).resolve().parents[3] / "docs" / "resilience.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def test_doc_has_examples() -> None:
    assert len(BLOCKS) >= 10


@pytest.mark.parametrize("source", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_doc_example_runs(
    source: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    if "REDIS_URL" in source:
        server: RunningServer = request.getfixturevalue("redis_srv")
        monkeypatch.setenv("REDIS_URL", server.url)
    exec(compile(source, str(DOC), "exec"), {"__name__": "doc_example"})
