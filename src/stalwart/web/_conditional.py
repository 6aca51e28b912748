# Copyright 2026 stalwart contributors
"""Conditional requests from record versions (RFC 9110 §13.1), framework-neutral.

A record's strong ETag is ``"<version>.<digest>"``: the digest (a SHA-256 of the key and the
version, 16 base64url characters) ties the tag to one record without showing its key; the
version in front lets a conditional write hand the client's expected version straight to the
store's optimistic lock (``replace(..., expected_version=v)``), with no read first.

- ``If-None-Match`` (GET/HEAD): weak comparison, ``*`` matches any existing record → 304.
- ``If-Match`` (a write on a conditional route): missing → 428 ``precondition-required``;
  malformed → 400 ``invalid-precondition``; only weak tags, or no tag naming this record →
  412 ``precondition-failed``; otherwise a :class:`Precondition` for the handler. A
  ``VersionConflict`` the store raises for that record then becomes 412 as well.

Errors are :class:`~stalwart.web.HttpProblem` documents with ``type`` ``about:blank``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from stalwart.storage import (
    MAX_INTEGER,
    Check,
    Delete,
    Key,
    Record,
    Replace,
    TransactionConflict,
    VersionConflict,
)
from stalwart.web._errors import HttpProblem

ANY: Final = "*"
"""``If-Match: *`` / ``If-None-Match: *``: any current representation."""

# One list element and its separator: an entity-tag (or nothing: empty elements are allowed),
# then a comma or the end. Tags may contain commas, so the list is scanned, not split.
_ELEMENT = re.compile(r'[ \t]*(?:(W/)?"([\x21\x23-\x7e\x80-\xff]*)")?[ \t]*(?:,|\Z)')
_DIGEST_BYTES: Final = 12  # 16 base64url characters: collisions between versions of a key
# only matter for the same key, where 96 bits are plenty
_MAX_VERSION_DIGITS: Final = len(str(MAX_INTEGER))


@dataclass(frozen=True, slots=True)
class EntityTag:
    """One entity-tag of a header list: its opaque tag (without quotes) and whether it is weak."""

    opaque: str
    weak: bool = False


def _digest(key: Key, version: int) -> str:
    material = f"{len(key.partition)}:{key.partition}\x00{key.sort}\x00{version}".encode()
    digest = hashlib.sha256(material).digest()[:_DIGEST_BYTES]
    return base64.urlsafe_b64encode(digest).decode("ascii")


def etag(key: Key, version: int) -> str:
    """The strong ETag (quoted) of version ``version`` of the record at ``key``.

    Stable across processes and engines; the key is not readable from it.

    >>> etag(Key("accounts", "acc-1"), 3)
    '"3.oD3Kpka0LifRSQ5t"'
    """
    return f'"{version}.{_digest(key, version)}"'


def record_etag(record: Record) -> str:
    """The strong ETag of ``record`` (see :func:`etag`)."""
    return etag(record.key, record.version)


def _version_named(key: Key, opaque: str) -> int | None:
    """The version ``opaque`` names for ``key``, or None if it is not one of its tags."""
    version, dot, digest = opaque.partition(".")
    if (
        not dot
        or not version.isascii()
        or not version.isdigit()
        or version.startswith("0")
        or len(version) > _MAX_VERSION_DIGITS  # and int() refuses over 4,300 digits
    ):
        return None
    number = int(version)
    return number if digest == _digest(key, number) else None


def parse_etags(header: str, name: str = "If-Match") -> tuple[EntityTag, ...] | Literal["*"]:
    """Parse an ``If-Match`` / ``If-None-Match`` value: ``"*"`` or the list of entity-tags.

    Empty list elements are accepted (RFC 9110 §5.6.1); an empty value is an empty list.
    Anything else raises :class:`HttpProblem` 400 ``invalid-precondition``.

    >>> [(tag.opaque, tag.weak) for tag in parse_etags('"1.a", W/"2.b",, "c,d"')]
    [('1.a', False), ('2.b', True), ('c,d', False)]
    >>> parse_etags(" * ")
    '*'
    >>> parse_etags("1.a")
    Traceback (most recent call last):
    stalwart.web._errors.HttpProblem: 400 invalid-precondition: If-Match is not "*" or a list ...
    """
    value = header.strip(" \t")
    if value == ANY:
        return ANY
    tags: list[EntityTag] = []
    position = 0
    while position < len(value):
        element = _ELEMENT.match(value, position)
        if element is None:
            raise invalid_precondition(name)
        if element[2] is not None:
            tags.append(EntityTag(element[2], weak=element[1] is not None))
        position = element.end()
    return tuple(tags)


@dataclass(frozen=True, slots=True)
class Precondition:
    """What a conditional write's ``If-Match`` asks of the record at ``key``.

    ``expected_version`` is set when the header names exactly one version of the record (the
    usual case: the client sends back the ETag it read): hand it to ``replace`` / ``delete``
    and the store's optimistic lock makes the check atomically. Otherwise (``If-Match: *``, or
    tags naming several versions) read the record, pass it to :meth:`require`, and hand the
    version of the record it returns to the store: a write in between still fails with
    ``VersionConflict``.

    >>> key = Key("accounts", "acc-1")
    >>> precondition = evaluate_if_match(etag(key, 3), key)
    >>> precondition.expected_version
    3
    >>> evaluate_if_match("*", key).require(Record(key, {}, 4)).version
    4
    """

    key: Key
    versions: frozenset[int]
    """The versions the header's strong tags name for this record (empty for ``*``)."""
    any_version: bool = False
    """``If-Match: *``: the record must exist, at any version."""

    @property
    def expected_version(self) -> int | None:
        """The one version the client expects, or None when :meth:`require` must decide."""
        if self.any_version or len(self.versions) != 1:
            return None
        return next(iter(self.versions))

    def require(self, current: Record | None) -> Record:
        """``current`` (the record as read now) if the precondition holds for it, else 412.

        Hand its ``version`` to the store: a write in between still fails the write.

        >>> key = Key("accounts", "acc-1")
        >>> evaluate_if_match("*", key).require(None)
        Traceback (most recent call last):
        stalwart.web._errors.HttpProblem: 412 precondition-failed: the resource does not exist
        """
        if current is None:
            raise precondition_failed("the resource does not exist")
        if self.any_version or current.version in self.versions:
            return current
        raise precondition_failed()

    @contextlib.contextmanager
    def conflicts_as_412(self) -> Iterator[None]:
        """Turn the store's conflicts about this record (see :meth:`failed`) into the 412
        ``HttpProblem`` while the handler runs; the FastAPI and Flask shells wrap it."""
        try:
            yield
        except (VersionConflict, TransactionConflict) as exc:
            failed = self.failed(exc)
            if failed is None:
                raise
            raise failed from exc

    def failed(self, error: BaseException) -> HttpProblem | None:
        """The 412 that ``error`` means for this precondition, or None if it is not about it.

        A ``VersionConflict`` on this record is the store saying the ETag is stale; so is a
        ``TransactionConflict`` whose failed item is a versioned write or check of it.
        """
        if isinstance(error, VersionConflict) and error.key == self.key:
            return precondition_failed()
        if (
            isinstance(error, TransactionConflict)
            and isinstance(error.operation, Replace | Delete | Check)
            and error.operation.key == self.key
            and error.operation.expected_version is not None
        ):
            return precondition_failed()
        return None


STALE: Final = "the resource has changed since the ETag was read"


def precondition_failed(detail: str = STALE) -> HttpProblem:
    """The 412 ``precondition-failed`` problem (raise it)."""
    return HttpProblem(412, "precondition-failed", detail)


def precondition_required() -> HttpProblem:
    """The 428 ``precondition-required`` problem of a conditional write without ``If-Match``."""
    return HttpProblem(
        428,
        "precondition-required",
        "this request must be conditional: send If-Match with the resource's ETag",
    )


def invalid_precondition(name: str) -> HttpProblem:
    """The 400 ``invalid-precondition`` problem of a malformed ``If-Match``/``If-None-Match``."""
    return HttpProblem(
        400,
        "invalid-precondition",
        f'{name} is not "*" or a list of entity-tags (quoted, optionally W/-prefixed)',
    )


def evaluate_if_match(header: str | None, key: Key) -> Precondition:
    """Evaluate a write's ``If-Match`` against the record at ``key``; raise 428/400/412.

    Weak tags never match (strong comparison); tags that name another record are ignored.

    >>> key = Key("accounts", "acc-1")
    >>> evaluate_if_match(None, key)
    Traceback (most recent call last):
    stalwart.web._errors.HttpProblem: 428 precondition-required: this request must be ...
    >>> evaluate_if_match(f"W/{etag(key, 3)}", key)
    Traceback (most recent call last):
    stalwart.web._errors.HttpProblem: 412 precondition-failed: weak ETags never match If-Match
    """
    if header is None:
        raise precondition_required()
    tags = parse_etags(header, "If-Match")
    if isinstance(tags, str):
        return Precondition(key, frozenset(), any_version=True)
    strong = [tag for tag in tags if not tag.weak]
    if tags and not strong:
        raise precondition_failed("weak ETags never match If-Match")
    versions = frozenset(
        version for tag in strong if (version := _version_named(key, tag.opaque)) is not None
    )
    if not versions:
        raise precondition_failed()
    return Precondition(key, versions)


@dataclass(frozen=True, slots=True)
class IfNoneMatch:
    """A GET/HEAD's ``If-None-Match``, parsed: :meth:`matches` says whether to answer 304.

    >>> record = Record(Key("accounts", "acc-1"), {}, 3)
    >>> read_if_none_match(f'"other", W/{record_etag(record)}').matches(record)
    True
    >>> read_if_none_match(None).matches(record), read_if_none_match("*").matches(None)
    (False, False)
    """

    tags: tuple[EntityTag, ...] | Literal["*"] | None
    """The header's tags, ``"*"``, or None when it was not sent."""

    def matches(self, current: Record | None) -> bool:
        """Whether ``current`` (None: absent) matches (weak comparison): answer 304."""
        if self.tags is None or current is None:
            return False
        if isinstance(self.tags, str):
            return True
        mine = record_etag(current)[1:-1]
        return any(tag.opaque == mine for tag in self.tags)


def read_if_none_match(header: str | None) -> IfNoneMatch:
    """Parse ``If-None-Match`` (None: not sent); 400 ``invalid-precondition`` if malformed."""
    return IfNoneMatch(None if header is None else parse_etags(header, "If-None-Match"))


def field_value(lines: Sequence[str]) -> str | None:
    """One field value from its field lines (RFC 9110 §5.3: joined by commas); None if absent.

    >>> field_value(['"1.a"', '"2.b"']), field_value([])
    ('"1.a", "2.b"', None)
    """
    return ", ".join(lines) if lines else None
