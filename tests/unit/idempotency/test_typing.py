# Copyright 2026 stalwart contributors
"""tests/typing/idempotency_api.py type-checks under mypy --strict (the decorator keeps
signatures; layers return the documented types)."""

from __future__ import annotations

from pathlib import Path

from mypy import api

ROOT = Path(__file__).resolve().parents[3]


def test_public_types_check() -> None:
    stdout, stderr, status = api.run(
        ["--strict", "--no-error-summary", str(ROOT / "tests" / "typing" / "idempotency_api.py")]
    )
    assert status == 0, stdout + stderr
