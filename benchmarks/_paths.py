# Copyright 2026 stalwart contributors
"""Imported first by the benchmark scripts that load the test servers: ``tests/`` (servers.py)
goes on ``sys.path``, and this folder moves from the front to the end -- ``benchmarks/http.py``
would otherwise shadow the standard library's ``http`` (httpx, urllib) -- still reachable for
``_load``. Also moto's dummy AWS credentials, unless real ones are set."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCHMARKS]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.append(str(BENCHMARKS))

os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
