"""A retry budget shared by many call sites: a token bucket in the spirit of the AWS SDKs.

Every retry withdraws tokens (more for timeouts); successes put a few back. When the bucket is
empty, retrying stops at once and the caller's error surfaces: during an outage the fleet stops
multiplying its load by the number of attempts.
"""

from __future__ import annotations

import threading


class RetryBudget:
    """Token bucket bounding the retries of every policy that shares it.

    Defaults are the AWS SDK "standard" retry quota: 500 tokens, a retry costs 5, a retry after
    a timeout costs 10, a success without retry refunds 1 and a success after retries refunds the
    cost of its last retry.

    >>> budget = RetryBudget(capacity=10, retry_cost=5)
    >>> budget.try_withdraw(ConnectionError()), budget.try_withdraw(ConnectionError())
    (True, True)
    >>> budget.try_withdraw(ConnectionError())  # empty: fail fast
    False
    """

    __slots__ = ("_lock", "_tokens", "capacity", "retry_cost", "success_refund", "timeout_cost")

    def __init__(
        self,
        capacity: int = 500,
        *,
        retry_cost: int = 5,
        timeout_cost: int = 10,
        success_refund: int = 1,
    ) -> None:
        if capacity <= 0 or retry_cost <= 0 or timeout_cost <= 0 or success_refund < 0:
            raise ValueError("capacity and costs must be positive, the refund non-negative")
        self.capacity = capacity
        self.retry_cost = retry_cost
        self.timeout_cost = timeout_cost
        self.success_refund = success_refund
        self._tokens = capacity
        self._lock = threading.Lock()

    @property
    def tokens(self) -> int:
        """Tokens left in the bucket."""
        return self._tokens

    def cost_of(self, cause: BaseException | None) -> int:
        """Tokens one retry after ``cause`` costs (timeouts cost more: they held resources)."""
        return self.timeout_cost if isinstance(cause, TimeoutError) else self.retry_cost

    def try_withdraw(self, cause: BaseException | None) -> bool:
        """Take the cost of one retry after ``cause``; ``False`` (nothing taken) when too few."""
        cost = self.cost_of(cause)
        with self._lock:
            if self._tokens < cost:
                return False
            self._tokens -= cost
            return True

    def refund(self, amount: int) -> None:
        """Give back ``amount`` tokens, never above capacity."""
        # Read without the lock first: in steady state the bucket is full and a success must
        # not pay for a lock round.
        if amount <= 0 or self._tokens >= self.capacity:
            return
        with self._lock:
            self._tokens = min(self.capacity, self._tokens + amount)
