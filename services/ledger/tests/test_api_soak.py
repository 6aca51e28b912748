"""A short soak of the real ledger: ``ledger serve --workers 2`` on Redis under a steady mix of
transfers (fresh idempotency keys and replays), reads and lists (``soak_support.run_soak``).
``benchmarks/faults.py`` runs the same for minutes and holds the issue's targets."""

from __future__ import annotations

import pytest
from soak_support import run_soak

SECONDS = 20.0
"""Two 10-s windows after a 5-s warm-up."""


@pytest.mark.slow(seconds=30)
def test_a_short_soak_has_no_errors_no_memory_growth_and_no_collapse() -> None:
    """No 5xx (nor any other non-2xx), no worker replaced, every worker's RSS growth under
    50 MiB (the issue's bound), and the last window not collapsing.

    The margins: on this shared 2-core machine the throughput of one 10-s window swings 2-4x
    with the other jobs' load (seen: 686 then 285 requests/s with nothing changed), so the
    wall-clock ratio only has to stay above 0.25 -- enough to catch a stall or a wedged worker,
    not a 10% drift. The CPU the workers spend per request moves much less with the other
    jobs' load (last/first seen between 0.87 and 1.41 in windows whose throughput differed up
    to 2x): the last window may cost at most 2x the first, which a request whose cost grows
    with the run (a list or cache scanned per request) trips long before the throughput bound.
    Both are collapse detectors; the 0.9x throughput target is the benchmark's
    (``benchmarks/faults.py --only soak``, minute windows). A leak of 5 MiB/s injected into
    the workers failed the RSS bound (100 MiB in 20 s)."""
    result = run_soak(SECONDS)
    assert result["windows"] == 2, result
    assert result["server_errors"] == result["other_errors"] == 0, result
    assert result["workers_replaced"] == 0, result
    assert result["rss_growth_mib"] < 50, result
    assert result["rps_last_minute"] >= 0.25 * result["rps_first_minute"], result
    assert result["cpu_ms_per_request_last"] <= 2 * result["cpu_ms_per_request_first"], result
