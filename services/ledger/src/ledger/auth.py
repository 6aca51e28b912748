"""API keys and tenants: ``Authorization: Bearer <key>``, each key bound to one tenant.

A key is ``ldg_<key id>_<secret>``: 8 random bytes of id (hex) and 32 random bytes of secret
(URL-safe base64). The store keeps only the SHA-256 of the secret, under
``Key("api-keys", key_id)``, with the tenant and the revocation time; the plaintext is shown
once, when the key is made.

Why SHA-256 and not argon2/bcrypt: slow, salted hashes exist to make guessing a *low-entropy*
password from its hash expensive. A 256-bit random secret cannot be guessed whatever the hash
costs, so a fast hash loses nothing, and it keeps authentication at microseconds per request
instead of the ~50 ms (by design) of a password hash on every API call. The key id makes the
lookup one ``get``; the secret is compared in constant time.

Each API process keeps the key records it verified in the last ``LEDGER_API_KEY_CACHE_S``
seconds (:class:`KeyCache`, at most 2 s): the secret is still compared on every request, but
the record is not read again, so a revoked key is refused by every worker at most that long
after ``ledger keys revoke``. The read was one store round trip in three per transfer.

>>> key_id, plaintext, data = issue_key("acme", now=0.0)
>>> parsed = parse_key(plaintext)
>>> parsed is not None and parsed[0] == key_id and key_matches(data, parsed[1])
True
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from stalwart.storage import AlreadyExists, AsyncStore, Key, Store, VersionConflict
from stalwart.web import HttpProblem

KEY_PREFIX: Final = "ldg"
KEYS_PARTITION: Final = "api-keys"
TENANTS_PARTITION: Final = "tenants"
DEVELOPMENT_TENANT: Final = "dev"
_TENANT_NAME: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_KEY_ID: Final = re.compile(r"[0-9a-f]{16}")
_REVOKE_ATTEMPTS: Final = 5
MAX_KEY_CACHE_S: Final = 2.0
"""The longest a process may keep trusting a key it verified: a revocation's upper bound."""


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A new API key: ``plaintext`` is shown once and never stored."""

    key_id: str
    tenant: str
    plaintext: str


def check_tenant_name(tenant: str) -> str:
    """``tenant`` if it is a valid tenant name (it becomes part of every storage key), else
    ``ValueError``.

    >>> check_tenant_name("acme-eu")
    'acme-eu'
    """
    if _TENANT_NAME.fullmatch(tenant) is None:
        raise ValueError(
            f"invalid tenant name {tenant!r}: 1-63 lowercase letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return tenant


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def issue_key(tenant: str, *, now: float) -> tuple[str, str, dict[str, Any]]:
    """A new key for ``tenant``: (key id, plaintext, the record's data). No I/O."""
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    data = {"tenant": tenant, "sha256": _digest(secret), "created_at": now, "revoked_at": None}
    return key_id, f"{KEY_PREFIX}_{key_id}_{secret}", data


def parse_key(presented: str) -> tuple[str, str] | None:
    """(key id, secret) of a presented key, or None when it is not shaped like one of ours."""
    prefix, _, rest = presented.partition("_")
    key_id, _, secret = rest.partition("_")
    if prefix != KEY_PREFIX or _KEY_ID.fullmatch(key_id) is None or not secret:
        return None
    return key_id, secret


def key_matches(data: dict[str, Any], secret: str) -> bool:
    """Whether ``secret`` is the one hashed in ``data`` and the key is not revoked."""
    return data.get("revoked_at") is None and hmac.compare_digest(
        str(data.get("sha256", "")), _digest(secret)
    )


def _tenant_record(tenant: str, now: float) -> dict[str, Any]:
    return {"name": tenant, "created_at": now}


# The CLI's side: sync, over a Store.


def create_key(store: Store, tenant: str, *, now: float | None = None) -> IssuedKey:
    """Make a key for ``tenant`` (creating the tenant if new); the plaintext is returned once."""
    check_tenant_name(tenant)
    at = time.time() if now is None else now
    with contextlib.suppress(AlreadyExists):  # an existing tenant gets one more key
        store.create(Key(TENANTS_PARTITION, tenant), _tenant_record(tenant, at))
    key_id, plaintext, data = issue_key(tenant, now=at)
    store.create(Key(KEYS_PARTITION, key_id), data)
    return IssuedKey(key_id, tenant, plaintext)


def revoke_key(store: Store, key_id: str, *, now: float | None = None) -> bool:
    """Revoke a key (kept, marked revoked); False when there is no such live key."""
    for _ in range(_REVOKE_ATTEMPTS):
        record = store.get(Key(KEYS_PARTITION, key_id))
        if record is None or record.data.get("revoked_at") is not None:
            return False
        revoked = {**record.data, "revoked_at": time.time() if now is None else now}
        try:
            store.replace(record.key, revoked, expected_version=record.version)
        except VersionConflict:
            continue  # revoked or changed meanwhile: look again
        return True
    return False


def ensure_development_key(store: Store) -> IssuedKey | None:
    """On a store with no API key at all, make the ``dev`` tenant and a key for it (printed by
    ``ledger serve`` in development); None when keys exist already."""
    if store.query(KEYS_PARTITION, limit=1).records:
        return None
    return create_key(store, DEVELOPMENT_TENANT)


# The API's side: async, over an AsyncStore.

UNAUTHORIZED_EXAMPLE: Final = HttpProblem(
    401,
    "unauthorized",
    "send a valid API key: Authorization: Bearer ldg_...",
    headers={"WWW-Authenticate": "Bearer"},
)


def unauthorized(detail: str) -> HttpProblem:
    """The 401 problem (with ``WWW-Authenticate: Bearer``)."""
    return HttpProblem(401, "unauthorized", detail, headers={"WWW-Authenticate": "Bearer"})


@dataclass(slots=True)
class KeyCache:
    """The API key records one process verified in the last ``ttl_s`` seconds, by key id
    (only live keys; at most ``max_keys``, the oldest dropped first). ``ttl_s=0``: none kept.

    >>> cache = KeyCache(ttl_s=1.0, clock=lambda: 0.0)
    >>> cache.put("k1", {"tenant": "acme"}); cache.get("k1")
    {'tenant': 'acme'}
    >>> cache.clock = lambda: 1.0
    >>> cache.get("k1") is None
    True
    """

    ttl_s: float
    max_keys: int = 10_000
    clock: Callable[[], float] = time.monotonic
    _records: dict[str, tuple[dict[str, Any], float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0 <= self.ttl_s <= MAX_KEY_CACHE_S:
            raise ValueError(f"ttl_s must be 0 to {MAX_KEY_CACHE_S} seconds, got {self.ttl_s}")

    def get(self, key_id: str) -> dict[str, Any] | None:
        """The key's record data if it was verified less than ``ttl_s`` ago."""
        entry = self._records.get(key_id)
        if entry is None:
            return None
        data, expires_at = entry
        if self.clock() < expires_at:
            return data
        self._records.pop(key_id, None)
        return None

    def put(self, key_id: str, data: dict[str, Any]) -> None:
        if self.ttl_s <= 0:
            return
        self._records.pop(key_id, None)  # re-inserted last: the newest
        if len(self._records) >= self.max_keys:
            self._records.pop(next(iter(self._records)), None)
        self._records[key_id] = (data, self.clock() + self.ttl_s)


async def authenticate(
    store: AsyncStore, presented: str | None, cache: KeyCache | None = None
) -> str:
    """The tenant of the bearer key ``presented``, else a 401 :class:`HttpProblem`.

    One ``get`` by key id (none while ``cache`` holds the key); unknown, malformed and revoked
    keys get the same answer.
    """
    if not presented:
        raise unauthorized("send an API key: Authorization: Bearer ldg_...")
    parsed = parse_key(presented)
    if parsed is None:
        raise unauthorized("the API key is not valid")
    key_id, secret = parsed
    data = cache.get(key_id) if cache is not None else None
    if data is None:
        record = await store.get(Key(KEYS_PARTITION, key_id))
        data = record.data if record is not None else None
        if data is not None and cache is not None and key_matches(data, secret):
            cache.put(key_id, data)
    if data is None or not key_matches(data, secret):
        raise unauthorized("the API key is not valid")
    return str(data["tenant"])


async def list_tenants(store: AsyncStore) -> list[str]:
    """Every tenant's name (those ``create_key`` made), in name order."""
    names: list[str] = []
    cursor: str | None = None
    while True:
        page = await store.query(TENANTS_PARTITION, limit=100, cursor=cursor)
        names += [record.key.sort for record in page.records]
        cursor = page.cursor
        if cursor is None:
            return names


__all__ = [
    "DEVELOPMENT_TENANT",
    "MAX_KEY_CACHE_S",
    "UNAUTHORIZED_EXAMPLE",
    "IssuedKey",
    "KeyCache",
    "authenticate",
    "check_tenant_name",
    "create_key",
    "ensure_development_key",
    "issue_key",
    "key_matches",
    "list_tenants",
    "parse_key",
    "revoke_key",
    "unauthorized",
]
