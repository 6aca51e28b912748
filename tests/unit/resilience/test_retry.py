"""Retry: behaviour, deadlines, budget, hooks, test mode, jitter bounds."""

from __future__ import annotations

import asyncio
import re
import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stalwart.resilience import (
    Jitter,
    RetryBudget,
    RetryEvent,
    add_retry_hook,
    current_deadline,
    deadline,
    decorrelated_jitter,
    full_jitter,
    is_testing,
    retry,
    retry_testing,
    set_testing,
)


class Flaky:
    """Fails ``failures`` times with ``exc``, then returns ``value``."""

    def __init__(
        self, failures: int, exc: type[Exception] = ConnectionError, value: object = "ok"
    ) -> None:
        self.failures = failures
        self.exc = exc
        self.value = value
        self.calls = 0
        self.raised: list[Exception] = []

    def __call__(self) -> object:
        self.calls += 1
        if self.calls <= self.failures:
            error = self.exc(f"failure {self.calls}")
            self.raised.append(error)
            raise error
        return self.value


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)

    async def async_sleep(self, seconds: float) -> None:
        self.waits.append(seconds)


def test_success_calls_once() -> None:
    flaky = Flaky(0)
    assert retry(on=ConnectionError)(flaky)() == "ok"
    assert flaky.calls == 1


def test_retries_until_success_with_backoff_waits() -> None:
    sleeps = Sleeps()
    flaky = Flaky(2)
    policy = retry(
        on=ConnectionError, attempts=3, base_s=0.1, cap_s=1.0, sleep=sleeps, rand=lambda: 1.0
    )
    assert policy(flaky)() == "ok"
    assert flaky.calls == 3
    assert sleeps.waits == [0.1, 0.2]


def test_exhausted_reraises_the_callers_last_exception_unchanged() -> None:
    flaky = Flaky(10)
    wrapped = retry(on=ConnectionError, attempts=4, base_s=0.0)(flaky)
    with pytest.raises(ConnectionError) as info:
        wrapped()
    assert flaky.calls == 4
    assert info.value is flaky.raised[-1]
    assert type(info.value) is ConnectionError


def test_other_exceptions_are_not_retried() -> None:
    flaky = Flaky(5, exc=KeyError)
    with pytest.raises(KeyError):
        retry(on=ConnectionError, base_s=0.0)(flaky)()
    assert flaky.calls == 1


def test_predicate_on_exceptions() -> None:
    flaky = Flaky(2, exc=OSError)
    policy = retry(on=lambda exc: "failure 1" in str(exc), base_s=0.0, attempts=5)
    with pytest.raises(OSError, match="failure 2"):
        policy(flaky)()
    assert flaky.calls == 2


def test_base_exceptions_are_never_retried() -> None:
    calls = []

    @retry(on=Exception, base_s=0.0)
    def interrupted() -> None:
        calls.append(1)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    assert calls == [1]


def test_on_type_validation() -> None:
    with pytest.raises(TypeError):
        retry(on=KeyboardInterrupt)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="attempts"):
        retry(on=ValueError, attempts=0)


def test_retry_on_result_returns_last_result_when_exhausted() -> None:
    results = iter([None, None, None, "late"])
    policy = retry(on=(), on_result=lambda r: r is None, attempts=3, base_s=0.0)
    assert policy(lambda: next(results))() is None
    results = iter([None, "ok"])
    assert policy(lambda: next(results))() == "ok"


def test_retry_after_is_honoured() -> None:
    class ThrottledError(Exception):
        def __init__(self, retry_after_s: float | None) -> None:
            super().__init__("slow down")
            self.retry_after_s = retry_after_s

    sleeps = Sleeps()
    calls = []

    @retry(on=ThrottledError, attempts=3, base_s=0.01, sleep=sleeps, rand=lambda: 1.0)
    def throttled() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise ThrottledError(2.5)
        if len(calls) == 2:
            raise ThrottledError(None)
        return "ok"

    assert throttled() == "ok"
    assert sleeps.waits == [2.5, 0.02]


def test_a_retried_result_with_retry_after_is_honoured() -> None:
    """An HTTP client retries a 503 *response*: its Retry-After sets the wait like an error's."""

    class Throttled:
        def __init__(self, retry_after_s: float | None) -> None:
            self.retry_after_s = retry_after_s

    sleeps = Sleeps()
    results = iter([Throttled(1.5), Throttled(None), "ok"])
    policy = retry(
        on=(),
        on_result=lambda r: isinstance(r, Throttled),
        attempts=3,
        base_s=0.01,
        sleep=sleeps,
        rand=lambda: 1.0,
    )
    assert policy(lambda: next(results))() == "ok"
    assert sleeps.waits == [1.5, 0.02]


DECISION_GAP_S = 0.02
"""How much later than retry's own check the sleep below may read the clock: on a loaded
machine (CI) the thread can be descheduled between the two for milliseconds (seen: one
sleep judged past the deadline by the later reading). In the tests using it every wait is
0.05 s under a 0.22-s deadline, so a sleep that retry wrongly starts (the 5th, after 0.2 s of
sleeps) ends at least 0.03 s past the deadline: the gap allowed cannot hide one."""


class DeadlineWatchingSleep:
    """Really sleeps, and records whether each sleep was planned to end before the deadline.

    Under a loaded machine a sleep may overrun; what retry guarantees is that it never *starts*
    a sleep whose planned end is past the caller's deadline (as of its own check, read here up
    to :data:`DECISION_GAP_S` later).
    """

    def __init__(self) -> None:
        self.planned_ends_before_deadline: list[bool] = []

    def _record(self, seconds: float) -> None:
        at = current_deadline()
        assert at is not None
        planned_end = time.monotonic() + seconds
        self.planned_ends_before_deadline.append(planned_end < at + DECISION_GAP_S)

    def __call__(self, seconds: float) -> None:
        self._record(seconds)
        time.sleep(seconds)

    async def async_sleep(self, seconds: float) -> None:
        self._record(seconds)
        await asyncio.sleep(seconds)


def test_callers_deadline_is_never_overshot_by_a_sleep() -> None:
    sleeps = DeadlineWatchingSleep()

    @retry(on=ConnectionError, attempts=50, base_s=0.05, cap_s=0.05, rand=lambda: 1.0, sleep=sleeps)
    def always_fails() -> None:
        raise ConnectionError

    with deadline(0.22), pytest.raises(ConnectionError):
        always_fails()
    assert all(sleeps.planned_ends_before_deadline)
    assert len(sleeps.planned_ends_before_deadline) <= 4  # 5 x 0.05 s would cross 0.22 s


@given(
    budget_s=st.floats(min_value=0.01, max_value=5.0),
    attempt_s=st.floats(min_value=0.0, max_value=1.0),
    base_s=st.floats(min_value=0.0, max_value=2.0),
    jitter=st.sampled_from(list(Jitter)),
)
def test_property_no_sleep_crosses_the_total_deadline(
    budget_s: float, attempt_s: float, base_s: float, jitter: Jitter
) -> None:
    now = [0.0]
    sleep_ends: list[float] = []

    def sleep(seconds: float) -> None:
        now[0] += seconds
        sleep_ends.append(now[0])

    def fails() -> None:
        now[0] += attempt_s
        raise ConnectionError

    policy = retry(
        on=ConnectionError,
        attempts=30,
        base_s=base_s,
        cap_s=3.0,
        total_s=budget_s,
        jitter=jitter,
        sleep=sleep,
        clock=lambda: now[0],
    )
    with pytest.raises(ConnectionError):
        policy(fails)()
    assert all(end < budget_s for end in sleep_ends)


@given(
    attempt=st.integers(min_value=1, max_value=10_000),
    base_s=st.floats(min_value=0.0, max_value=10.0),
    cap_s=st.floats(min_value=0.0, max_value=60.0),
    r=st.floats(min_value=0.0, max_value=1.0),
)
def test_property_full_jitter_bounds(attempt: int, base_s: float, cap_s: float, r: float) -> None:
    wait = full_jitter(attempt, base_s, cap_s, lambda: r)
    assert 0.0 <= wait <= min(cap_s, base_s * 2.0 ** min(attempt - 1, 1000)) + 1e-12


@given(
    previous=st.floats(min_value=0.0, max_value=100.0),
    base_s=st.floats(min_value=0.0, max_value=10.0),
    cap_s=st.floats(min_value=0.0, max_value=60.0),
    r=st.floats(min_value=0.0, max_value=1.0),
)
def test_property_decorrelated_jitter_bounds(
    previous: float, base_s: float, cap_s: float, r: float
) -> None:
    wait = decorrelated_jitter(previous, base_s, cap_s, lambda: r)
    assert wait <= cap_s
    assert wait >= min(base_s, cap_s) - 1e-9
    assert wait <= max(previous, base_s) * 3.0 + 1e-9


def test_decorrelated_waits_are_used() -> None:
    sleeps = Sleeps()
    policy = retry(
        on=ConnectionError,
        attempts=4,
        base_s=0.1,
        cap_s=10.0,
        jitter=Jitter.DECORRELATED,
        sleep=sleeps,
        rand=lambda: 1.0,
    )
    with pytest.raises(ConnectionError):
        policy(Flaky(10))()
    assert sleeps.waits == pytest.approx([0.3, 0.9, 2.7])


def test_budget_exhaustion_stops_retries_and_successes_refill() -> None:
    budget = RetryBudget(capacity=10, retry_cost=5, success_refund=1)
    policy = retry(on=ConnectionError, attempts=10, base_s=0.0, budget=budget)
    first = Flaky(100)
    with pytest.raises(ConnectionError):
        policy(first)()
    assert first.calls == 3  # two retries drained the bucket, the third was refused
    assert budget.tokens == 0
    second = Flaky(100)
    with pytest.raises(ConnectionError):
        policy(second)()
    assert second.calls == 1  # empty budget: fail fast
    for _ in range(5):
        policy(Flaky(0))()
    assert budget.tokens == 5
    recovering = Flaky(1)
    assert policy(recovering)() == "ok"
    assert recovering.calls == 2
    assert budget.tokens == 5  # the retry's 5 tokens were refunded by its success


def test_budget_is_shared_between_call_sites_and_timeouts_cost_more() -> None:
    budget = RetryBudget(capacity=20, retry_cost=5, timeout_cost=10)
    a = retry(on=TimeoutError, attempts=2, base_s=0.0, budget=budget)(Flaky(5, TimeoutError))
    b = retry(on=ConnectionError, attempts=2, base_s=0.0, budget=budget)(Flaky(5))
    with pytest.raises(TimeoutError):
        a()
    assert budget.tokens == 10
    with pytest.raises(ConnectionError):
        b()
    assert budget.tokens == 5


def test_hooks_receive_frozen_events_and_global_hooks_can_be_removed() -> None:
    local: list[RetryEvent] = []
    global_events: list[RetryEvent] = []
    remove = add_retry_hook(global_events.append)
    try:
        policy = retry(
            on=ConnectionError, attempts=3, base_s=0.0, hooks=(local.append,), name="fetch"
        )
        policy(Flaky(2))()
    finally:
        remove()
    assert [e.attempt for e in local] == [1, 2]
    assert local == global_events
    assert local[0].name == "fetch"
    assert isinstance(local[0].cause, ConnectionError)
    with pytest.raises(AttributeError):
        local[0].attempt = 5  # type: ignore[misc]
    policy(Flaky(1))()
    assert len(global_events) == 2


def test_default_name_is_the_functions_qualname() -> None:
    events: list[RetryEvent] = []

    @retry(on=ConnectionError, base_s=0.0, hooks=(events.append,))
    def fetch_user() -> None:
        if not events:
            raise ConnectionError

    fetch_user()
    assert events[0].name.endswith("fetch_user")


def test_testing_mode_never_sleeps_and_can_cap_attempts() -> None:
    def forbidden_sleep(seconds: float) -> None:
        raise AssertionError(f"slept {seconds}")

    policy = retry(on=ConnectionError, attempts=5, base_s=10.0, sleep=forbidden_sleep)
    with retry_testing():
        assert is_testing()
        flaky = Flaky(4)
        assert policy(flaky)() == "ok"
        assert flaky.calls == 5
    assert not is_testing()
    set_testing(True, attempts=2)
    try:
        flaky = Flaky(4)
        with pytest.raises(ConnectionError):
            policy(flaky)()
        assert flaky.calls == 2
    finally:
        set_testing(False)


def test_loop_form_sync() -> None:
    sleeps = Sleeps()
    flaky = Flaky(2)
    results = []
    for attempt in retry(on=ConnectionError, attempts=3, base_s=0.0, sleep=sleeps):
        with attempt:
            results.append(flaky())
    assert results == ["ok"]
    assert flaky.calls == 3

    failing = Flaky(10)
    with pytest.raises(ConnectionError) as info:  # noqa: PT012 - the loop is the subject
        for attempt in retry(on=ConnectionError, attempts=2, base_s=0.0):
            with attempt:
                failing()
    assert failing.calls == 2
    assert info.value is failing.raised[-1]


async def test_loop_form_async() -> None:
    sleeps = Sleeps()
    flaky = Flaky(1)
    numbers = []
    async for attempt in retry(
        on=ConnectionError,
        attempts=3,
        base_s=0.1,
        async_sleep=sleeps.async_sleep,
        rand=lambda: 1.0,
    ):
        with attempt:
            numbers.append(attempt.number)
            flaky()
    assert numbers == [1, 2]
    assert sleeps.waits == [0.1]


async def test_async_decorator_retries_and_reraises() -> None:
    sleeps = Sleeps()
    calls = []

    @retry(
        on=ConnectionError,
        attempts=3,
        base_s=0.1,
        async_sleep=sleeps.async_sleep,
        rand=lambda: 1.0,
    )
    async def fetch(x: int) -> int:
        calls.append(x)
        if len(calls) < 3:
            raise ConnectionError
        return x * 2

    assert await fetch(21) == 42
    assert sleeps.waits == [0.1, 0.2]

    @retry(on=ConnectionError, attempts=2, base_s=0.0)
    async def always() -> None:
        raise ConnectionError("x")

    with pytest.raises(ConnectionError, match="x"):
        await always()


async def test_async_full_path_with_result_predicate_and_deadline() -> None:
    results = iter([None, None, 5])

    @retry(on=(), on_result=lambda r: r is None, attempts=5, base_s=0.0, total_s=10.0)
    async def poll() -> int | None:
        return next(results)

    assert await poll() == 5


async def test_async_cancellation_is_not_retried() -> None:
    calls = []

    @retry(on=Exception, attempts=5, base_s=0.0)
    async def slow() -> None:
        calls.append(1)
        await asyncio.sleep(10)

    task = asyncio.create_task(slow())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert calls == [1]


async def test_async_deadline_is_respected_by_waits() -> None:
    sleeps = DeadlineWatchingSleep()

    @retry(
        on=ConnectionError,
        attempts=100,
        base_s=0.05,
        cap_s=0.05,
        rand=lambda: 1.0,
        async_sleep=sleeps.async_sleep,
    )
    async def always() -> None:
        raise ConnectionError

    with pytest.raises(ConnectionError):
        async with deadline(0.22):  # a 5th sleep would end >= 0.03 s past it (DECISION_GAP_S)
            await always()
    assert all(sleeps.planned_ends_before_deadline)
    assert len(sleeps.planned_ends_before_deadline) <= 4


def test_decorated_function_keeps_metadata() -> None:
    @retry(on=ValueError)
    def documented(x: int) -> int:
        """Doc."""
        return x

    assert documented.__name__ == "documented"
    assert documented.__doc__ == "Doc."
    assert documented(3) == 3


@pytest.mark.parametrize("full_path", [False, True])
def test_reraised_error_has_no_misleading_context(full_path: bool) -> None:
    flaky = Flaky(10)
    options = {"total_s": 60.0} if full_path else {}
    with pytest.raises(ConnectionError) as info:
        retry(on=ConnectionError, attempts=3, base_s=0.0, **options)(flaky)()
    assert info.value is flaky.raised[-1]
    assert info.value.__context__ is None
    assert info.value.__cause__ is None


def test_retries_leave_no_reference_cycles() -> None:
    import gc  # noqa: PLC0415

    calls = [0]

    def fails_twice() -> int:
        calls[0] += 1
        if calls[0] % 3:
            raise ConnectionError
        return 1

    import types  # noqa: PLC0415

    def leakable() -> int:
        # Only what a retry cycle would keep alive: other threads of the test process
        # (executors, exporters) allocate unrelated objects while gc is off.
        return sum(
            # type(), not isinstance(): a dead weakref.proxy left by another test raises
            # ReferenceError when asked for its __class__.
            issubclass(type(obj), types.FrameType | types.TracebackType | BaseException)
            for obj in gc.get_objects()
        )

    wrapped = retry(on=ConnectionError, attempts=3, base_s=0.0)(fails_twice)
    wrapped()
    gc.collect()
    gc.disable()
    try:
        before = leakable()
        for _ in range(200):
            wrapped()
        growth = leakable() - before
    finally:
        gc.enable()
    assert growth < 50  # a cycle per call would leave hundreds of frames and tracebacks


def test_a_failing_hook_is_logged_and_does_not_change_the_outcome(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(_: RetryEvent) -> None:
        raise RuntimeError("hook bug")

    flaky = Flaky(1)
    assert retry(on=ConnectionError, base_s=0.0, hooks=(broken,))(flaky)() == "ok"
    assert "hook bug" in caplog.text


def test_budget_withdrawals_are_exact_under_threads() -> None:
    budget = RetryBudget(capacity=500, retry_cost=5)
    granted: list[bool] = []

    def drain() -> None:
        granted.extend(budget.try_withdraw(ConnectionError()) for _ in range(200))

    threads = [threading.Thread(target=drain) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert granted.count(True) == 100
    assert budget.tokens == 0


# -- mistakes fail where the policy is written ----------------------------------------------


def test_bare_decorator_without_parentheses_fails_at_decoration() -> None:
    with pytest.raises(TypeError, match=r"use @retry\(on=ConnectionError\)"):

        @retry  # type: ignore[arg-type]
        def fetch() -> None: ...

    with pytest.raises(TypeError, match=r"use @retry\(on=ConnectionError\)"):

        @retry  # type: ignore[arg-type]
        async def afetch() -> None: ...


def test_the_errors_to_retry_are_given_once() -> None:
    assert retry(ConnectionError, base_s=0.0)(Flaky(1))() == "ok"  # types, positionally
    with pytest.raises(TypeError, match="needs the errors to retry"):
        retry()
    with pytest.raises(TypeError, match="needs the errors to retry"):
        retry(ConnectionError, on=TimeoutError)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"attempts": 1.5}, TypeError, "attempts=1.5"),
        ({"attempts": True}, TypeError, "attempts=True"),
        ({"attempts": "3"}, TypeError, "attempts='3'"),
        ({"attempts": 0}, ValueError, "attempts=0"),
        ({"attempts": -2}, ValueError, "attempts=-2"),
        ({"base_s": 2.0, "cap_s": 1.0}, ValueError, "base_s=2.0 > cap_s=1.0"),
        ({"base_s": 30.0}, ValueError, "base_s=30.0 > cap_s=10.0"),
        ({"base_s": -0.1}, ValueError, "base_s=-0.1"),
        ({"cap_s": -1.0, "base_s": 0.0}, ValueError, "cap_s=-1.0"),
        ({"base_s": float("nan")}, ValueError, "base_s=nan"),
        ({"cap_s": float("inf")}, ValueError, "cap_s=inf"),
        ({"base_s": "0.1"}, TypeError, "base_s='0.1'"),
        ({"total_s": 0}, ValueError, "total_s=0"),
        ({"total_s": -5.0}, ValueError, "total_s=-5.0"),
        ({"total_s": float("nan")}, ValueError, "total_s=nan"),
        ({"jitter": "gaussian"}, ValueError, "jitter='gaussian'"),
        ({"hooks": (print, "not a hook")}, TypeError, "hooks="),
        ({"hooks": print}, TypeError, "expected a tuple of callables"),
        ({"on_result": True}, TypeError, "on_result=True"),
        ({"budget": 500}, TypeError, "budget=500"),
        ({"sleep": None}, TypeError, "sleep=None"),
    ],
)
def test_invalid_options_fail_at_construction(
    options: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=re.escape(message)):
        retry(on=ConnectionError, **options)  # type: ignore[arg-type]


def test_set_testing_rejects_a_non_integer_attempt_cap() -> None:
    with pytest.raises(TypeError, match=r"attempts=1\.5"):
        set_testing(True, attempts=1.5)  # type: ignore[arg-type]
    assert not is_testing()


def test_jitter_given_as_a_string_means_that_jitter() -> None:
    waits: list[float] = []
    policy = retry(
        on=ConnectionError,
        attempts=3,
        base_s=0.1,
        jitter="full",  # type: ignore[arg-type]
        sleep=waits.append,
        rand=lambda: 1.0,
    )
    with pytest.raises(ConnectionError):
        policy(Flaky(5))()
    assert policy.jitter is Jitter.FULL
    assert waits == pytest.approx([0.1, 0.2])  # full jitter, not decorrelated ([0.3, 0.9])


def test_a_nonsense_retry_after_falls_back_to_the_backoff() -> None:
    class ThrottledError(Exception):
        def __init__(self, retry_after_s: object) -> None:
            super().__init__("429")
            self.retry_after_s = retry_after_s

    waits: list[float] = []
    flaky = Flaky(0)
    errors = iter(
        [ThrottledError(-3.0), ThrottledError(float("nan")), ThrottledError(float("inf"))]
    )

    @retry(
        on=ThrottledError, attempts=4, base_s=0.1, cap_s=0.1, sleep=waits.append, rand=lambda: 1.0
    )
    def call() -> object:
        for error in errors:
            raise error
        return flaky()

    assert call() == "ok"
    assert waits == pytest.approx([0.1, 0.1, 0.1])
