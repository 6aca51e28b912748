"""The API's requests stay bounded when the store fails: a deadline and a circuit breaker
(the back-office's sync store goes through the same breaker: :class:`GuardedStore`).

- :class:`RequestDeadline` (ASGI middleware) gives every HTTP request a deadline of
  ``LEDGER_REQUEST_DEADLINE_S`` (a ``stalwart.resilience`` deadline: the contention retries
  read it too and never start a wait that would cross it). Not the assistant's: its model
  calls read the caller's deadline too, and a turn has its own (``ConversationPolicy``);
  its store calls are still bounded one by one.
- :class:`GuardedAsyncStore` wraps the API's store: each call runs under that deadline (on
  its own, outside a request: the expiry sweep) and is cancelled when it passes, which
  answers :class:`~stalwart.storage.StoreUnavailable` (503 ``store-unavailable``,
  ``Retry-After``) instead of a hung request (every engine's async client is safe to
  cancel: a Redis reply is dropped, an HTTP or MongoDB request abandoned, a SQLite
  statement finishes on its thread); and each call goes through one circuit breaker
  (per process), which counts only ``StoreUnavailable`` (timeouts included) as a failure:
  conflicts and refusals are answers of a healthy store. While it is open, calls fail at once
  with ``CircuitOpen`` (503 ``circuit-open``, ``Retry-After`` until it probes); after
  ``LEDGER_STORE_BREAKER_OPEN_S`` the next calls probe, and it closes when they succeed --
  no restart.

A cancelled store call may still have reached the store (a transfer committed just before the
deadline): the client's retry with the same ``Idempotency-Key`` finds it, as after any
timeout.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Final

from starlette.types import ASGIApp, Receive, Scope, Send

from ledger.store_wrapper import AsyncStoreWrapper
from stalwart.observability import breaker_listener
from stalwart.resilience import CircuitBreaker, CountWindow, DeadlineExceeded, deadline
from stalwart.storage import (
    AsyncStore,
    JSONObject,
    Key,
    Operation,
    Page,
    Record,
    StorageError,
    Store,
    StoreUnavailable,
)

STORE_BREAKER: Final = "ledger.store"
"""The breaker's name in logs, metrics (``BreakerTransition``) and ``/readyz``."""


def store_breaker(open_s: float) -> CircuitBreaker:
    """The store's breaker: it opens when half of the last 20 calls (at least 10) failed,
    rejects for ``open_s`` seconds, then lets 2 probe calls through. Transitions are logged
    (WARNING when it opens) and counted (``BreakerTransition``)."""
    return CircuitBreaker(
        STORE_BREAKER,
        window=CountWindow(20),
        min_calls=10,
        failure_rate=0.5,
        open_s=open_s,
        half_open_probes=2,
        listeners=(breaker_listener(),),
    )


@contextmanager
def judged(breaker: CircuitBreaker) -> Iterator[None]:
    """Run the block as one call through ``breaker`` (``CircuitOpen`` while it is open): only
    ``StoreUnavailable`` counts as a failure.

    The breaker's explicit form: a conflict is the store's answer and counts as a success,
    which its decorator (an error either fails or is ignored) cannot say.
    """
    ticket = breaker.admit()
    started = time.monotonic()
    try:
        yield
    except StoreUnavailable:
        breaker.record_failure(ticket, time.monotonic() - started)
        raise
    except StorageError:
        breaker.record_success(ticket)  # a conflict: the store answered
        raise
    except BaseException:
        breaker.release(ticket)  # cancelled, or a bug: no verdict on the store
        raise
    breaker.record_success(ticket, time.monotonic() - started)


class RequestDeadline:
    """ASGI middleware: every HTTP request runs under a deadline of ``seconds``, except
    below the ``exempt`` path prefixes.

    It only sets the deadline (a context variable); what waits on the store is cut by
    :class:`GuardedAsyncStore`, so a response being sent is never interrupted halfway.
    """

    def __init__(self, app: ASGIApp, seconds: float, exempt: tuple[str, ...] = ()) -> None:
        self.app = app
        self.seconds = seconds
        self.exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.exempt):
            await self.app(scope, receive, send)
            return
        with deadline(self.seconds):
            await self.app(scope, receive, send)


class GuardedAsyncStore(AsyncStoreWrapper):
    """An :class:`~stalwart.storage.AsyncStore` whose calls are bounded by the current
    deadline (at most ``deadline_s``) and go through ``breaker``; delegates everything."""

    def __init__(self, store: AsyncStore, breaker: CircuitBreaker, deadline_s: float) -> None:
        super().__init__(store)
        self.breaker = breaker
        self.deadline_s = deadline_s

    async def around[T](
        self,
        operation: str,
        call: Callable[[], Awaitable[T]],
        batch_size: int | None = None,  # noqa: ARG002 - the hook's signature
    ) -> T:
        with judged(self.breaker):
            try:
                async with deadline(self.deadline_s):  # nested: the request's may be sooner
                    return await call()
            except DeadlineExceeded as exc:
                raise StoreUnavailable(f"the store's {operation} missed the deadline") from exc


class GuardedStore:
    """A :class:`~stalwart.storage.Store` whose calls go through ``breaker`` (the
    back-office's; it shares the API's breaker when both run in one process). No deadline: a
    sync call cannot be cut, the store client's own timeout (the URL's ``timeout=``) bounds
    it; while the breaker is open, calls fail at once."""

    def __init__(self, store: Store, breaker: CircuitBreaker) -> None:
        self.store = store
        self.breaker = breaker

    @property
    def max_transaction_items(self) -> int:
        return self.store.max_transaction_items

    @property
    def max_item_bytes(self) -> int:
        return self.store.max_item_bytes

    def get(self, key: Key) -> Record | None:
        with judged(self.breaker):
            return self.store.get(key)

    def create(self, key: Key, data: JSONObject, *, ttl: float | None = None) -> Record:
        with judged(self.breaker):
            return self.store.create(key, data, ttl=ttl)

    def replace(
        self, key: Key, data: JSONObject, *, expected_version: int, ttl: float | None = None
    ) -> Record:
        with judged(self.breaker):
            return self.store.replace(key, data, expected_version=expected_version, ttl=ttl)

    def delete(self, key: Key, *, expected_version: int | None = None) -> bool:
        with judged(self.breaker):
            return self.store.delete(key, expected_version=expected_version)

    def increment(self, key: Key, field: str, by: float = 1, *, ttl: float | None = None) -> Record:
        with judged(self.breaker):
            return self.store.increment(key, field, by, ttl=ttl)

    def query(
        self,
        partition: str,
        *,
        prefix: str = "",
        limit: int = 100,
        cursor: str | None = None,
        descending: bool = False,
    ) -> Page:
        with judged(self.breaker):
            return self.store.query(
                partition, prefix=prefix, limit=limit, cursor=cursor, descending=descending
            )

    def transact(self, operations: Sequence[Operation]) -> list[Record | None]:
        with judged(self.breaker):
            return self.store.transact(operations)

    def close(self) -> None:
        self.store.close()
