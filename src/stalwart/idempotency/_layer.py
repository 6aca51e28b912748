# Copyright 2026 stalwart contributors
"""Thin sync and async shells that run the core's plans against a store."""

from __future__ import annotations

from stalwart.idempotency._core import (
    IdempotencyPolicy,
    JSONValue,
    Lease,
    Plan,
    Replay,
    StoreReply,
    claim_plan,
    complete_plan,
    heartbeat_plan,
    record_key,
    release_plan,
)
from stalwart.storage import AsyncStore, Create, Delete, Key, Replace, StorageError, Store

# The drivers dispatch inline rather than through a helper: one function call (and for the
# async driver one coroutine) less per store call on the hot path.


def run_plan[T](store: Store, plan: Plan[T]) -> T:
    """Drive ``plan`` with a sync store: send each result in, throw each store error in."""
    try:
        call = next(plan)
        while True:
            try:
                reply: StoreReply
                if isinstance(call, Create):
                    reply = store.create(call.key, call.data, ttl=call.ttl)
                elif isinstance(call, Replace):
                    reply = store.replace(
                        call.key, call.data, expected_version=call.expected_version, ttl=call.ttl
                    )
                elif isinstance(call, Delete):
                    reply = store.delete(call.key, expected_version=call.expected_version)
                else:
                    reply = store.get(call.key)
            except StorageError as exc:
                call = plan.throw(exc)
            else:
                call = plan.send(reply)
    except StopIteration as stop:
        result: T = stop.value  # typing.cast is a function call; an annotation is free
        return result


async def run_plan_async[T](store: AsyncStore, plan: Plan[T]) -> T:
    """Drive ``plan`` with an async store (same protocol as :func:`run_plan`)."""
    try:
        call = next(plan)
        while True:
            try:
                reply: StoreReply
                if isinstance(call, Create):
                    reply = await store.create(call.key, call.data, ttl=call.ttl)
                elif isinstance(call, Replace):
                    reply = await store.replace(
                        call.key, call.data, expected_version=call.expected_version, ttl=call.ttl
                    )
                elif isinstance(call, Delete):
                    reply = await store.delete(call.key, expected_version=call.expected_version)
                else:
                    reply = await store.get(call.key)
            except StorageError as exc:
                call = plan.throw(exc)
            else:
                call = plan.send(reply)
    except StopIteration as stop:
        result: T = stop.value  # typing.cast is a function call; an annotation is free
        return result


class Idempotency:
    """The idempotency layer over a synchronous :class:`~stalwart.storage.Store`.

    >>> from stalwart.storage import open_store
    >>> layer = Idempotency(open_store("sqlite:///:memory:?table=idem"))
    >>> key = layer.key("payments", "order-42")
    >>> lease = layer.claim(key, fingerprint="f1")
    >>> layer.complete(lease, {"charged": 100})
    >>> layer.claim(key, fingerprint="f1").result
    {'charged': 100}
    """

    __slots__ = ("policy", "store")

    def __init__(self, store: Store, policy: IdempotencyPolicy | None = None) -> None:
        self.store = store
        self.policy = policy or IdempotencyPolicy()

    def key(self, *scope: str) -> Key:
        """The record key of a scope, e.g. ``(namespace, principal, client_key)``."""
        return record_key(self.policy, *scope)

    def claim(self, key: Key, fingerprint: str | None = None) -> Lease | Replay:
        """One round trip: a :class:`Lease` to run the work, or a :class:`Replay`.

        Raises :class:`InProgress`, :class:`FingerprintMismatch` or :class:`ResultNotStored`.
        """
        return run_plan(self.store, claim_plan(self.policy, key, fingerprint))

    def complete(self, lease: Lease, result: JSONValue) -> None:
        """Store the result (fenced); :class:`LeaseLost` if another worker took over."""
        run_plan(self.store, complete_plan(self.policy, lease, result))

    def release(self, lease: Lease) -> None:
        """Forget the claim so the key can run again (fenced); :class:`LeaseLost` if stale."""
        run_plan(self.store, release_plan(lease))

    def heartbeat(self, lease: Lease) -> Lease:
        """Extend the lease; use the returned lease from now on."""
        return run_plan(self.store, heartbeat_plan(self.policy, lease))


class AsyncIdempotency:
    """The idempotency layer over an :class:`~stalwart.storage.AsyncStore` (see
    :class:`Idempotency`; the same methods, awaited)."""

    __slots__ = ("policy", "store")

    def __init__(self, store: AsyncStore, policy: IdempotencyPolicy | None = None) -> None:
        self.store = store
        self.policy = policy or IdempotencyPolicy()

    def key(self, *scope: str) -> Key:
        """The record key of a scope, e.g. ``(namespace, principal, client_key)``."""
        return record_key(self.policy, *scope)

    async def claim(self, key: Key, fingerprint: str | None = None) -> Lease | Replay:
        """See :meth:`Idempotency.claim`."""
        return await run_plan_async(self.store, claim_plan(self.policy, key, fingerprint))

    async def complete(self, lease: Lease, result: JSONValue) -> None:
        """See :meth:`Idempotency.complete`."""
        await run_plan_async(self.store, complete_plan(self.policy, lease, result))

    async def release(self, lease: Lease) -> None:
        """See :meth:`Idempotency.release`."""
        await run_plan_async(self.store, release_plan(lease))

    async def heartbeat(self, lease: Lease) -> Lease:
        """See :meth:`Idempotency.heartbeat`."""
        return await run_plan_async(self.store, heartbeat_plan(self.policy, lease))
