"""Circuit breaker: sliding windows, failure and slow-call rates, exactly N half-open probes.

State machine::

    CLOSED --(rate over threshold, after min_calls)--> OPEN
    OPEN --(open_s elapsed, first caller)--> HALF_OPEN (that caller is probe 1 of N)
    HALF_OPEN --(N probes done, rates under threshold)--> CLOSED
    HALF_OPEN --(probe rates over threshold)--> OPEN

The lock guards state and window changes only; the protected call always runs outside it. Each
admitted call carries the *generation* it was admitted in; an outcome from an older generation
(a call that started before a transition) is ignored, so a slow call admitted while closed can
never be mistaken for a half-open probe.

A success in steady state (closed, count window, its slot already holding a success) changes
nothing, so it only takes its slot -- an atomic ``next()``, see :class:`CountRing` -- and no
lock. Every outcome that changes a count is written under the lock.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, cast

from stalwart.resilience._decorate import is_coroutine_function
from stalwart.resilience._errors import BulkheadFull, CircuitOpen
from stalwart.resilience._window import (
    FAILURE,
    SLOW,
    CountRing,
    CountWindow,
    TimeRing,
    TimeWindow,
)

type ExceptionTypes = type[BaseException] | tuple[type[BaseException], ...]


class CircuitState(StrEnum):
    """The three states of a circuit breaker."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


_CLOSED = CircuitState.CLOSED
_OPEN = CircuitState.OPEN
_HALF_OPEN = CircuitState.HALF_OPEN


@dataclass(frozen=True, slots=True)
class BreakerTransition:
    """A state change of breaker ``name`` at ``at`` (the breaker's clock, monotonic seconds)."""

    name: str
    from_state: CircuitState
    to_state: CircuitState
    at: float


class BreakerListener(Protocol):
    """Called after every state transition, outside the breaker's lock."""

    def __call__(self, transition: BreakerTransition, /) -> None: ...


_GLOBAL_LISTENERS: list[BreakerListener] = []
_LOG = logging.getLogger("stalwart.resilience")


def add_breaker_listener(listener: BreakerListener) -> Callable[[], None]:
    """Register a listener for the transitions of every breaker; returns its remover.

    >>> remove = add_breaker_listener(print)
    >>> remove()
    """
    _GLOBAL_LISTENERS.append(listener)

    def remove() -> None:
        with contextlib.suppress(ValueError):
            _GLOBAL_LISTENERS.remove(listener)

    return remove


class TransitionQueue:
    """Delivers a breaker's transitions to its listeners in the order they happened.

    ``push`` is called with the breaker's state lock held, so the queue order is the transition
    order; ``deliver`` is called after releasing it, and whichever thread takes the delivery
    lock drains the queue in FIFO order. Listeners thus never run under the state lock, and
    still see transitions in order. A listener that raises is logged and skipped: observing a
    breaker must not fail the protected call.
    """

    __slots__ = ("_lock", "_pending", "listeners")

    def __init__(self, listeners: tuple[BreakerListener, ...]) -> None:
        self.listeners = listeners
        self._pending: deque[BreakerTransition] = deque()
        self._lock = threading.RLock()  # re-entrant: a listener may itself trip a breaker

    def push(self, transition: BreakerTransition) -> None:
        self._pending.append(transition)

    def deliver(self) -> None:
        if not self._pending:
            return
        with self._lock:
            pending = self._pending
            while pending:
                transition = pending.popleft()
                for listener in (*self.listeners, *_GLOBAL_LISTENERS):
                    try:
                        listener(transition)
                    except Exception:  # noqa: BLE001 - any listener bug: log it, go on
                        _LOG.exception("breaker listener %r failed", listener)


def check_breaker_name(name: object, kind: str) -> None:
    """Refuse a breaker without a name, e.g. ``@CircuitBreaker`` used without parentheses."""
    if isinstance(name, str):
        return
    if callable(name):
        raise TypeError(
            f"{kind} needs a name and parentheses, it is not a bare decorator: use "
            f'@{kind}("payments", ...) or breaker = {kind}("payments", ...) then @breaker'
        )
    raise TypeError(f"{kind} name={name!r}: expected a string")


_DEFAULT_WINDOW = CountWindow(100)

# Rejections by stalwart itself say nothing about the dependency's health.
_NEVER_COUNTED: tuple[type[BaseException], ...] = (CircuitOpen, BulkheadFull)


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """Thresholds of a breaker; defaults are between resilience4j's and Polly's.

    - ``window``: :class:`CountWindow` (last N calls) or :class:`TimeWindow` (last N seconds).
    - ``min_calls``: no verdict before that many calls are in the window.
    - ``failure_rate`` / ``slow_call_rate``: trip when a rate reaches it (0 < rate <= 1).
    - ``slow_call_s``: calls at least that long are slow (``None``: no slow-call tracking).
    - ``open_s``: time spent open before probing; ``half_open_probes``: exactly that many
      probe calls are admitted in half-open.
    - ``failure_on``: exception types that count as failures; ``ignore`` types never count.
      ``BaseException``s that are not ``Exception`` (cancellation) never count.
    """

    window: CountWindow | TimeWindow = _DEFAULT_WINDOW
    min_calls: int = 20
    failure_rate: float = 0.5
    slow_call_s: float | None = None
    slow_call_rate: float = 1.0
    open_s: float = 30.0
    half_open_probes: int = 1
    failure_on: ExceptionTypes = Exception
    ignore: ExceptionTypes = ()

    def __post_init__(self) -> None:
        if self.min_calls < 1:
            raise ValueError("min_calls must be >= 1")
        if isinstance(self.window, CountWindow) and self.min_calls > self.window.size:
            raise ValueError("min_calls cannot exceed the CountWindow size")
        for rate in (self.failure_rate, self.slow_call_rate):
            if not 0.0 < rate <= 1.0:
                raise ValueError("rates must be in (0, 1]")
        if self.open_s < 0 or self.half_open_probes < 1:
            raise ValueError("open_s must be >= 0 and half_open_probes >= 1")
        if self.slow_call_s is not None and self.slow_call_s <= 0:
            raise ValueError("slow_call_s must be > 0")

    def outcome_of_error(self, exc: BaseException) -> int | None:
        """FAILURE for a counted error; ``None`` for one that must not count at all."""
        if not isinstance(exc, Exception) or isinstance(exc, _NEVER_COUNTED):
            return None
        if isinstance(exc, self.ignore) or not isinstance(exc, self.failure_on):
            return None
        return FAILURE

    def over_threshold(self, calls: int, failures: int, slow: int) -> bool:
        """Whether a window (or the probe set) with these counts must open the circuit."""
        if calls <= 0:
            return False
        return failures >= self.failure_rate * calls or (
            self.slow_call_s is not None and slow >= self.slow_call_rate * calls
        )

    def new_ring(self) -> CountRing | TimeRing:
        if isinstance(self.window, CountWindow):
            return CountRing(self.window.size)
        return TimeRing(self.window.seconds)


class CircuitBreaker:
    """An in-process circuit breaker; one instance per dependency (see :class:`BreakerRegistry`).

    Use it as a decorator on sync or coroutine functions, or through :meth:`call`.

    >>> breaker = CircuitBreaker("payments", min_calls=2, window=CountWindow(4), open_s=60)
    >>> @breaker
    ... def charge() -> None:
    ...     raise ConnectionError("down")
    >>> for _ in range(2):
    ...     try:
    ...         charge()
    ...     except ConnectionError:
    ...         pass
    >>> breaker.state
    <CircuitState.OPEN: 'open'>
    """

    __slots__ = (
        "_clock",
        "_gen",
        "_lock",
        "_open_until",
        "_probe_failures",
        "_probe_slow",
        "_probes_admitted",
        "_probes_done",
        "_ring",
        "_state",
        "_transitions",
        "config",
        "name",
    )

    def __init__(
        self,
        name: str,
        config: BreakerConfig | None = None,
        *,
        listeners: tuple[BreakerListener, ...] = (),
        clock: Callable[[], float] = time.monotonic,
        **options: Any,
    ) -> None:
        check_breaker_name(name, "CircuitBreaker")
        if config is not None and options:
            raise TypeError("pass either a BreakerConfig or keyword options, not both")
        self.name = name
        self.config = config if config is not None else BreakerConfig(**options)
        self._transitions = TransitionQueue(listeners)
        self._clock = clock
        self._lock = threading.Lock()
        self._state = _CLOSED
        self._gen = 0
        self._open_until = 0.0
        self._ring = self.config.new_ring()
        self._probes_admitted = 0
        self._probes_done = 0
        self._probe_failures = 0
        self._probe_slow = 0

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.name!r} {self._state.value}>"

    @property
    def state(self) -> CircuitState:
        """The current state (``OPEN`` is reported until a caller starts probing)."""
        return self._state

    def metrics(self) -> dict[str, float]:
        """Window counts and rates, for health endpoints and gauges."""
        with self._lock:
            calls, failures, slow = self._ring.totals(self._clock())
        return {
            "calls": calls,
            "failures": failures,
            "slow": slow,
            "failure_rate": failures / calls if calls else 0.0,
            "slow_call_rate": slow / calls if calls else 0.0,
        }

    # -- admission and recording (the lock never covers the protected call) ------------------

    def _admit(self) -> int:
        """Admit a call when not closed: a half-open probe, or :class:`CircuitOpen`."""
        with self._lock:
            state = self._state
            if state is _CLOSED:
                return self._gen
            now = self._clock()
            if state is _OPEN:
                if now < self._open_until:
                    raise CircuitOpen(self.name, self._open_until - now)
                self._move(_HALF_OPEN, now)
            if self._probes_admitted >= self.config.half_open_probes:
                raise CircuitOpen(self.name, 0.0)
            self._probes_admitted += 1
            gen = self._gen
        self._transitions.deliver()
        return gen

    def _move(self, to: CircuitState, now: float) -> None:
        """Change state (lock held); listeners hear of it on the next ``deliver``."""
        self._transitions.push(BreakerTransition(self.name, self._state, to, now))
        self._state = to
        self._gen += 1
        self._probes_admitted = self._probes_done = 0
        self._probe_failures = self._probe_slow = 0
        if to is _OPEN:
            self._open_until = now + self.config.open_s
        elif to is _CLOSED:
            self._ring.reset()

    def _succeeded(self, gen: int, outcome: int) -> None:
        """Record a success (``outcome`` is 0, or SLOW) of a call admitted in ``gen``."""
        ring = self._ring
        closed = self._gen == gen and self._state is _CLOSED
        if closed and outcome == 0 and isinstance(ring, CountRing):
            slot = ring.take_slot()
            if not ring.buf[slot]:
                # The slot already holds a success: nothing changes, so no lock. Through the
                # lock, this success path measured 3-4x slower (~1,000 vs ~280 ns per call in
                # the benchmarks/resilience.py case), past the 1/3-of-purgatory floor.
                return
            self._record(gen, 0, slot)
        else:
            self._record(gen, outcome)

    def _record(self, gen: int, outcome: int, slot: int | None = None) -> None:
        """Record an outcome of a call admitted in generation ``gen`` (into ``slot``, if the
        caller already took one)."""
        config = self.config
        with self._lock:
            if gen != self._gen:
                # Admitted before a transition: says nothing about the new state. (A slot it
                # took keeps its outcome one more round; after a reset it stays empty.)
                return
            now = self._clock()
            if self._state is _HALF_OPEN:
                self._probes_done += 1
                self._probe_failures += outcome & FAILURE
                self._probe_slow += (outcome & SLOW) >> 1
                n = config.half_open_probes
                if config.over_threshold(n, self._probe_failures, self._probe_slow):
                    self._move(_OPEN, now)
                elif self._probes_done >= n:
                    self._move(_CLOSED, now)
            elif self._state is _CLOSED:
                ring = self._ring
                ring.record(outcome, now, slot)
                calls, failures, slow = ring.totals(now)
                if calls >= config.min_calls and config.over_threshold(calls, failures, slow):
                    self._move(_OPEN, now)
        self._transitions.deliver()

    def _release(self, gen: int) -> None:
        """A call ended without a verdict (cancelled or ignored error): free its probe permit."""
        with self._lock:
            if gen == self._gen and self._state is _HALF_OPEN and self._probes_admitted > 0:
                self._probes_admitted -= 1

    def _on_error(self, gen: int, exc: BaseException, slow: int) -> None:
        outcome = self.config.outcome_of_error(exc)
        if outcome is None:
            self._release(gen)
        else:
            self._record(gen, outcome | slow)

    # -- the explicit form: for callers whose outcome is a value, not an exception ------------

    def admit(self) -> int:
        """Admit one call, or raise :class:`CircuitOpen`; returns the ticket its outcome needs.

        The explicit form, for callers that judge an outcome the decorator cannot see (an
        HTTP client counting a 503 *response* as a failure). Every admitted call must end in
        exactly one of :meth:`record_success`, :meth:`record_failure` or :meth:`release`.

        >>> breaker = CircuitBreaker("api", min_calls=1, window=CountWindow(1))
        >>> ticket = breaker.admit()
        >>> breaker.record_failure(ticket)
        >>> breaker.state
        <CircuitState.OPEN: 'open'>
        """
        gen = self._gen  # generation first, then state: see _wrap_sync
        if self._state is not _CLOSED:
            gen = self._admit()
        return gen

    def _slow(self, elapsed_s: float) -> int:
        slow_s = self.config.slow_call_s
        return SLOW if slow_s is not None and elapsed_s >= slow_s else 0

    def record_success(self, ticket: int, elapsed_s: float = 0.0) -> None:
        """The call admitted with ``ticket`` succeeded (slow if ``elapsed_s`` says so)."""
        self._succeeded(ticket, self._slow(elapsed_s))

    def record_failure(self, ticket: int, elapsed_s: float = 0.0) -> None:
        """The call admitted with ``ticket`` failed."""
        self._record(ticket, FAILURE | self._slow(elapsed_s))

    def release(self, ticket: int) -> None:
        """The call admitted with ``ticket`` ended without a verdict (frees a probe permit)."""
        self._release(ticket)

    # -- public call forms --------------------------------------------------------------------

    def reset(self) -> None:
        """Force the breaker closed with an empty window."""
        with self._lock:
            if self._state is not _CLOSED:
                self._move(_CLOSED, self._clock())
            else:
                self._ring.reset()
        self._transitions.deliver()

    def trip(self) -> None:
        """Force the breaker open for ``open_s`` (e.g. from an operator endpoint)."""
        with self._lock:
            self._move(_OPEN, self._clock())
        self._transitions.deliver()

    def call[**P, R](self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn(*args, **kwargs)`` through the breaker (sync).

        >>> CircuitBreaker("db").call(len, "abc")
        3
        """
        return self._wrap_sync(fn)(*args, **kwargs)

    def __call__[**P, R](self, fn: Callable[P, R]) -> Callable[P, R]:
        """Decorate a sync or coroutine function."""
        if is_coroutine_function(fn, "CircuitBreaker"):
            return cast("Callable[P, R]", self._wrap_async(fn))
        return self._wrap_sync(fn)

    def _wrap_sync[**P, R](self, fn: Callable[P, R]) -> Callable[P, R]:
        breaker, clock, slow_s = self, self._clock, self.config.slow_call_s
        on_error, succeeded = self._on_error, self._succeeded

        @functools.wraps(fn)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            # Generation first, then state: a transition in between leaves a stale generation,
            # whose outcome is ignored, never a probe mistaken for a closed-state call.
            gen = breaker._gen
            if breaker._state is not _CLOSED:
                gen = breaker._admit()
            started = clock() if slow_s is not None else 0.0
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                on_error(
                    gen, exc, SLOW if slow_s is not None and clock() - started >= slow_s else 0
                )
                raise
            succeeded(gen, SLOW if slow_s is not None and clock() - started >= slow_s else 0)
            return result

        return guarded

    def _wrap_async[**P, T](
        self, fn: Callable[P, Coroutine[Any, Any, T]]
    ) -> Callable[P, Coroutine[Any, Any, T]]:
        breaker, clock, slow_s = self, self._clock, self.config.slow_call_s
        on_error, succeeded = self._on_error, self._succeeded

        @functools.wraps(fn)
        async def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
            gen = breaker._gen  # generation first, then state: see _wrap_sync
            if breaker._state is not _CLOSED:
                gen = breaker._admit()
            started = clock() if slow_s is not None else 0.0
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                on_error(
                    gen, exc, SLOW if slow_s is not None and clock() - started >= slow_s else 0
                )
                raise
            succeeded(gen, SLOW if slow_s is not None and clock() - started >= slow_s else 0)
            return result

        return guarded


class BreakerRegistry:
    """Named breakers created on first use, e.g. one per remote host.

    >>> per_host = BreakerRegistry(lambda host: CircuitBreaker(host, open_s=5))
    >>> per_host.get("api.example.com") is per_host.get("api.example.com")
    True
    """

    def __init__(self, factory: Callable[[str], CircuitBreaker] | None = None) -> None:
        self._factory = factory or CircuitBreaker
        self._breakers: dict[str, CircuitBreaker] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> CircuitBreaker:
        """The breaker called ``name``, created by the factory the first time."""
        breaker = self._breakers.get(name)
        if breaker is not None:
            return breaker
        with self._lock:
            breaker = self._breakers.get(name)
            if breaker is None:
                breaker = self._factory(name)
                self._breakers[name] = breaker
            return breaker

    def __iter__(self) -> Iterator[CircuitBreaker]:
        return iter(tuple(self._breakers.values()))

    def states(self) -> dict[str, CircuitState]:
        """Name → state of every breaker, for health endpoints."""
        return {name: b.state for name, b in tuple(self._breakers.items())}
