"""One process of the shared-breaker probe experiment (used by the tests and the benchmark).

Usage: ``python shared_breaker_worker.py URL NAME PROBES CALLERS HOLD_S``. Prints ``ready``,
then for every ``go`` line on stdin fires CALLERS threads at once through a RedisCircuitBreaker
(key NAME, no prefix) whose protected call holds for HOLD_S seconds, and prints one JSON line:
``{"admitted": <calls that ran>, "outcomes": [...]}``.
"""

from __future__ import annotations

import json
import sys
import threading
import time

import redis

from stalwart.resilience import CircuitOpen, RedisCircuitBreaker


def main() -> None:
    url, name = sys.argv[1], sys.argv[2]
    probes, callers, hold_s = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
    client = redis.Redis.from_url(url, socket_timeout=5)
    breaker = RedisCircuitBreaker(
        name, client=client, prefix="", half_open_probes=probes, sync_s=0.05, open_s=60
    )
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    for line in sys.stdin:
        if line.strip() != "go":
            break
        entered: list[int] = []
        outcomes: list[str] = []
        barrier = threading.Barrier(callers)

        @breaker
        def protected(entered: list[int] = entered) -> None:
            entered.append(1)
            time.sleep(hold_s)

        def caller(
            protected: object = protected,
            outcomes: list[str] = outcomes,
            barrier: threading.Barrier = barrier,
        ) -> None:
            barrier.wait()
            try:
                protected()  # type: ignore[operator]
                outcomes.append("ok")
            except CircuitOpen:
                outcomes.append("rejected")
            except Exception as exc:
                outcomes.append(repr(exc))

        threads = [threading.Thread(target=caller) for _ in range(callers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        sys.stdout.write(json.dumps({"admitted": len(entered), "outcomes": outcomes}) + "\n")
        sys.stdout.flush()
    client.close()


if __name__ == "__main__":
    main()
