"""One retry engine, four forms: every behaviour holds alike for the sync and async decorators
and the sync and async loop forms (``for attempt in policy`` / ``async for``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from stalwart.resilience import (
    RetryBudget,
    RetryEvent,
    RetryPolicy,
    deadline,
    retry,
    retry_testing,
)
from unit.resilience.test_retry import Sleeps

type Work = Callable[[], object]


def sync_decorator(policy: RetryPolicy, work: Work) -> object:
    return policy(work)()


def async_decorator(policy: RetryPolicy, work: Work) -> object:
    async def call() -> object:
        return work()

    return asyncio.run(policy(call)())


def sync_loop(policy: RetryPolicy, work: Work) -> object:
    for attempt in policy:
        with attempt:
            result = work()
            if policy.on_result is not None:
                attempt.result = result  # how the loop form hands a result to on_result
    return result


def async_loop(policy: RetryPolicy, work: Work) -> object:
    async def main() -> object:
        async for attempt in policy:
            with attempt:
                result = work()
                if policy.on_result is not None:
                    attempt.result = result
        return result

    return asyncio.run(main())


FORMS = [sync_decorator, async_decorator, sync_loop, async_loop]
type Form = Callable[[RetryPolicy, Work], object]


@pytest.fixture(params=FORMS, ids=[form.__name__ for form in FORMS])
def form(request: pytest.FixtureRequest) -> Form:
    return request.param  # type: ignore[no-any-return]


class Script:
    """Plays a script of outcomes: an exception instance is raised, anything else returned."""

    def __init__(self, *outcomes: object) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0
        self.raised: list[BaseException] = []

    def __call__(self) -> object:
        outcome = self.outcomes[min(self.calls, len(self.outcomes) - 1)]
        self.calls += 1
        if isinstance(outcome, BaseException):
            self.raised.append(outcome)
            raise outcome
        return outcome


def policy_with(sleeps: Sleeps, **options: Any) -> RetryPolicy:
    options.setdefault("on", ConnectionError)
    options.setdefault("rand", lambda: 1.0)
    return retry(sleep=sleeps, async_sleep=sleeps.async_sleep, **options)


def test_retries_until_success_with_backoff(form: Form) -> None:
    waits = Sleeps()
    work = Script(ConnectionError(1), ConnectionError(2), "ok")
    assert form(policy_with(waits, attempts=3, base_s=0.1), work) == "ok"
    assert work.calls == 3
    assert waits.waits == pytest.approx([0.1, 0.2])


def test_exhausted_reraises_the_last_error_unchanged(form: Form) -> None:
    work = Script(ConnectionError(1), ConnectionError(2), ConnectionError(3))
    with pytest.raises(ConnectionError) as info:
        form(policy_with(Sleeps(), attempts=3), work)
    assert info.value is work.raised[-1]
    assert info.value.__context__ is None


def test_other_errors_propagate_at_once(form: Form) -> None:
    work = Script(KeyError("not retried"), "ok")
    with pytest.raises(KeyError):
        form(policy_with(Sleeps(), attempts=5), work)
    assert work.calls == 1


def test_budget_spent_on_retries_and_refunded_on_success(form: Form) -> None:
    budget = RetryBudget(capacity=100, retry_cost=5, timeout_cost=10, success_refund=1)
    for _ in range(4):
        assert budget.try_withdraw(ConnectionError())  # 80 left: room for refunds to show
    policy = policy_with(Sleeps(), on=(ConnectionError, TimeoutError), attempts=5, budget=budget)

    assert form(policy, Script(ConnectionError(), TimeoutError(), "ok")) == "ok"
    assert budget.tokens == 80 - 5 - 10 + 10  # two retries spent; the success refunds the last
    assert form(policy, Script("ok")) == "ok"
    assert budget.tokens == 76  # a first-try success refunds success_refund
    with pytest.raises(ConnectionError):
        form(policy, Script(ConnectionError()))
    assert budget.tokens == 76 - 4 * 5  # a call that never succeeds is never refunded


def test_empty_budget_stops_retrying(form: Form) -> None:
    budget = RetryBudget(capacity=5, retry_cost=5)
    policy = policy_with(Sleeps(), attempts=10, budget=budget)
    first = Script(ConnectionError())
    with pytest.raises(ConnectionError):
        form(policy, first)
    assert first.calls == 2  # one retry emptied the bucket
    second = Script(ConnectionError(), "ok")
    with pytest.raises(ConnectionError):
        form(policy, second)
    assert second.calls == 1


def test_on_result_retries_results_and_returns_the_last_when_exhausted(form: Form) -> None:
    events: list[RetryEvent] = []
    policy = policy_with(
        Sleeps(), on=(), on_result=lambda r: r is None, attempts=3, hooks=(events.append,)
    )
    work = Script(None, None, "ok")
    assert form(policy, work) == "ok"
    assert work.calls == 3
    assert [(e.attempt, e.cause, e.result) for e in events] == [(1, None, None), (2, None, None)]
    exhausted = Script(None)
    assert form(policy, exhausted) is None
    assert exhausted.calls == 3


def test_on_result_retries_spend_and_refund_the_budget(form: Form) -> None:
    budget = RetryBudget(capacity=100, retry_cost=5, success_refund=1)
    for _ in range(4):
        budget.try_withdraw(ConnectionError())
    policy = policy_with(Sleeps(), on_result=lambda r: r == "busy", attempts=3, budget=budget)
    assert form(policy, Script("busy", "ok")) == "ok"
    assert budget.tokens == 80  # spent 5 on the retry, refunded 5 by the success


def test_total_deadline_stops_before_a_wait_would_cross_it(form: Form) -> None:
    now = [0.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    async def async_sleep(seconds: float) -> None:
        sleep(seconds)

    def work() -> None:
        now[0] += 0.3  # each attempt takes 0.3 s of fake time
        raise ConnectionError

    policy = retry(
        on=ConnectionError,
        attempts=100,
        base_s=0.5,
        cap_s=0.5,
        total_s=2.0,
        clock=lambda: now[0],
        sleep=sleep,
        async_sleep=async_sleep,
        rand=lambda: 1.0,
    )
    with pytest.raises(ConnectionError):
        form(policy, work)
    assert waits == [0.5, 0.5]  # .3 + .5 + .3 + .5 + .3 = 1.9; another .5 would cross 2.0
    assert now[0] <= 2.0


def test_callers_deadline_stops_the_retries(form: Form) -> None:
    waits = Sleeps()
    work = Script(ConnectionError())
    with deadline(0.3), pytest.raises(ConnectionError):
        form(policy_with(waits, attempts=10, base_s=0.4, cap_s=0.4), work)
    assert waits.waits == []  # a 0.4 s wait would end past the caller's 0.3 s deadline
    assert work.calls == 1
    short = Script(ConnectionError(), "ok")
    with deadline(0.3):
        assert form(policy_with(waits, base_s=0.01), short) == "ok"  # a short wait fits


class ThrottledError(Exception):
    def __init__(self, retry_after_s: float | None) -> None:
        super().__init__("429")
        self.retry_after_s = retry_after_s


def test_retry_after_lengthens_the_wait(form: Form) -> None:
    waits = Sleeps()
    work = Script(ThrottledError(2.5), ThrottledError(None), "ok")
    assert form(policy_with(waits, on=ThrottledError, base_s=0.01), work) == "ok"
    assert waits.waits == pytest.approx([2.5, 0.02])


def test_retry_after_past_the_total_deadline_ends_the_retries(form: Form) -> None:
    work = Script(ThrottledError(60.0), "ok")
    with pytest.raises(ThrottledError):
        form(policy_with(Sleeps(), on=ThrottledError, total_s=5.0), work)
    assert work.calls == 1


def test_hooks_per_policy_and_global(form: Form) -> None:
    local: list[RetryEvent] = []
    policy = policy_with(Sleeps(), attempts=3, base_s=0.1, hooks=(local.append,), name="fetch")
    work = Script(ConnectionError("a"), ConnectionError("b"), "ok")
    assert form(policy, work) == "ok"
    assert [(e.name, e.attempt, e.wait_s, e.cause) for e in local] == [
        ("fetch", 1, pytest.approx(0.1), work.raised[0]),
        ("fetch", 2, pytest.approx(0.2), work.raised[1]),
    ]


def test_a_failing_hook_does_not_change_the_outcome(
    form: Form, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(_: RetryEvent) -> None:
        raise RuntimeError("hook bug")

    assert form(policy_with(Sleeps(), hooks=(broken,)), Script(ConnectionError(), "ok")) == "ok"
    assert "hook bug" in caplog.text


def test_test_mode_never_sleeps_and_caps_attempts(form: Form) -> None:
    waits = Sleeps()
    policy = policy_with(waits, attempts=5, base_s=30.0, cap_s=60.0)
    with retry_testing():
        work = Script(ConnectionError(), ConnectionError(), "ok")
        assert form(policy, work) == "ok"
    assert waits.waits == []  # zero waits are not even slept
    with retry_testing(attempts=2):
        capped = Script(ConnectionError())
        with pytest.raises(ConnectionError):
            form(policy, capped)
    assert capped.calls == 2


def test_base_exceptions_are_never_retried(form: Form) -> None:
    work = Script(KeyboardInterrupt(), "ok")
    with pytest.raises(KeyboardInterrupt):
        form(policy_with(Sleeps(), on=Exception), work)
    assert work.calls == 1


# -- the loop form's own rules ------------------------------------------------------------------


def test_loop_with_on_result_requires_the_result() -> None:
    policy = retry(on=(), on_result=lambda r: r is None, base_s=0.0)
    with pytest.raises(TypeError, match=r"attempt\.result = value"):  # noqa: PT012
        for attempt in policy:
            with attempt:
                pass  # forgot attempt.result = ...


def test_loop_attempt_reports_number_and_next_wait() -> None:
    waits = Sleeps()
    seen = []
    for attempt in policy_with(waits, attempts=3, base_s=0.1):
        with attempt:
            seen.append(attempt.number)
            if attempt.number < 2:
                raise ConnectionError
        assert attempt.retrying is (attempt.number < 2)
    assert seen == [1, 2]
    assert waits.waits == pytest.approx([0.1])
    with pytest.raises(AttributeError, match="no result"):
        _ = attempt.result


def test_loop_return_inside_the_block_is_a_success() -> None:
    budget = RetryBudget(capacity=10, retry_cost=5, success_refund=1)
    budget.try_withdraw(ConnectionError())

    def fetch() -> str:
        for attempt in retry(on=ConnectionError, base_s=0.0, budget=budget):
            with attempt:
                return "ok"
        raise AssertionError("unreachable")

    assert fetch() == "ok"
    assert budget.tokens == 6
