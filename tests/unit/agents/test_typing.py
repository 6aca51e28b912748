# Copyright 2026 stalwart contributors
"""tests/typing/agents_api.py type-checks under mypy --strict (the tool decorator keeps the
signature pydantic-ai reads; the builders return the documented types)."""

from __future__ import annotations

from pathlib import Path

from mypy import api

ROOT = Path(__file__).resolve().parents[3]


def test_public_types_check() -> None:
    stdout, stderr, status = api.run(
        ["--strict", "--no-error-summary", str(ROOT / "tests" / "typing" / "agents_api.py")]
    )
    assert status == 0, stdout + stderr
