"""Sliding windows of call outcomes: count-based (ring buffer) and time-based (1 s buckets).

Outcomes are small ints: bit 0 = failure, bit 1 = slow. Both windows keep running totals, so
recording and reading the failure and slow rates are O(1) (amortised for the time window).
The windows are not thread-safe on their own: the breakers write every outcome that changes
a count under their lock. The one lock-free operation is :meth:`CountRing.take_slot`, which
is atomic, so a success that changes nothing can skip the lock (see ``_breaker.py``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

FAILURE = 1
SLOW = 2
# A slot never written since the last reset. Being non-zero, it sends the breaker's success path
# through the lock, which counts the call: warm-up needs no separate check on the hot path.
UNUSED = 4


@dataclass(frozen=True, slots=True)
class CountWindow:
    """Judge the breaker on the last ``size`` calls."""

    size: int = 100

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError("CountWindow size must be >= 1")


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """Judge the breaker on the calls of the last ``seconds`` seconds (1-second buckets)."""

    seconds: int = 60

    def __post_init__(self) -> None:
        if self.seconds < 1:
            raise ValueError("TimeWindow seconds must be >= 1")


class CountRing:
    """The last ``size`` outcomes in a ring buffer, with running counts.

    Slots are handed out by ``itertools.cycle(range(size))``: ``next()`` on it is one C call,
    atomic under the GIL, so two threads can never get the same slot nor skip one -- unlike
    an index read, incremented and written back, which loses an update when threads
    interleave between the read and the write.
    """

    __slots__ = ("buf", "calls", "failures", "size", "slow", "take_slot")

    def __init__(self, size: int) -> None:
        self.size = size
        self.buf = [UNUSED] * size
        # The slot of the next outcome: thread-safe and lock-free (see the class docstring).
        self.take_slot: Callable[[], int] = itertools.cycle(range(size)).__next__
        self.calls = 0
        self.failures = 0
        self.slow = 0

    def record(self, outcome: int, now: float, slot: int | None = None) -> None:  # noqa: ARG002 - same shape as TimeRing
        """Write ``outcome`` into ``slot`` (taken with :meth:`take_slot`), or the next slot."""
        i = self.take_slot() if slot is None else slot
        old = self.buf[i]
        if old == UNUSED:
            self.calls += 1
        if old != outcome:
            self.buf[i] = outcome
            self.failures += (outcome & FAILURE) - (old & FAILURE)
            self.slow += ((outcome & SLOW) - (old & SLOW)) >> 1

    def totals(self, now: float) -> tuple[int, int, int]:  # noqa: ARG002
        return self.calls, self.failures, self.slow

    def reset(self) -> None:
        self.buf[:] = [UNUSED] * self.size
        self.calls = self.failures = self.slow = 0


class TimeRing:
    """Outcomes of the last ``seconds`` seconds in per-second buckets, with running totals."""

    __slots__ = ("b_calls", "b_failures", "b_slow", "calls", "failures", "last_sec", "n", "slow")

    def __init__(self, seconds: int) -> None:
        self.n = seconds
        self.b_calls = [0] * seconds
        self.b_failures = [0] * seconds
        self.b_slow = [0] * seconds
        self.last_sec = -1
        self.calls = self.failures = self.slow = 0

    def _advance(self, sec: int) -> None:
        """Expire the buckets of the seconds between the last record and ``sec``."""
        last = self.last_sec
        if sec <= last:
            return
        # Seconds that left the window reuse their bucket: subtract them from the totals.
        start = last + 1 if sec - last <= self.n else sec - self.n + 1
        for s in range(start, sec + 1):
            b = s % self.n
            self.calls -= self.b_calls[b]
            self.failures -= self.b_failures[b]
            self.slow -= self.b_slow[b]
            self.b_calls[b] = self.b_failures[b] = self.b_slow[b] = 0
        self.last_sec = sec

    def record(self, outcome: int, now: float, slot: int | None = None) -> None:  # noqa: ARG002 - a count ring's shape
        sec = int(now)
        self._advance(sec)
        # A record older than the newest second (clock read before a concurrent record) is
        # counted in the newest bucket: it is at most a second off and never lost.
        b = self.last_sec % self.n
        self.b_calls[b] += 1
        self.calls += 1
        if outcome & FAILURE:
            self.b_failures[b] += 1
            self.failures += 1
        if outcome & SLOW:
            self.b_slow[b] += 1
            self.slow += 1

    def totals(self, now: float) -> tuple[int, int, int]:
        self._advance(int(now))
        return self.calls, self.failures, self.slow

    def reset(self) -> None:
        for bucket in (self.b_calls, self.b_failures, self.b_slow):
            bucket[:] = [0] * self.n
        self.last_sec = -1
        self.calls = self.failures = self.slow = 0
