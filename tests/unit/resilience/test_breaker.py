"""Circuit breaker: windows, thresholds, half-open probes, concurrency."""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
import time
import types
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis

from servers import RunningServer
from stalwart.resilience import (
    BreakerConfig,
    BreakerRegistry,
    BreakerTransition,
    CircuitBreaker,
    CircuitOpen,
    CircuitState,
    CountWindow,
    RedisCircuitBreaker,
    TimeWindow,
    add_breaker_listener,
)
from stalwart.resilience import _breaker as _breaker_module
from stalwart.resilience import _shared as _shared_module
from stalwart.resilience._window import SLOW, UNUSED, CountRing


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fail() -> None:
    raise ConnectionError("down")


def ok() -> str:
    return "ok"


def run(breaker: CircuitBreaker, fn: Callable[[], object]) -> str:
    try:
        breaker.call(fn)
    except CircuitOpen:
        return "rejected"
    except Exception:
        return "failed"
    return "ok"


def test_stays_closed_before_min_calls() -> None:
    breaker = CircuitBreaker("t", window=CountWindow(10), min_calls=5)
    for _ in range(4):
        assert run(breaker, fail) == "failed"
    assert breaker.state is CircuitState.CLOSED
    assert run(breaker, fail) == "failed"
    assert breaker.state is CircuitState.OPEN


def test_trips_on_failure_rate_over_the_sliding_window() -> None:
    breaker = CircuitBreaker("t", window=CountWindow(10), min_calls=10, failure_rate=0.5)
    for _ in range(6):
        run(breaker, ok)
    for _ in range(4):
        run(breaker, fail)
    assert breaker.state is CircuitState.CLOSED  # 4 / 10
    for _ in range(5):
        run(breaker, ok)  # successes push old successes out; still 4 failures in the window
    assert breaker.state is CircuitState.CLOSED
    run(breaker, fail)  # 5 / 10
    assert breaker.state is CircuitState.OPEN


def test_a_success_that_completes_min_calls_can_trip() -> None:
    breaker = CircuitBreaker("t", window=CountWindow(4), min_calls=4, failure_rate=0.5)
    run(breaker, fail)
    run(breaker, fail)
    run(breaker, ok)
    assert breaker.state is CircuitState.CLOSED
    run(breaker, ok)  # 2 failures out of 4 calls = 50%
    assert breaker.state is CircuitState.OPEN


def test_old_failures_leave_the_count_window() -> None:
    breaker = CircuitBreaker("t", window=CountWindow(5), min_calls=5, failure_rate=0.6)
    for _ in range(2):
        run(breaker, fail)
    for _ in range(20):
        run(breaker, ok)
    assert breaker.metrics()["failures"] == 0
    for _ in range(2):
        run(breaker, fail)
    assert breaker.state is CircuitState.CLOSED


def test_slow_calls_trip() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(
        "t",
        window=CountWindow(4),
        min_calls=4,
        slow_call_s=1.0,
        slow_call_rate=0.5,
        clock=clock,
    )

    def slow() -> str:
        clock.now += 2.0
        return "slow but fine"

    run(breaker, ok)
    run(breaker, ok)
    run(breaker, slow)
    assert breaker.state is CircuitState.CLOSED
    run(breaker, slow)
    assert breaker.state is CircuitState.OPEN


def test_slow_calls_trip_with_real_time() -> None:
    breaker = CircuitBreaker(
        "t", window=CountWindow(3), min_calls=3, slow_call_s=0.02, slow_call_rate=1.0
    )
    for _ in range(3):
        run(breaker, lambda: time.sleep(0.03))
    assert breaker.state is CircuitState.OPEN


def test_time_window_rates() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("t", window=TimeWindow(10), min_calls=4, failure_rate=0.5, clock=clock)
    for _ in range(3):
        run(breaker, fail)
    clock.now += 11
    for _ in range(3):
        run(breaker, ok)
    run(breaker, fail)
    assert breaker.state is CircuitState.CLOSED  # 1 / 4
    clock.now += 3
    run(breaker, ok)
    run(breaker, fail)
    assert breaker.metrics()["failure_rate"] == pytest.approx(2 / 6)
    assert breaker.state is CircuitState.CLOSED
    run(breaker, fail)
    run(breaker, fail)  # 4 / 8
    assert breaker.state is CircuitState.OPEN


def test_open_rejects_fast_with_time_until_retry_then_probes() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("t", min_calls=1, open_s=30.0, clock=clock)
    run(breaker, fail)
    clock.now += 10
    with pytest.raises(CircuitOpen) as info:
        breaker.call(ok)
    assert info.value.retry_after_s == pytest.approx(20.0)
    clock.now += 20
    assert breaker.call(ok) == "ok"  # the single probe succeeds
    assert breaker.state is CircuitState.CLOSED


def test_failed_probe_reopens() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("t", min_calls=1, open_s=5.0, half_open_probes=2, clock=clock)
    run(breaker, fail)
    clock.now += 5
    assert run(breaker, fail) == "failed"
    assert breaker.state is CircuitState.OPEN


def test_probes_must_all_pass_at_the_failure_rate() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(
        "t", min_calls=1, open_s=5.0, half_open_probes=4, failure_rate=0.5, clock=clock
    )
    run(breaker, fail)
    clock.now += 5
    assert run(breaker, ok) == "ok"
    assert run(breaker, fail) == "failed"
    assert breaker.state is CircuitState.HALF_OPEN  # 1 failure of 4 probes: not yet decided
    assert run(breaker, ok) == "ok"
    assert run(breaker, ok) == "ok"
    assert breaker.state is CircuitState.CLOSED


def test_ignored_and_uncounted_errors() -> None:
    breaker = CircuitBreaker("t", min_calls=1, ignore=KeyError, failure_on=(ConnectionError,))

    def key_error() -> None:
        raise KeyError

    def value_error() -> None:
        raise ValueError

    run(breaker, key_error)
    run(breaker, value_error)
    assert breaker.state is CircuitState.CLOSED
    run(breaker, fail)
    assert breaker.state is CircuitState.OPEN


async def test_cancellation_never_counts_and_frees_the_probe() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("t", min_calls=1, open_s=1.0, clock=clock)
    gate = asyncio.Event()

    @breaker
    async def call(block: bool) -> str:
        if block:
            await gate.wait()
        return "ok"

    task = asyncio.create_task(call(True))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.metrics()["calls"] == 0

    breaker.trip()
    clock.now += 1.0
    probe = asyncio.create_task(call(True))
    await asyncio.sleep(0)
    with pytest.raises(CircuitOpen):
        await call(False)  # the only permit is taken
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert breaker.state is CircuitState.HALF_OPEN
    assert await call(False) == "ok"  # the cancelled probe gave its permit back
    assert breaker.state is CircuitState.CLOSED


def test_outcomes_from_an_older_generation_are_ignored() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("t", min_calls=1, open_s=1.0, clock=clock)
    started = threading.Event()
    release = threading.Event()

    def slow_ok() -> str:
        started.set()
        release.wait(5)
        return "ok"

    worker = threading.Thread(target=run, args=(breaker, slow_ok))
    worker.start()
    started.wait(5)
    run(breaker, fail)  # trips while slow_ok (admitted while closed) is still running
    clock.now += 1.0
    assert breaker.state is CircuitState.OPEN
    release.set()
    worker.join()
    # The old call's success must not have been taken as the half-open probe's verdict.
    assert breaker.state is CircuitState.OPEN


def test_listeners_local_and_global() -> None:
    clock = FakeClock()
    seen: list[BreakerTransition] = []
    seen_globally: list[BreakerTransition] = []
    remove = add_breaker_listener(seen_globally.append)
    try:
        breaker = CircuitBreaker(
            "db", min_calls=1, open_s=1.0, listeners=(seen.append,), clock=clock
        )
        run(breaker, fail)
        clock.now += 1
        run(breaker, ok)
    finally:
        remove()
    assert [(t.from_state, t.to_state) for t in seen] == [
        (CircuitState.CLOSED, CircuitState.OPEN),
        (CircuitState.OPEN, CircuitState.HALF_OPEN),
        (CircuitState.HALF_OPEN, CircuitState.CLOSED),
    ]
    assert seen == seen_globally
    assert seen[0].name == "db"
    assert seen[0].at == 1000.0


def test_registry_creates_once_per_name() -> None:
    registry = BreakerRegistry(lambda name: CircuitBreaker(name, open_s=3))
    a = registry.get("a.example")
    assert registry.get("a.example") is a
    assert a.config.open_s == 3
    registry.get("b.example")
    assert registry.states() == {"a.example": "closed", "b.example": "closed"}
    assert {b.name for b in registry} == {"a.example", "b.example"}


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="min_calls"):
        BreakerConfig(window=CountWindow(5), min_calls=6)
    with pytest.raises(ValueError, match="rates"):
        BreakerConfig(failure_rate=0)
    with pytest.raises(TypeError):
        CircuitBreaker("x", BreakerConfig(), min_calls=3)


def test_lock_is_not_held_across_the_protected_call() -> None:
    """4 calls must be inside the protected function at the same time (pybreaker issue #55)."""
    breaker = CircuitBreaker("t", window=CountWindow(4), min_calls=4)
    inside = threading.Barrier(4)
    outcomes: list[str] = []

    @breaker
    def meet() -> None:
        inside.wait(timeout=10)  # breaks (raises) unless all 4 calls are in here together

    def caller() -> None:
        outcomes.append(run(breaker, meet))

    threads = [threading.Thread(target=caller) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes == ["ok"] * 4


def _half_open_breaker(probes: int) -> tuple[CircuitBreaker, FakeClock]:
    clock = FakeClock()
    breaker = CircuitBreaker("t", min_calls=1, open_s=1.0, half_open_probes=probes, clock=clock)
    breaker.trip()
    clock.now += 1.0
    return breaker, clock


def _threads_round(probes: int) -> None:
    breaker, _ = _half_open_breaker(probes)
    admitted = []
    barrier = threading.Barrier(64)
    hold = threading.Event()
    outcomes: list[str] = []

    def probe() -> None:
        admitted.append(1)
        hold.wait(5)

    def caller() -> None:
        barrier.wait()
        outcomes.append(run(breaker, probe))

    threads = [threading.Thread(target=caller) for _ in range(64)]
    for t in threads:
        t.start()
    give_up = time.monotonic() + 5
    while outcomes.count("rejected") < 64 - probes and time.monotonic() < give_up:
        time.sleep(0.001)
    hold.set()
    for t in threads:
        t.join()
    assert len(admitted) == probes
    assert outcomes.count("ok") == probes
    assert outcomes.count("rejected") == 64 - probes
    assert breaker.state is CircuitState.CLOSED


@pytest.mark.parametrize("probes", [1, 3, 10])
def test_half_open_admits_exactly_n_under_64_threads(probes: int) -> None:
    for _ in range(20):
        _threads_round(probes)


async def _tasks_round(probes: int) -> None:
    breaker, _ = _half_open_breaker(probes)
    admitted = []
    hold = asyncio.Event()

    @breaker
    async def probe() -> None:
        admitted.append(1)
        await hold.wait()

    async def caller() -> str:
        try:
            await probe()
        except CircuitOpen:
            return "rejected"
        return "ok"

    tasks = [asyncio.create_task(caller()) for _ in range(64)]
    await asyncio.sleep(0.01)
    assert len(admitted) == probes
    hold.set()
    outcomes = await asyncio.gather(*tasks)
    assert outcomes.count("ok") == probes
    assert outcomes.count("rejected") == 64 - probes
    assert breaker.state is CircuitState.CLOSED


@pytest.mark.parametrize("probes", [1, 3, 10])
async def test_half_open_admits_exactly_n_under_64_tasks(probes: int) -> None:
    for _ in range(20):
        await _tasks_round(probes)


def _check_ring_invariants(breaker: CircuitBreaker) -> None:
    ring = breaker._ring
    assert isinstance(ring, CountRing)
    assert ring.failures == sum(v & 1 for v in ring.buf)
    assert ring.slow == sum((v & SLOW) >> 1 for v in ring.buf)
    assert ring.calls == sum(v != UNUSED for v in ring.buf)


LEGAL = {
    (CircuitState.CLOSED, CircuitState.OPEN),
    (CircuitState.OPEN, CircuitState.HALF_OPEN),
    (CircuitState.HALF_OPEN, CircuitState.OPEN),
    (CircuitState.HALF_OPEN, CircuitState.CLOSED),
}


def _check_transitions(transitions: list[BreakerTransition]) -> None:
    assert transitions, "a 25% failure rate against a 30% threshold should trip sometimes"
    for t in transitions:
        assert (t.from_state, t.to_state) in LEGAL
    for before, after in itertools.pairwise(transitions):
        assert before.to_state == after.from_state


def _hammer(breaker: CircuitBreaker, rng: random.Random) -> None:
    def outcome() -> None:
        if rng.random() < 0.25:
            raise ConnectionError

    for _ in range(2000):
        run(breaker, outcome)


def _churning_breaker(transitions: list[BreakerTransition]) -> CircuitBreaker:
    return CircuitBreaker(
        "t",
        window=CountWindow(20),
        min_calls=10,
        failure_rate=0.3,
        open_s=0.002,
        half_open_probes=2,
        listeners=(transitions.append,),
    )


def test_state_machine_under_many_threads() -> None:
    """Random outcomes from 16 threads: counts stay exact and every transition is legal."""
    for seed in range(5):
        transitions: list[BreakerTransition] = []
        breaker = _churning_breaker(transitions)
        threads = [
            threading.Thread(target=_hammer, args=(breaker, random.Random(seed * 100 + i)))
            for i in range(16)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        _check_ring_invariants(breaker)
        _check_transitions(transitions)


async def test_state_machine_under_many_tasks() -> None:
    transitions: list[BreakerTransition] = []
    breaker = _churning_breaker(transitions)
    rng = random.Random(7)

    @breaker
    async def call() -> None:
        await asyncio.sleep(0)
        if rng.random() < 0.25:
            raise ConnectionError

    async def work() -> None:
        for _ in range(300):
            try:
                await call()
            except (ConnectionError, CircuitOpen):
                await asyncio.sleep(0)

    await asyncio.gather(*(work() for _ in range(64)))
    _check_ring_invariants(breaker)
    _check_transitions(transitions)


def test_lock_free_success_path_keeps_counts_exact_under_threads() -> None:
    """Full window, mixed outcomes, 8 threads: the ring's counts always match its slots."""
    breaker = CircuitBreaker("t", window=CountWindow(50), min_calls=50, failure_rate=1.0)
    for _ in range(50):
        run(breaker, ok)

    def work(rng: random.Random) -> None:
        for _ in range(5000):
            run(breaker, fail if rng.random() < 0.1 else ok)

    threads = [threading.Thread(target=work, args=(random.Random(i),)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    _check_ring_invariants(breaker)
    assert breaker.state is CircuitState.CLOSED


def test_reset_and_metrics() -> None:
    breaker = CircuitBreaker("t", min_calls=1)
    run(breaker, fail)
    assert breaker.state is CircuitState.OPEN
    breaker.reset()
    assert breaker.state is CircuitState.CLOSED
    assert breaker.metrics()["calls"] == 0
    assert "closed" in repr(breaker)


def test_a_failing_listener_is_logged_and_does_not_fail_the_call(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(_: BreakerTransition) -> None:
        raise RuntimeError("listener bug")

    seen: list[BreakerTransition] = []
    breaker = CircuitBreaker("t", min_calls=1, listeners=(broken, seen.append))
    assert run(breaker, fail) == "failed"  # the ConnectionError, not the listener's error
    assert breaker.state is CircuitState.OPEN
    assert len(seen) == 1
    assert "listener bug" in caplog.text


def test_listeners_see_transitions_in_order_across_threads() -> None:
    """Transitions are queued under the lock and delivered FIFO, even from many threads."""
    for seed in range(3):
        transitions: list[BreakerTransition] = []
        breaker = _churning_breaker(transitions)
        threads = [
            threading.Thread(target=_hammer, args=(breaker, random.Random(seed + i)))
            for i in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        _check_transitions(transitions)


def _switch_threads_at_every_line(
    frame: types.FrameType, event: str, arg: object
) -> Callable[..., object] | None:
    """A trace function giving the GIL away between any two lines of the breaker modules.

    CPython 3.12 happens not to switch threads inside the few lines of the breaker's success
    path, but nothing guarantees it: a tracer, a debugger, a free-threaded build or another
    interpreter version may switch at any line. This makes every such interleaving likely.
    """
    if frame.f_code.co_filename not in BREAKER_MODULES:
        return None

    def on_line(frame: types.FrameType, event: str, arg: object) -> Callable[..., object]:
        if event == "line":
            time.sleep(0)  # releases the GIL: another thread runs here
        return on_line

    return on_line


BREAKER_MODULES = frozenset({_breaker_module.__file__, _shared_module.__file__})


def _window_failures(breaker: CircuitBreaker | RedisCircuitBreaker) -> int:
    return breaker._ring.failures


@pytest.fixture(params=["in-process", "shared"])
def breaker_kind(
    request: pytest.FixtureRequest,
) -> Iterator[Callable[[int], CircuitBreaker | RedisCircuitBreaker]]:
    """Makes a closed breaker with a count window of ``size`` that never trips."""
    if request.param == "in-process":
        yield lambda size: CircuitBreaker(
            "t", window=CountWindow(size), min_calls=size, failure_rate=1.0
        )
        return
    server: RunningServer = request.getfixturevalue("redis_srv")
    with redis.Redis.from_url(server.url, socket_timeout=5) as client:
        yield lambda size: RedisCircuitBreaker(
            f"race-{uuid.uuid4().hex[:8]}",
            client=client,
            prefix="test:",
            window=CountWindow(size),
            min_calls=size,
            failure_rate=1.0,
        )


def test_concurrent_successes_each_take_their_own_slot_of_the_window(
    breaker_kind: Callable[[int], CircuitBreaker | RedisCircuitBreaker],
) -> None:
    """No success is dropped, whatever the thread interleaving (real threads).

    The window is filled with `half` successes then `half` failures. Then 4 threads record
    `half` successes together: they must take exactly the slots of the oldest `half`
    successes, leaving the failures in place, so that `half` more (sequential) successes push
    every failure out. A dropped success leaves the index behind and failures in the window.
    """
    size, threads_n = 400, 4
    half = size // 2
    breaker = breaker_kind(size)
    succeed, failing = breaker(ok), breaker(fail)
    for _ in range(half):
        succeed()
    for _ in range(half):
        with pytest.raises(ConnectionError):
            failing()
    assert _window_failures(breaker) == half
    start = threading.Barrier(threads_n)

    def work() -> None:
        start.wait()
        for _ in range(half // threads_n):
            succeed()

    threads = [threading.Thread(target=work) for _ in range(threads_n)]
    threading.settrace(_switch_threads_at_every_line)
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        threading.settrace(None)  # type: ignore[arg-type]
    assert _window_failures(breaker) == half  # the failures are all still in the window
    for _ in range(half):
        succeed()
    assert _window_failures(breaker) == 0  # ...and exactly `half` later successes pushed them out
    assert breaker.state is CircuitState.CLOSED


def test_bare_decorator_without_parentheses_fails_at_decoration() -> None:
    with pytest.raises(TypeError, match=r'use @CircuitBreaker\("payments", \.\.\.\)'):

        @CircuitBreaker  # type: ignore[arg-type]
        def charge() -> None: ...

    with pytest.raises(TypeError, match=r'use @RedisCircuitBreaker\("payments", \.\.\.\)'):

        @RedisCircuitBreaker  # type: ignore[arg-type]
        async def acharge() -> None: ...

    with pytest.raises(TypeError, match="name=42"):
        CircuitBreaker(42)  # type: ignore[arg-type]


def test_the_explicit_form_counts_what_the_caller_judges() -> None:
    """admit/record_*: a caller judging a *value* (an HTTP 503) trips the breaker; an open
    breaker rejects at admission with the time left; release frees a half-open probe."""
    clock = FakeClock()
    breaker = CircuitBreaker("api", min_calls=2, window=CountWindow(2), open_s=5, clock=clock)
    breaker.record_success(breaker.admit())
    breaker.record_failure(breaker.admit())
    assert breaker.state is CircuitState.OPEN
    clock.now += 2
    with pytest.raises(CircuitOpen) as rejected:
        breaker.admit()
    assert rejected.value.retry_after_s == pytest.approx(3.0)
    clock.now += 3
    probe = breaker.admit()  # half-open: the one probe permit
    with pytest.raises(CircuitOpen):
        breaker.admit()
    breaker.release(probe)  # no verdict: the permit is free again
    breaker.record_success(breaker.admit())
    assert breaker.state is CircuitState.CLOSED


def test_the_explicit_form_counts_slow_calls() -> None:
    breaker = CircuitBreaker(
        "api", min_calls=1, window=CountWindow(1), slow_call_s=1.0, slow_call_rate=1.0
    )
    breaker.record_success(breaker.admit(), elapsed_s=0.5)
    assert breaker.state is CircuitState.CLOSED
    breaker.record_success(breaker.admit(), elapsed_s=1.5)
    assert breaker.state is CircuitState.OPEN
