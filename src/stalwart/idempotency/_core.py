# Copyright 2026 stalwart contributors
"""The idempotency state machine, written once as pure code.

Every store interaction is a *plan*: a generator that yields the contract's operation objects
(``Create``, ``Replace``, ``Delete`` or :class:`Get`) and receives each result back (or has the
store's error thrown into it). The sync and async drivers in ``_layer.py`` only execute those
operations, so claim, takeover, completion, release and heartbeat logic exists exactly once.

Record layout (the record's ``data``)::

    {"status": "IN_PROGRESS" | "COMPLETED", "owner": <fencing token>,
     "lease_expires_at": <epoch s>, "fingerprint": <sha256 hex> | null, "result": <JSON>,
     "result_not_stored": <reason> (only when the work ran but its result could not be stored)}
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import secrets
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from stalwart.idempotency._errors import (
    FingerprintMismatch,
    InProgress,
    InvalidIdempotencyKey,
    LeaseLost,
    ResultNotStored,
)
from stalwart.storage import (
    MAX_TTL_S,
    AlreadyExists,
    Create,
    Delete,
    JSONObject,
    Key,
    Record,
    Replace,
    VersionConflict,
)

logger = logging.getLogger("stalwart.idempotency")

MAX_KEY_CHARS: Final = 255
"""The longest idempotency key a client may choose (an HTTP header, a function's key)."""


def check_key(key: object, what: str) -> str:
    """``key`` if it is a str of 1 to :data:`MAX_KEY_CHARS` characters, else
    :class:`InvalidIdempotencyKey` saying why (``what`` names the key in the message)."""
    if not isinstance(key, str):
        raise InvalidIdempotencyKey(f"{what} must be a str, got {type(key).__name__}")
    if not key:
        raise InvalidIdempotencyKey(f"{what} is empty")
    if len(key) > MAX_KEY_CHARS:
        raise InvalidIdempotencyKey(
            f"{what} is {len(key)} characters; at most {MAX_KEY_CHARS} allowed"
        )
    return key


type JSONValue = Any
"""Any value ``json.dumps`` accepts (dict, list, str, int, float, bool, None)."""


class Status(StrEnum):
    """Life cycle of one idempotency record."""

    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"


@dataclass(frozen=True, slots=True)
class IdempotencyPolicy:
    """How long records and leases live.

    Lease expiry is judged with ``clock`` on the caller's side, so workers sharing a store need
    roughly synchronised clocks (seconds of skew only shorten or lengthen a lease by as much).

    >>> IdempotencyPolicy(retention=3600, lease=30).lease
    30
    """

    retention: float = 24 * 3600.0
    """Seconds a record (in progress or completed) is kept; after that the key runs again."""
    lease: float = 60.0
    """Seconds an execution may run before a duplicate may take the key over."""
    key_prefix: str = "idempotency"
    """Partition prefix of every record this layer writes."""
    clock: Callable[[], float] = time.time
    """Epoch seconds, used for leases (inject a fake clock in tests)."""

    def __post_init__(self) -> None:
        if not self.retention > 0 or not self.lease > 0:
            raise ValueError("retention and lease must be positive numbers of seconds")
        if self.retention > MAX_TTL_S:
            raise ValueError(
                f"retention is at most {MAX_TTL_S:.0f} seconds (100 years, the stores' longest "
                f"ttl), got {self.retention!r}"
            )
        if self.lease > self.retention:
            raise ValueError("the lease cannot outlive the record's retention")


@dataclass(frozen=True, slots=True)
class Lease:
    """Proof that this caller owns the key's execution. Pass it to complete/release/heartbeat.

    ``version`` is the fencing token the store checks: any write by another owner bumps it.
    """

    key: Key
    owner: str
    version: int
    lease_expires_at: float
    fingerprint: str | None
    took_over: bool = False
    """True when this lease replaced an expired one (a previous worker probably crashed)."""


@dataclass(frozen=True, slots=True)
class Replay:
    """The key already completed: ``result`` is what the first execution stored."""

    key: Key
    result: JSONValue


@dataclass(frozen=True, slots=True)
class Get:
    """Read one record (used only if an engine's AlreadyExists carries no current record)."""

    key: Key


type StoreCall = Get | Create | Replace | Delete
type StoreReply = Record | bool | None
type Plan[T] = Generator[StoreCall, StoreReply, T]


# ---------------------------------------------------------------------------------------------
# Keys and fingerprints
# ---------------------------------------------------------------------------------------------


# One encoder for every call: json.dumps with non-default options builds a new one each time.
_CANONICAL: Final = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def canonical_json(value: JSONValue) -> str:
    """Deterministic JSON (sorted keys, no spaces) used for keys and fingerprints.

    >>> canonical_json({"b": 1, "a": [1.5, None]})
    '{"a":[1.5,null],"b":1}'
    """
    return _CANONICAL.encode(value)


def sha256_hex(text: str | bytes) -> str:
    """SHA-256 of ``text`` (UTF-8 encoded when a str) as lowercase hex."""
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


def canonical_sha256(value: JSONValue) -> str:
    """``sha256_hex(canonical_json(value))``: the digest behind scope keys and fingerprints.

    >>> canonical_sha256({"b": 1, "a": 2}) == sha256_hex('{"a":2,"b":1}')
    True
    """
    return sha256_hex(canonical_json(value))


def record_key(policy: IdempotencyPolicy, *scope: str) -> Key:
    """The store key of one idempotency scope (namespace, principal, ..., client key).

    The scope parts are hashed, so keys of any length and character set fit every engine, and
    the parts cannot run into each other (they are JSON-encoded as a list first).

    >>> record_key(IdempotencyPolicy(), "payments", "tenant-1", "abc").partition[:12]
    'idempotency:'
    """
    return Key(f"{policy.key_prefix}:{canonical_sha256(scope)}")


def new_owner() -> str:
    """A fresh, unguessable owner token for one claim."""
    return secrets.token_hex(12)


# ---------------------------------------------------------------------------------------------
# Pure decisions
# ---------------------------------------------------------------------------------------------

FIELD_STATUS: Final = "status"
FIELD_OWNER: Final = "owner"
FIELD_LEASE: Final = "lease_expires_at"
FIELD_FINGERPRINT: Final = "fingerprint"
FIELD_RESULT: Final = "result"
FIELD_NOT_STORED: Final = "result_not_stored"
"""Present (the reason) on a record completed without its result: see :func:`not_stored_plan`."""


def in_progress_data(owner: str, lease_expires_at: float, fingerprint: str | None) -> JSONObject:
    """The data of a freshly claimed (or heartbeated) record."""
    return {
        FIELD_STATUS: Status.IN_PROGRESS.value,
        FIELD_OWNER: owner,
        FIELD_LEASE: lease_expires_at,
        FIELD_FINGERPRINT: fingerprint,
    }


def completed_data(lease: Lease, result: JSONValue) -> JSONObject:
    """The data of a completed record; the fingerprint is kept so retries still validate."""
    return {
        FIELD_STATUS: Status.COMPLETED.value,
        FIELD_OWNER: lease.owner,
        FIELD_LEASE: lease.lease_expires_at,
        FIELD_FINGERPRINT: lease.fingerprint,
        FIELD_RESULT: result,
    }


@dataclass(frozen=True, slots=True)
class _Absent:
    pass


@dataclass(frozen=True, slots=True)
class _Busy:
    retry_after: float


@dataclass(frozen=True, slots=True)
class _TakeOver:
    version: int


@dataclass(frozen=True, slots=True)
class _Mismatch:
    pass


@dataclass(frozen=True, slots=True)
class _NotStored:
    reason: str


type Decision = _Absent | _Busy | _TakeOver | _Mismatch | _NotStored | Replay


def retry_after(lease_expires_at: float, now: float) -> float:
    """Seconds until a lease expires, at least one (for a Retry-After header)."""
    return float(max(1, math.ceil(lease_expires_at - now)))


def decide(key: Key, current: Record | None, fingerprint: str | None, now: float) -> Decision:
    """What to do about an existing record when our claim found it.

    The fingerprint is checked first: a key reused with another payload is a mismatch whatever
    state the first execution is in.
    """
    if current is None:
        return _Absent()
    data = current.data
    stored_fingerprint = data.get(FIELD_FINGERPRINT)
    if (
        fingerprint is not None
        and stored_fingerprint is not None
        and (stored_fingerprint != fingerprint)
    ):
        return _Mismatch()
    if data.get(FIELD_STATUS) == Status.COMPLETED:
        if FIELD_NOT_STORED in data:
            return _NotStored(str(data[FIELD_NOT_STORED]))
        return Replay(key, data.get(FIELD_RESULT))
    lease_expires_at = float(data.get(FIELD_LEASE, 0.0))
    if lease_expires_at > now:
        return _Busy(retry_after(lease_expires_at, now))
    return _TakeOver(current.version)


# ---------------------------------------------------------------------------------------------
# Typed single-operation plans
# ---------------------------------------------------------------------------------------------


def _create(key: Key, data: JSONObject, ttl: float) -> Plan[Record]:
    reply = yield Create(key, data, ttl)
    assert isinstance(reply, Record)
    return reply


def _replace(key: Key, data: JSONObject, version: int, ttl: float) -> Plan[Record]:
    reply = yield Replace(key, data, version, ttl)
    assert isinstance(reply, Record)
    return reply


def _get(key: Key) -> Plan[Record | None]:
    reply = yield Get(key)
    assert reply is None or isinstance(reply, Record)
    return reply


def _delete(key: Key, version: int) -> Plan[bool]:
    reply = yield Delete(key, version)
    assert isinstance(reply, bool)
    return reply


# ---------------------------------------------------------------------------------------------
# The plans: claim, complete, release, heartbeat
# ---------------------------------------------------------------------------------------------

_MAX_CLAIM_ATTEMPTS: Final = 3


def claim_plan(
    policy: IdempotencyPolicy, key: Key, fingerprint: str | None
) -> Plan[Lease | Replay]:
    """Claim ``key``: one create on the happy path, and on a duplicate the store's own answer.

    Returns a :class:`Lease` (run the work, then complete or release) or a :class:`Replay`;
    raises :class:`InProgress`, :class:`FingerprintMismatch` or :class:`ResultNotStored`.
    """
    owner = new_owner()
    lease_expires_at = policy.clock() + policy.lease
    try:
        record = yield from _create(
            key, in_progress_data(owner, lease_expires_at, fingerprint), policy.retention
        )
    except AlreadyExists as exc:
        current = exc.current
        if current is None:  # an engine that could not return it: read it
            current = yield from _get(key)
        return (yield from _resolve_plan(policy, key, fingerprint, owner, current))
    return Lease(key, owner, record.version, lease_expires_at, fingerprint)


def _resolve_plan(
    policy: IdempotencyPolicy, key: Key, fingerprint: str | None, owner: str, current: Record | None
) -> Plan[Lease | Replay]:
    """The key was taken: replay, refuse, or take an expired lease over (at most once)."""
    tried_takeover = False
    for _attempt in range(_MAX_CLAIM_ATTEMPTS):
        now = policy.clock()
        decision = decide(key, current, fingerprint, now)
        if isinstance(decision, Replay):
            return decision
        if isinstance(decision, _Mismatch):
            raise FingerprintMismatch(key)
        if isinstance(decision, _NotStored):
            raise ResultNotStored(key, decision.reason)
        if isinstance(decision, _Busy):
            raise InProgress(key, decision.retry_after)
        if isinstance(decision, _TakeOver) and tried_takeover:
            # We lost one takeover race already: the winner is running now.
            raise InProgress(key, retry_after(now + policy.lease, now))
        lease_expires_at = now + policy.lease
        data = in_progress_data(owner, lease_expires_at, fingerprint)
        try:
            if isinstance(decision, _TakeOver):
                tried_takeover = True
                record = yield from _replace(key, data, decision.version, policy.retention)
                logger.warning(
                    "idempotency lease on %s expired; taken over by owner %s", key.partition, owner
                )
            else:  # released or expired between our two round trips
                record = yield from _create(key, data, policy.retention)
        except AlreadyExists as exc:
            current = exc.current if exc.current is not None else (yield from _get(key))
            continue
        except VersionConflict as exc:
            current = exc.current
            continue
        return Lease(
            key,
            owner,
            record.version,
            lease_expires_at,
            fingerprint,
            took_over=isinstance(decision, _TakeOver),
        )
    raise InProgress(key, policy.lease)


def _log_lease_lost(action: str, lease: Lease, current: Record | None) -> None:
    # An error, not an exception trace: a taken-over lease is an expected outcome of a crash
    # or a stall, and the caller gets LeaseLost to act on.
    found = "nothing" if current is None else f"version {current.version}"
    logger.error(
        "idempotency %s refused for %s: the lease of owner %s (version %d) was taken over "
        "(found %s)",
        action,
        lease.key.partition,
        lease.owner,
        lease.version,
        found,
    )


def complete_plan(policy: IdempotencyPolicy, lease: Lease, result: JSONValue) -> Plan[Record]:
    """Store ``result`` under the lease, fenced on its version; :class:`LeaseLost` if stale."""
    try:
        return (
            yield from _replace(
                lease.key, completed_data(lease, result), lease.version, policy.retention
            )
        )
    except VersionConflict as exc:
        _log_lease_lost("completion", lease, exc.current)
        raise LeaseLost(lease.key, lease.owner, result) from exc


def not_stored_plan(policy: IdempotencyPolicy, lease: Lease, reason: str) -> Plan[Record]:
    """Complete the record without a result (work that ran but whose result cannot be stored),
    so the work never runs again while the record lives: a duplicate gets
    :class:`ResultNotStored`. Fenced like :func:`complete_plan`."""
    data = completed_data(lease, None)
    data[FIELD_NOT_STORED] = reason
    try:
        return (yield from _replace(lease.key, data, lease.version, policy.retention))
    except VersionConflict as exc:
        _log_lease_lost("completion", lease, exc.current)
        raise LeaseLost(lease.key, lease.owner) from exc


def release_plan(lease: Lease) -> Plan[None]:
    """Delete the claim so the key can run again, fenced on the lease's version."""
    try:
        yield from _delete(lease.key, lease.version)
    except VersionConflict as exc:
        _log_lease_lost("release", lease, exc.current)
        raise LeaseLost(lease.key, lease.owner) from exc


def heartbeat_plan(policy: IdempotencyPolicy, lease: Lease) -> Plan[Lease]:
    """Extend the lease by ``policy.lease`` seconds; returns the new lease (new version)."""
    lease_expires_at = policy.clock() + policy.lease
    data = in_progress_data(lease.owner, lease_expires_at, lease.fingerprint)
    try:
        record = yield from _replace(lease.key, data, lease.version, policy.retention)
    except VersionConflict as exc:
        _log_lease_lost("heartbeat", lease, exc.current)
        raise LeaseLost(lease.key, lease.owner) from exc
    return Lease(
        lease.key, lease.owner, record.version, lease_expires_at, lease.fingerprint, lease.took_over
    )
