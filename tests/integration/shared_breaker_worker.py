"""The shared-breaker probe experiment: P processes x C callers against one half-open breaker.

Used by ``tests/integration/test_shared_breaker.py`` and ``benchmarks/resilience.py``.

As a script (``python shared_breaker_worker.py URL NAME PROBES CALLERS``) it is one process:
it prints ``ready``, then for every ``go`` line on stdin fires CALLERS threads at once through
a :class:`RedisCircuitBreaker` (key NAME). A caller that gets ``CircuitOpen`` increments the
Redis counter ``NAME:rejected``; an admitted call holds until the key ``NAME:release`` exists,
so admitted probes stay in flight until *every* caller has been answered, whatever the machine
load. Each round ends with one JSON line ``{"admitted": n, "outcomes": [...]}``.

The driver side is :class:`ProbeExperiment`: it starts the processes, opens the breaker with
its open period already over, says ``go``, waits until all non-probes were rejected, releases
the probes and sums the results.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import redis

from stalwart.resilience import CircuitOpen, RedisCircuitBreaker

WAIT_S = 60.0


def open_elapsed(client: redis.Redis, key: str) -> None:
    """Put the shared breaker in OPEN with its open period already over (a new generation)."""
    gen = int(client.hget(key, "gen") or 0) + 1
    client.hset(
        key,
        mapping={
            "state": "open",
            "gen": gen,
            "open_until": 0,
            "admitted": 0,
            "done": 0,
            "failures": 0,
            "slow": 0,
            "since": 0,
        },
    )


class ProbeExperiment:
    """``processes`` worker processes with ``callers`` threads each (a context manager)."""

    def __init__(
        self,
        url: str,
        client: redis.Redis,
        name: str,
        *,
        probes: int,
        processes: int,
        callers: int,
    ) -> None:
        self.client = client
        self.name = name
        self.probes = probes
        self.total = processes * callers
        args = [sys.executable, str(Path(__file__)), url, name, str(probes), str(callers)]
        self.procs = [
            subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            for _ in range(processes)
        ]

    def __enter__(self) -> Self:
        for proc in self.procs:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            if line != "ready":
                msg = f"a worker failed to start: {line!r}"
                raise RuntimeError(msg)
        return self

    def run_round(self) -> tuple[int, list[str]]:
        """(calls admitted in total, every caller's outcome) for one round."""
        client, name = self.client, self.name
        client.delete(f"{name}:rejected", f"{name}:release")
        open_elapsed(client, name)
        time.sleep(0.2)  # longer than the workers' sync_s: every cached view has expired
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        give_up = time.monotonic() + WAIT_S
        while int(client.get(f"{name}:rejected") or 0) < self.total - self.probes:
            if time.monotonic() > give_up:
                break  # release anyway: the assertions on the results will tell what happened
            time.sleep(0.01)
        client.set(f"{name}:release", 1)
        admitted, outcomes = 0, []
        for proc in self.procs:
            assert proc.stdout is not None
            result = json.loads(proc.stdout.readline())
            admitted += int(result["admitted"])
            outcomes += result["outcomes"]
        return admitted, outcomes

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.close()
        for proc in self.procs:
            proc.wait(timeout=WAIT_S)
            assert proc.stdout is not None
            proc.stdout.close()
        self.client.delete(self.name, f"{self.name}:rejected", f"{self.name}:release")

    @property
    def returncodes(self) -> list[int | None]:
        return [proc.returncode for proc in self.procs]


def _round(client: redis.Redis, breaker: RedisCircuitBreaker, name: str, callers: int) -> None:
    entered: list[int] = []
    outcomes: list[str] = []
    barrier = threading.Barrier(callers)

    @breaker
    def protected() -> None:
        entered.append(1)
        give_up = time.monotonic() + WAIT_S
        while not client.exists(f"{name}:release") and time.monotonic() < give_up:
            time.sleep(0.005)

    def caller() -> None:
        barrier.wait()
        try:
            protected()
            outcomes.append("ok")
        except CircuitOpen:
            outcomes.append("rejected")
            client.incr(f"{name}:rejected")
        except Exception as exc:  # reported to the driver, which fails the test
            outcomes.append(repr(exc))

    threads = [threading.Thread(target=caller) for _ in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sys.stdout.write(json.dumps({"admitted": len(entered), "outcomes": outcomes}) + "\n")
    sys.stdout.flush()


def main() -> None:
    url, name, probes, callers = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    client = redis.Redis.from_url(url, socket_timeout=5)
    breaker = RedisCircuitBreaker(
        name, client=client, prefix="", half_open_probes=probes, sync_s=0.05, open_s=60
    )
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    for line in sys.stdin:
        if line.strip() != "go":
            break
        _round(client, breaker, name, callers)
    client.close()


if __name__ == "__main__":
    main()
