"""tests/typing/http_api.py type-checks under mypy --strict (the builders return httpx's own
client types; the transports are httpx transports)."""

from __future__ import annotations

from pathlib import Path

from mypy import api

ROOT = Path(__file__).resolve().parents[3]


def test_public_types_check() -> None:
    stdout, stderr, status = api.run(
        ["--strict", "--no-error-summary", str(ROOT / "tests" / "typing" / "http_api.py")]
    )
    assert status == 0, stdout + stderr
