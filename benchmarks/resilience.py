"""Side-by-side cost of retry and circuit breakers: stalwart against its anchors.

Run: ``uv run python benchmarks/resilience.py`` (add ``--quick`` for fewer repeats).

Every case is timed with a timeit-style loop (the loop count calibrated so one measurement
takes ~2 ms); the rounds are interleaved (every case once per round) so background noise
hits every case alike, and each case reports the median of its rounds in ns per call. Short
samples and many rounds make the median robust on a shared machine: a sample that was
preempted by another process is an outlier, not the norm.
The shared-breaker part starts a real redis-server (the tests' helper), runs 8 processes x 8
callers against a half-open shared breaker and counts Redis writes per steady-state success
(INFO commandstats). The last line is one JSON object.
"""

from __future__ import annotations

import asyncio
import json
import logging
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import backoff
import pybreaker
import redis
import stamina
import stamina.instrumentation
import tenacity
from purgatory import AsyncCircuitBreakerFactory, SyncCircuitBreakerFactory

from stalwart.resilience import CircuitBreaker, CountWindow, RedisCircuitBreaker, retry

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from integration.shared_breaker_worker import ProbeExperiment  # noqa: E402 - tests' helpers
from servers import redis_server  # noqa: E402

TARGET_S = 0.002
WRITE_COMMANDS = frozenset(
    {
        "hset",
        "hincrby",
        "hdel",
        "hsetnx",
        "hmset",
        "del",
        "unlink",
        "set",
        "setex",
        "incr",
        "incrby",
        "expire",
        "pexpire",
    }
)

type SyncCase = Callable[[], object]
type AsyncCase = Callable[[], Awaitable[object]]


# -- the cases ------------------------------------------------------------------------------------


def fails_twice() -> Callable[[], int]:
    """A call that fails twice, then succeeds; every third call succeeds, forever."""
    state = [0]

    def call() -> int:
        state[0] += 1
        if state[0] % 3:
            raise ValueError
        return 1

    return call


def bare() -> int:
    return 1


async def abare() -> int:
    return 1


def sync_cases() -> dict[str, SyncCase]:
    stamina.instrumentation.set_on_retry_hooks([])  # no structlog/prometheus output: fair
    logging.getLogger("backoff").disabled = True
    purgatory = SyncCircuitBreakerFactory()
    cases: dict[str, SyncCase] = {
        "bare_sync_ns": bare,
        "stalwart_retry_sync_ns": retry(on=ValueError)(bare),
        "stalwart_retry_3attempts_ns": retry(on=ValueError, attempts=3, base_s=0.0)(fails_twice()),
        "stalwart_breaker_sync_ns": CircuitBreaker("bench", window=CountWindow(100))(bare),
        "tenacity_retry_sync_ns": tenacity.retry(
            stop=tenacity.stop_after_attempt(3),
            retry=tenacity.retry_if_exception_type(ValueError),
        )(bare),
        "tenacity_retry_3attempts_ns": tenacity.retry(
            stop=tenacity.stop_after_attempt(3),
            wait=tenacity.wait_none(),
            retry=tenacity.retry_if_exception_type(ValueError),
        )(fails_twice()),
        "stamina_retry_sync_ns": stamina.retry(on=ValueError, attempts=3)(bare),
        "stamina_retry_3attempts_ns": stamina.retry(
            on=ValueError, attempts=3, wait_initial=0, wait_max=0, wait_jitter=0
        )(fails_twice()),
        "backoff_retry_sync_ns": backoff.on_exception(backoff.expo, ValueError, max_tries=3)(bare),
        "backoff_retry_3attempts_ns": backoff.on_exception(
            backoff.constant, ValueError, max_tries=3, interval=0, jitter=None
        )(fails_twice()),
        "pybreaker_sync_ns": pybreaker.CircuitBreaker(fail_max=5, reset_timeout=60)(bare),
        "purgatory_sync_ns": purgatory("bench")(bare),
    }
    for name, fn in cases.items():
        if fn() != 1:
            raise AssertionError(f"{name} returned a wrong result")
    return cases


def async_cases() -> dict[str, AsyncCase]:
    purgatory = AsyncCircuitBreakerFactory()
    return {
        "bare_async_ns": abare,
        "stalwart_retry_async_ns": retry(on=ValueError)(abare),
        "stalwart_breaker_async_ns": CircuitBreaker("bench-async")(abare),
        "tenacity_retry_async_ns": tenacity.retry(
            stop=tenacity.stop_after_attempt(3),
            retry=tenacity.retry_if_exception_type(ValueError),
        )(abare),
        "stamina_retry_async_ns": stamina.retry(on=ValueError, attempts=3)(abare),
        "backoff_retry_async_ns": backoff.on_exception(backoff.expo, ValueError, max_tries=3)(
            abare
        ),
        "purgatory_async_ns": purgatory("bench")(abare),
    }


# -- timing ---------------------------------------------------------------------------------------


def time_sync(fn: SyncCase, number: int) -> float:
    started = time.perf_counter_ns()
    for _ in range(number):
        fn()
    return (time.perf_counter_ns() - started) / number


async def time_async(fn: AsyncCase, number: int) -> float:
    started = time.perf_counter_ns()
    for _ in range(number):
        await fn()
    return (time.perf_counter_ns() - started) / number


def calibrate(measure: Callable[[int], float]) -> int:
    number = 10
    while True:
        per_call = measure(number)
        if per_call * number >= TARGET_S * 1e9 / 4 or number >= 10_000_000:
            return max(10, int(TARGET_S * 1e9 / max(per_call, 1.0)))
        number *= 4


def run_timings(rounds: int) -> dict[str, float]:
    sync = sync_cases()
    loop = asyncio.new_event_loop()
    try:
        asyncs = async_cases()
        numbers = {name: calibrate(lambda n, fn=fn: time_sync(fn, n)) for name, fn in sync.items()}
        numbers |= {
            name: calibrate(lambda n, fn=fn: loop.run_until_complete(time_async(fn, n)))
            for name, fn in asyncs.items()
        }
        samples: dict[str, list[float]] = {name: [] for name in numbers}
        for _ in range(rounds):
            for name, fn in sync.items():
                samples[name].append(time_sync(fn, numbers[name]))
            for name, afn in asyncs.items():
                samples[name].append(loop.run_until_complete(time_async(afn, numbers[name])))
    finally:
        loop.close()
    return {name: round(statistics.median(values), 1) for name, values in samples.items()}


# -- shared breaker ------------------------------------------------------------------------------


def redis_writes(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(
        int(v["calls"]) for k, v in stats.items() if k.removeprefix("cmdstat_") in WRITE_COMMANDS
    )


def shared_probes(url: str, client: redis.Redis, probes: int) -> int:
    """8 processes x 8 callers hit a shared breaker whose open period is over."""
    name = f"bench-{uuid.uuid4().hex[:8]}"
    with ProbeExperiment(url, client, name, probes=probes, processes=8, callers=8) as experiment:
        admitted, _ = experiment.run_round()
    return admitted


def shared_writes_per_success(client: redis.Redis) -> tuple[float, int]:
    breaker = RedisCircuitBreaker(
        f"bench-steady-{uuid.uuid4().hex[:8]}", client=client, prefix="", sync_s=0.1
    )
    ok = breaker(bare)
    for _ in range(200):
        ok()
    before = redis_writes(client)
    successes = 0
    started = time.monotonic()
    while time.monotonic() - started < 1.0:  # spans ten cache refreshes
        ok()
        successes += 1
    return (redis_writes(client) - before) / successes, successes


# -- main -----------------------------------------------------------------------------------------


def main() -> None:
    rounds = 11 if "--quick" in sys.argv else 41
    t = run_timings(rounds)
    probes = 3
    with redis_server() as server, redis.Redis.from_url(server.url, socket_timeout=5) as client:
        admitted = shared_probes(server.url, client, probes)
        writes, successes = shared_writes_per_success(client)
    ratios = {
        "retry_sync_vs_tenacity": t["tenacity_retry_sync_ns"] / t["stalwart_retry_sync_ns"],
        "retry_async_vs_tenacity": t["tenacity_retry_async_ns"] / t["stalwart_retry_async_ns"],
        "retry_3attempts_vs_tenacity": (
            t["tenacity_retry_3attempts_ns"] / t["stalwart_retry_3attempts_ns"]
        ),
        "breaker_sync_vs_purgatory": t["purgatory_sync_ns"] / t["stalwart_breaker_sync_ns"],
        "breaker_async_vs_purgatory": t["purgatory_async_ns"] / t["stalwart_breaker_async_ns"],
    }
    targets_met = (
        all(ratio >= 40 for name, ratio in ratios.items() if name.startswith("retry"))
        and all(ratio >= 3 for name, ratio in ratios.items() if name.startswith("breaker"))
        and admitted == probes
        and writes == 0
    )
    for name, value in sorted(t.items()):
        print(f"{name:40} {value:>12.1f} ns")
    for name, ratio in ratios.items():
        print(f"{name:40} {ratio:>12.1f} x")
    print(f"{'shared probes admitted / configured':40} {admitted:>8} / {probes}")
    print(f"{'shared Redis writes per success':40} {writes:>12} ({successes} successes)")
    results: dict[str, object] = {
        **t,
        "shared_probes_configured": probes,
        "shared_probes_admitted": admitted,
        "shared_redis_writes_per_success": writes,
        "shared_steady_successes_measured": successes,
        **{name: round(ratio, 1) for name, ratio in ratios.items()},
        "targets_met": targets_met,
    }
    print(json.dumps(results, sort_keys=True))


if __name__ == "__main__":
    main()
