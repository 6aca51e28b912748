"""A short soak of the real ledger: ``ledger serve --workers 2`` on Redis under a steady mix of
transfers (fresh idempotency keys and replays), reads and lists (``soak_support.run_soak``).
``benchmarks/faults.py`` runs the same for minutes and holds the issue's targets."""

from __future__ import annotations

import pytest
from soak_support import run_soak

SECONDS = 20.0
"""Two 10-s windows after a 5-s warm-up."""


@pytest.mark.slow
def test_a_short_soak_has_no_errors_no_memory_growth_and_no_collapse() -> None:
    """No 5xx (nor any other non-2xx), no worker replaced, every worker's RSS growth under
    50 MiB (the issue's bound), and the last window not collapsing.

    The margins: on this shared 2-core machine the throughput of one 10-s window swings 2-4x
    with the other jobs' load (seen: 686 then 285 requests/s with nothing changed), so the
    wall-clock ratio only has to stay above 0.25 -- enough to catch a stall, a wedged worker or
    a request cost that grows with the data, not a 10% drift. The drift is caught by the CPU
    the workers spend per request, which other jobs' load barely moves (seen: 2.84 and 2.48 ms
    in windows whose throughput differed 30%): the last window may cost at most 1.5x the first.
    A leak that makes each request slower (a list or cache scanned per request) shows there
    first. The 0.9x throughput target is the benchmark's (``benchmarks/faults.py --only
    soak``), over minutes."""
    result = run_soak(SECONDS)
    assert result["windows"] == 2, result
    assert result["server_errors"] == result["other_errors"] == 0, result
    assert result["workers_replaced"] == 0, result
    assert result["rss_growth_mib"] < 50, result
    assert result["rps_last_minute"] >= 0.25 * result["rps_first_minute"], result
    assert result["cpu_ms_per_request_last"] <= 1.5 * result["cpu_ms_per_request_first"], result
