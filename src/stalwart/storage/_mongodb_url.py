"""Parse ``mongodb://`` store URLs into pymongo client arguments (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from stalwart.storage._contract import InvalidRecord
from stalwart.storage._mongodb_plan import (
    DEFAULT_MAX_ITEM_BYTES,
    ServerChoice,
    check_max_item_bytes,
    check_server,
)

DEFAULT_DATABASE: Final = "stalwart"
DEFAULT_COLLECTION: Final = "records"
DEFAULT_TIMEOUTS_MS: Final = {
    "serverSelectionTimeoutMS": 5_000,
    "connectTimeoutMS": 5_000,
    "socketTimeoutMS": 10_000,
    "timeoutMS": 10_000,
}
"""Applied unless the URL sets the option itself (or ``timeout=<seconds>`` sets all four)."""
_STALWART_PARAMS: Final = frozenset({"collection", "create", "timeout", "max_item_bytes", "server"})
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off", ""})


@dataclass(frozen=True, slots=True)
class MongoUrl:
    """A store URL split into what pymongo gets and what stalwart keeps."""

    client_url: str
    """The URL without stalwart-only parameters, passed to ``MongoClient``."""
    database: str
    collection: str
    create: bool
    max_item_bytes: int
    client_options: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for the client: the explicit timeouts the URL did not set."""
    server: ServerChoice = "auto"
    """Whose semantics the store follows (see :class:`stalwart.storage.mongodb.MongoStore`)."""


def _flag(name: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise InvalidRecord(f"URL parameter {name}={value!r} must be true or false")


def _positive_number(name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not number > 0:
        raise InvalidRecord(f"URL parameter {name}={value!r} must be a positive number")
    return number


def parse_url(url: str) -> MongoUrl:
    """Split a store URL.

    ``mongodb://host:port/<database>?collection=<name>&create=true&timeout=5`` — ``collection``
    (default ``records``), ``create`` (create the indexes if missing; dev/test),
    ``timeout`` (seconds, sets all four client timeouts), ``max_item_bytes`` and ``server``
    (``auto``, ``mongodb`` or ``secantusdb``) are stalwart's; every other parameter is
    pymongo's and is passed through unchanged.

    >>> parse_url("mongodb://db:27017/app?collection=orders&replicaSet=rs0").collection
    'orders'
    """
    parts = urlsplit(url)
    if parts.scheme.lower() not in {"mongodb", "mongodb+srv"}:
        raise InvalidRecord(f"not a MongoDB URL: {url!r}")
    ours: dict[str, str] = {}
    theirs: list[tuple[str, str]] = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in _STALWART_PARAMS:
            ours[name] = value
        else:
            theirs.append((name, value))
    database = unquote(parts.path.lstrip("/")) or DEFAULT_DATABASE
    collection = ours.get("collection", DEFAULT_COLLECTION)
    if not collection or "$" in collection or "\x00" in collection:
        raise InvalidRecord(f"invalid collection name {collection!r}")
    options: dict[str, Any] = {}
    given = {name.lower() for name, _ in theirs}
    timeout = ours.get("timeout")
    # With timeoutMS set pymongo waits that long for server selection, overriding a
    # serverSelectionTimeoutMS the URL chose; so a URL choosing any timeout gets no default one.
    chose_timeouts = any(option.lower() in given for option in DEFAULT_TIMEOUTS_MS)
    for option, default_ms in DEFAULT_TIMEOUTS_MS.items():
        if option.lower() in given or (option == "timeoutMS" and chose_timeouts):
            continue
        if timeout is not None:
            options[option] = int(_positive_number("timeout", timeout) * 1000)
        else:
            options[option] = default_ms
    max_item_bytes = DEFAULT_MAX_ITEM_BYTES
    if "max_item_bytes" in ours:
        try:
            max_item_bytes = int(ours["max_item_bytes"])
        except ValueError as exc:
            raise InvalidRecord("max_item_bytes must be an integer") from exc
        check_max_item_bytes(max_item_bytes)
    client_url = urlunsplit(
        (parts.scheme, parts.netloc, parts.path, urlencode(theirs), parts.fragment)
    )
    return MongoUrl(
        client_url,
        database,
        collection,
        _flag("create", ours.get("create", "")),
        max_item_bytes,
        options,
        check_server(ours.get("server", "auto")),
    )
