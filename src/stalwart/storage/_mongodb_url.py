"""Parse ``mongodb://`` store URLs into pymongo client arguments (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import unquote, unquote_plus, urlsplit, urlunsplit

from pymongo.errors import ConfigurationError
from pymongo.uri_parser import split_options

from stalwart.storage._contract import InvalidRecord, StoreConfigurationError
from stalwart.storage._mongodb_plan import (
    DEFAULT_MAX_ITEM_BYTES,
    ServerChoice,
    check_max_item_bytes,
    check_server,
)
from stalwart.storage._url import (
    flag,
    positive_number,
    split_url_options,
    unknown_options,
    whole_number,
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


def _client_query(query: str) -> str:
    """The URL query without stalwart's options, as written: pymongo parses some values
    before unquoting them (``readPreferenceTags=dc:ny``), so they are not re-encoded. Each
    option is checked by pymongo's documented URI-option parser, one at a time first so that
    an error names the option (pymongo's own message does not)."""
    pieces = [
        piece
        for piece in query.split("&")
        if piece and unquote_plus(piece.partition("=")[0]) not in _STALWART_PARAMS
    ]
    for piece in pieces:
        name = unquote_plus(piece.partition("=")[0])
        try:
            split_options(piece, validate=True, warn=False)
        except ConfigurationError as exc:
            raise unknown_options(
                "mongodb", [name], _STALWART_PARAMS, also="and pymongo's URI options"
            ) from exc
        except (ValueError, TypeError) as exc:
            raise StoreConfigurationError(f"bad mongodb URL option {name}: {exc}") from exc
    client_query = "&".join(pieces)
    if client_query:
        try:
            split_options(client_query, validate=True, warn=False)
        except (ConfigurationError, ValueError, TypeError) as exc:
            raise StoreConfigurationError(f"bad mongodb URL options: {exc}") from exc
    return client_query


def parse_url(url: str) -> MongoUrl:
    """Split a store URL.

    ``mongodb://host:port/<database>?collection=<name>&create=true&timeout=5`` — ``collection``
    (default ``records``), ``create`` (create the indexes if missing; dev/test),
    ``timeout`` (seconds, sets all four client timeouts), ``max_item_bytes`` and ``server``
    (``auto``, ``mongodb`` or ``secantusdb``) are stalwart's; every other parameter is
    pymongo's and is passed through unchanged, once pymongo's URI parser accepts it (an
    unknown option or a bad value is :class:`StoreConfigurationError`, like a bad stalwart
    option).

    >>> parse_url("mongodb://db:27017/app?collection=orders&replicaSet=rs0").collection
    'orders'
    """
    parts = urlsplit(url)
    if parts.scheme.lower() not in {"mongodb", "mongodb+srv"}:
        raise StoreConfigurationError(f"not a MongoDB URL (scheme {parts.scheme!r})")
    ours, theirs = split_url_options(url, _STALWART_PARAMS, engine="mongodb")
    client_query = _client_query(parts.query)
    database = unquote(parts.path.lstrip("/")) or DEFAULT_DATABASE
    collection = ours.get("collection", DEFAULT_COLLECTION)
    if not collection or "$" in collection or "\x00" in collection:
        raise StoreConfigurationError(f"invalid collection name {collection!r}")
    options: dict[str, Any] = {}
    given = {name.lower() for name, _ in theirs}
    timeout_ms = (
        int(positive_number("timeout", ours["timeout"]) * 1000) if "timeout" in ours else None
    )
    # With timeoutMS set pymongo waits that long for server selection, overriding a
    # serverSelectionTimeoutMS the URL chose; so a URL choosing any timeout gets no default one.
    chose_timeouts = any(option.lower() in given for option in DEFAULT_TIMEOUTS_MS)
    for option, default_ms in DEFAULT_TIMEOUTS_MS.items():
        if option.lower() in given or (option == "timeoutMS" and chose_timeouts):
            continue
        if timeout_ms is not None:
            options[option] = timeout_ms
        else:
            options[option] = default_ms
    max_item_bytes = DEFAULT_MAX_ITEM_BYTES
    if "max_item_bytes" in ours:
        max_item_bytes = whole_number("max_item_bytes", ours["max_item_bytes"])
        try:
            check_max_item_bytes(max_item_bytes)
        except InvalidRecord as exc:
            raise StoreConfigurationError(f"URL option {exc}") from exc
    client_url = urlunsplit((parts.scheme, parts.netloc, parts.path, client_query, parts.fragment))
    return MongoUrl(
        client_url,
        database,
        collection,
        flag("create", ours.get("create") or "false"),
        max_item_bytes,
        options,
        check_server(ours.get("server", "auto")),
    )
