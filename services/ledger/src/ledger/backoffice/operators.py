"""Back-office operators: people who log in with a password, each acting for ONE tenant.

An operator is ``Key("operators", username)`` with an argon2id hash of the password, a role
(``viewer`` reads; ``operator`` also posts, voids, adjusts and imports) and a tenant, like an
API key. Failed logins are counted in ``Key("operator-failures", username)`` with the store's
atomic ``increment`` (exact under any number of workers); the counter expires
``lockout_minutes`` after the last failure, and a success deletes it.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ledger.auth import check_tenant_name
from stalwart.storage import Key, Store

OPERATORS_PARTITION: Final = "operators"
FAILURES_PARTITION: Final = "operator-failures"
MIN_PASSWORD_LENGTH: Final = 12
_USERNAME: Final = re.compile(r"[a-z0-9][a-z0-9._@-]{0,63}")
HASHER = PasswordHasher()
"""argon2id with the library's defaults (RFC 9106's second recommendation: 64 MiB, 3 passes),
~0.1-1 s per hash by design. Tests swap in a cheaper one."""


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"


@dataclass(frozen=True, slots=True)
class Operator:
    username: str
    tenant: str
    role: Role

    @property
    def can_write(self) -> bool:
        """Whether this operator may post, void, adjust and import."""
        return self.role is Role.OPERATOR


class LoginRefused(Exception):
    """A login that did not succeed; ``locked`` when the lockout is why."""

    def __init__(self, message: str, *, locked: bool = False) -> None:
        super().__init__(message)
        self.locked = locked


def check_username(username: str) -> str:
    """``username`` if valid (lowercase letters, digits, ``. _ @ -``), else ``ValueError``."""
    if _USERNAME.fullmatch(username) is None:
        raise ValueError(
            f"invalid username {username!r}: 1-64 lowercase letters, digits, '.', '_', '@' "
            "or '-', starting with a letter or digit"
        )
    return username


def create_operator(
    store: Store, username: str, password: str, *, tenant: str, role: Role
) -> Operator:
    """Store a new operator (``AlreadyExists`` if the username is taken; ``ValueError`` for a
    bad username, tenant or a password shorter than :data:`MIN_PASSWORD_LENGTH`)."""
    check_username(username)
    check_tenant_name(tenant)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    data = {
        "tenant": tenant,
        "role": role.value,
        "hash": HASHER.hash(password),
        "created_at": time.time(),
    }
    store.create(Key(OPERATORS_PARTITION, username), data)
    return Operator(username, tenant, role)


def find_operator(store: Store, username: str) -> Operator | None:
    """The operator named ``username`` (None when there is none)."""
    record = store.get(Key(OPERATORS_PARTITION, username))
    if record is None:
        return None
    return Operator(username, str(record.data["tenant"]), Role(record.data["role"]))


def _password_matches(stored_hash: str | None, password: str) -> bool:
    if stored_hash is None:
        HASHER.hash(password)  # an unknown name costs what a wrong password costs
        return False
    try:
        return HASHER.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def log_in(
    store: Store, username: str, password: str, *, max_failures: int, lockout_s: float
) -> Operator:
    """The operator if ``password`` is theirs, else :class:`LoginRefused`.

    After ``max_failures`` failures in a row the name is locked for ``lockout_s`` seconds
    (even the right password is refused). The attempt is counted BEFORE the password is
    checked, so parallel guesses cannot slip past the limit between a check and a count.
    """
    if _USERNAME.fullmatch(username) is None:
        raise LoginRefused("wrong username or password")
    failures = Key(FAILURES_PARTITION, username)
    counted = store.get(failures)
    if counted is not None and counted.data.get("count", 0) >= max_failures:
        raise LoginRefused("too many failed attempts: try again later", locked=True)
    attempt = int(store.increment(failures, "count", ttl=lockout_s).data["count"])
    if attempt > max_failures:
        raise LoginRefused("too many failed attempts: try again later", locked=True)
    record = store.get(Key(OPERATORS_PARTITION, username))
    stored_hash = str(record.data["hash"]) if record is not None else None
    if record is None or not _password_matches(stored_hash, password):
        if attempt == max_failures:
            raise LoginRefused("too many failed attempts: try again later", locked=True)
        raise LoginRefused("wrong username or password")
    store.delete(failures)
    return Operator(username, str(record.data["tenant"]), Role(record.data["role"]))


__all__ = [
    "HASHER",
    "MIN_PASSWORD_LENGTH",
    "LoginRefused",
    "Operator",
    "Role",
    "check_username",
    "create_operator",
    "find_operator",
    "log_in",
]
