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
from dataclasses import dataclass
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


async def authenticate(store: AsyncStore, presented: str | None) -> str:
    """The tenant of the bearer key ``presented``, else a 401 :class:`HttpProblem`.

    One ``get`` by key id; unknown, malformed and revoked keys get the same answer.
    """
    if not presented:
        raise unauthorized("send an API key: Authorization: Bearer ldg_...")
    parsed = parse_key(presented)
    if parsed is None:
        raise unauthorized("the API key is not valid")
    key_id, secret = parsed
    record = await store.get(Key(KEYS_PARTITION, key_id))
    if record is None or not key_matches(record.data, secret):
        raise unauthorized("the API key is not valid")
    return str(record.data["tenant"])


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
    "UNAUTHORIZED_EXAMPLE",
    "IssuedKey",
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
