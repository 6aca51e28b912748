# Copyright 2026 stalwart contributors
"""The ledger under faults, fuzzing and load (issue 15's report), in one run.

    uv run python benchmarks/faults.py [--seconds 10] [--only faults,fuzz,webhooks,soak]
                                       [--engines sqlite,redis,dynamodb,mongodb]
                                       [--fuzz-cases 1000] [--soak-seconds 180]

Sections, each on real servers started here (``tests/servers.py``), the ledger served by a
real ``ledger serve`` process:

- ``faults``: every store fault scenario per engine (killed, down, slow, blackholed, locked)
  and an API worker SIGKILLed under load, each about ``--seconds`` long
  (``services/ledger/tests/fault_scenarios.py``);
- ``fuzz``: schemathesis, ``--fuzz-cases`` generated requests (valid and invalid) spread over
  every operation of ``/openapi.json``, with a valid key, against ``ledger serve`` on Redis
  (``services/ledger/tests/fuzz_support.py``);
- ``webhooks``: the webhook receiver down for a while, then back, about ``--seconds`` long
  (``services/ledger/tests/webhook_scenarios.py``);
- ``soak``: ``ledger serve --workers 2`` on Redis under a steady mix of transfers (with
  idempotency keys, and replays), reads and lists for ``--soak-seconds``: throughput and p99
  of the first and last minute, and each worker's RSS growth
  (``services/ledger/tests/soak_support.py``).

Each section prints its own line as it finishes; the last line is one JSON object:
``{"faults": {"<scenario>": {...}}, "fuzz": {...}, "webhooks": {...}, "soak": {...}}`` (the
sections run, in that order). Targets: 0 lost, 0 duplicated, 0 server errors, 0 schema
violations; max request time under the deadline plus 1 s; last-minute rps >= 0.9x the first.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _paths import ROOT  # first: sys.path and AWS env (see benchmarks/_paths.py)

sys.path.insert(1, str(ROOT / "services" / "ledger" / "tests"))  # the scenario runners

# isort: split

from api_support import make_key

from servers import own_redis_server

SECTIONS = ("faults", "fuzz", "webhooks", "soak")
ENGINES = ("sqlite", "redis", "dynamodb", "mongodb")


def faults(args: argparse.Namespace) -> dict[str, Any]:
    from fault_scenarios import (  # noqa: PLC0415 - the section's module, only when it runs
        run_api_kill_scenario,
        run_store_fault_scenarios,
    )

    engines = [name for name in args.engines.split(",") if name]
    results: dict[str, Any] = run_store_fault_scenarios(engines, args.seconds)
    results["api_kill"] = run_api_kill_scenario(args.seconds)
    return results


def fuzz(args: argparse.Namespace) -> dict[str, Any]:
    from fuzz_support import run_fuzz  # noqa: PLC0415 - the section's module, only when it runs
    from soak_support import serving_ledger  # noqa: PLC0415

    failures: list[str] = []
    with own_redis_server() as redis, tempfile.TemporaryDirectory() as tmp:
        store_url = f"{redis.url}?prefix=fuzz"
        key = make_key(store_url, "fuzz")
        with serving_ledger(store_url, Path(tmp)) as served:
            counts = run_fuzz(served.base, key, args.fuzz_cases, failures=failures)
    for failure in failures[:20]:
        print("fuzz failure:", failure, file=sys.stderr)
    return dict(counts)


def webhooks(args: argparse.Namespace) -> dict[str, Any]:
    from webhook_scenarios import run_webhook_scenario  # noqa: PLC0415 - only when it runs

    with own_redis_server() as redis:
        return dict(run_webhook_scenario(f"{redis.url}?prefix=webhooks", args.seconds))


def soak(args: argparse.Namespace) -> dict[str, Any]:
    from soak_support import run_soak  # noqa: PLC0415 - the section's module, only when it runs

    return dict(run_soak(args.soak_seconds))


RUNNERS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "faults": faults,
    "fuzz": fuzz,
    "webhooks": webhooks,
    "soak": soak,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="each fault scenario")
    parser.add_argument("--only", default=",".join(SECTIONS), help="sections, comma-separated")
    parser.add_argument("--engines", default=",".join(ENGINES), help="the faults' stores")
    parser.add_argument("--fuzz-cases", type=int, default=1000)
    parser.add_argument("--soak-seconds", type=float, default=180.0)
    args = parser.parse_args()
    chosen = [name for name in args.only.split(",") if name]
    unknown = set(chosen) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    report: dict[str, Any] = {}
    for name in SECTIONS:
        if name in chosen:
            report[name] = RUNNERS[name](args)
            print(name, json.dumps(report[name]), flush=True)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
