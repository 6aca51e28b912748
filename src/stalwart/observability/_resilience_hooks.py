"""Hooks that turn resilience events into log lines, EMF metrics and span events.

They are typed structurally (Protocols below) against ``stalwart.resilience``'s ``RetryEvent``
and ``BreakerTransition``, so this module never imports ``stalwart.resilience``: the two
packages stay independent at import time and either can be used without the other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from stalwart.observability._logging import get_logger
from stalwart.observability._metrics import MetricSet, MetricUnit, current_config
from stalwart.observability._trace_ids import current_span

if TYPE_CHECKING:
    from collections.abc import Callable

_log = get_logger("stalwart.resilience")


class RetryEventLike(Protocol):
    """The shape of ``stalwart.resilience.RetryEvent``."""

    @property
    def name(self) -> str: ...
    @property
    def attempt(self) -> int: ...
    @property
    def wait_s(self) -> float: ...
    @property
    def cause(self) -> BaseException | None: ...
    @property
    def result(self) -> object | None: ...


class BreakerTransitionLike(Protocol):
    """The shape of ``stalwart.resilience.BreakerTransition`` (states are StrEnums)."""

    @property
    def name(self) -> str: ...
    @property
    def from_state(self) -> str: ...
    @property
    def to_state(self) -> str: ...
    @property
    def at(self) -> float: ...


def _cause_fields(cause: BaseException | None) -> dict[str, str]:
    if cause is None:
        return {}
    return {"cause_type": type(cause).__qualname__, "cause": str(cause)}


def log_retry_hook(event: RetryEventLike) -> None:
    """Log a WARNING line ``retry scheduled`` with the policy name, attempt, wait and cause.

    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Event:
    ...     name: str; attempt: int; wait_s: float; cause: BaseException | None; result: object
    >>> log_retry_hook(Event("payments", 1, 0.2, TimeoutError("slow"), None))
    """
    _log.warning(
        "retry scheduled",
        retry_policy=event.name,
        attempt=event.attempt,
        wait_s=round(event.wait_s, 6),
        **_cause_fields(event.cause),
    )


def log_breaker_listener(transition: BreakerTransitionLike) -> None:
    """Log a breaker transition (WARNING when it opens, INFO otherwise).

    >>> from types import SimpleNamespace as Transition
    >>> log_breaker_listener(Transition(name="psp", from_state="closed", to_state="open", at=1.0))
    """
    to_state = str(transition.to_state)
    method = _log.warning if to_state == "open" else _log.info
    method(
        "circuit breaker transition",
        breaker=transition.name,
        from_state=str(transition.from_state),
        to_state=to_state,
    )


def _emit(metric: str, dimensions: dict[str, str]) -> None:
    # Its own document, so the policy name is a dimension without touching the request's set.
    metric_set = MetricSet(current_config())
    for key, value in dimensions.items():
        metric_set.add_dimension(key, value)
    metric_set.put(metric, 1, MetricUnit.COUNT, 60)
    metric_set.flush()


def metrics_retry_hook(event: RetryEventLike) -> None:
    """Emit ``RetryScheduled`` = 1 (Count) with a ``retry_policy`` dimension.

    >>> from types import SimpleNamespace as Event
    >>> from stalwart.observability import capture_metrics
    >>> with capture_metrics() as docs:
    ...     metrics_retry_hook(Event(name="psp", attempt=1, wait_s=0.1, cause=None, result=None))
    >>> docs[0]["RetryScheduled"], docs[0]["retry_policy"]
    (1, 'psp')
    """
    _emit("RetryScheduled", {"retry_policy": event.name})


def metrics_breaker_listener(transition: BreakerTransitionLike) -> None:
    """Emit ``BreakerTransition`` = 1 (Count) with ``breaker`` and ``to_state`` dimensions.

    >>> from types import SimpleNamespace as Transition
    >>> from stalwart.observability import capture_metrics
    >>> with capture_metrics() as docs:
    ...     metrics_breaker_listener(Transition(name="psp", from_state="closed",
    ...                                         to_state="open", at=1.0))
    >>> docs[0]["to_state"]
    'open'
    """
    _emit("BreakerTransition", {"breaker": transition.name, "to_state": str(transition.to_state)})


def span_retry_hook(event: RetryEventLike) -> None:
    """Add a ``retry.scheduled`` event to the active span, if one is recording.

    >>> from types import SimpleNamespace as Event
    >>> span_retry_hook(Event(name="psp", attempt=1, wait_s=0.1, cause=None, result=None))
    """
    span = current_span()
    if span is None:
        return
    attributes: dict[str, str | int | float] = {
        "retry.policy": event.name,
        "retry.attempt": event.attempt,
        "retry.wait_s": event.wait_s,
    }
    if event.cause is not None:
        attributes["exception.type"] = type(event.cause).__qualname__
        attributes["exception.message"] = str(event.cause)
    span.add_event("retry.scheduled", attributes)


def span_breaker_listener(transition: BreakerTransitionLike) -> None:
    """Add a ``circuit_breaker.transition`` event to the active span, if one is recording.

    >>> from types import SimpleNamespace as Transition
    >>> span_breaker_listener(Transition(name="psp", from_state="open", to_state="half_open",
    ...                                  at=2.0))
    """
    span = current_span()
    if span is None:
        return
    span.add_event(
        "circuit_breaker.transition",
        {
            "circuit_breaker.name": transition.name,
            "circuit_breaker.from_state": str(transition.from_state),
            "circuit_breaker.to_state": str(transition.to_state),
        },
    )


def _fanout[E](hooks: tuple[Callable[[E], None], ...]) -> Callable[[E], None]:
    def call(event: E) -> None:
        for hook in hooks:
            hook(event)

    return call


def retry_hook(
    *, log: bool = True, metrics: bool = True, span: bool = True
) -> Callable[[RetryEventLike], None]:
    """One retry hook doing any of: a log line, a metric, a span event.

    >>> hook = retry_hook(metrics=False)
    >>> callable(hook)
    True
    """
    chosen = (
        *((log_retry_hook,) if log else ()),
        *((metrics_retry_hook,) if metrics else ()),
        *((span_retry_hook,) if span else ()),
    )
    return _fanout(chosen)


def breaker_listener(
    *, log: bool = True, metrics: bool = True, span: bool = True
) -> Callable[[BreakerTransitionLike], None]:
    """One breaker listener doing any of: a log line, a metric, a span event.

    >>> listener = breaker_listener(span=False)
    >>> callable(listener)
    True
    """
    chosen = (
        *((log_breaker_listener,) if log else ()),
        *((metrics_breaker_listener,) if metrics else ()),
        *((span_breaker_listener,) if span else ()),
    )
    return _fanout(chosen)
