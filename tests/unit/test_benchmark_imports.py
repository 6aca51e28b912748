"""Benchmark scripts start: their imports resolve when run as ``python benchmarks/<name>.py``
(that folder leads sys.path, and benchmarks/http.py shares its name with the standard
library's http package, which urllib and httpx import)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("script", ["agents.py", "frames.py", "idempotency.py", "storage.py"])
def test_benchmark_script_starts(script: str) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout
