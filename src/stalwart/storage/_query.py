# Copyright 2026 stalwart contributors
"""What every engine's ``query`` shares: argument checks, cursors and prefix bounds (pure).

A cursor is opaque to callers: URL-safe base64 of the partition it pages through and the
sort key to resume after (as the engine stores it). Every engine therefore rejects, with
:class:`~stalwart.storage.InvalidRecord`, a cursor it did not issue and a cursor of another
partition, instead of silently paging through the wrong records.

>>> cursor = encode_cursor("acct-1", "2026-12-03")
>>> decode_cursor(cursor, "acct-1")
'2026-12-03'
>>> prefix_upper_bound("ab")
'ac'
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Final

from stalwart.storage._contract import InvalidRecord, Key, validate_key

MAX_QUERY_LIMIT: Final = 1000
"""Largest page :meth:`~stalwart.storage.Store.query` returns, on every engine."""

_MAX_CODE_POINT: Final = 0x10FFFF
_SURROGATES: Final = range(0xD800, 0xE000)


def check_query(partition: str, prefix: str, limit: int) -> None:
    """Reject a query no engine can answer: the partition and the prefix obey the rules of a
    key (the prefix those of a sort key) and ``limit`` is an int from 1 to 1,000."""
    validate_key(Key(partition, prefix))
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_QUERY_LIMIT:
        raise InvalidRecord(
            f"query limit must be an int from 1 to {MAX_QUERY_LIMIT}, got {limit!r}"
        )


def encode_cursor(partition: str, after: str) -> str:
    """The cursor that resumes a query of ``partition`` after the stored sort key ``after``."""
    raw = json.dumps([partition, after], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode("ascii")


def decode_cursor(cursor: object, partition: str) -> str:
    """The stored sort key to resume after; :class:`InvalidRecord` for anything but a cursor
    :func:`encode_cursor` made for ``partition``."""
    if not isinstance(cursor, str):
        raise InvalidRecord(f"a query cursor is a str or None, got {type(cursor).__name__}")
    try:
        raw = base64.b64decode(cursor.encode("ascii"), altchars=b"-_", validate=True)
        owner, after = json.loads(raw)
    except (ValueError, TypeError, binascii.Error) as exc:  # UnicodeError is a ValueError
        raise InvalidRecord(f"malformed query cursor {cursor!r}") from exc
    if owner != partition or not isinstance(after, str):
        raise InvalidRecord("this query cursor belongs to another query")
    return after


def prefix_upper_bound(prefix: str) -> str | None:
    """The smallest string above every string that starts with ``prefix``; ``None`` when no
    string is (an empty prefix, or one of only U+10FFFF).

    Engines compare sort keys by UTF-8 bytes, which is code point order, so the bound is the
    prefix with its last code point that can grow raised by one (skipping the surrogates,
    which UTF-8 cannot hold). ``prefix + "\\uffff"`` would miss keys that continue with a
    supplementary character.

    >>> prefix_upper_bound("a\\U0010ffff")
    'b'
    >>> prefix_upper_bound("\\ud7ff") == "\\ue000"
    True
    """
    stripped = prefix.rstrip(chr(_MAX_CODE_POINT))
    if not stripped:
        return None
    bumped = ord(stripped[-1]) + 1
    if bumped in _SURROGATES:
        bumped = _SURROGATES.stop
    return stripped[:-1] + chr(bumped)
