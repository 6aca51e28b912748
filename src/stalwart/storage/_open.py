"""Open a store from a URL: ``sqlite:///path``, ``redis://``, ``dynamodb://``, ``mongodb://``."""

from __future__ import annotations

import importlib
from typing import Any, Final
from urllib.parse import urlsplit

from stalwart.storage._contract import AsyncStore, Clock, Store
from stalwart.storage._url import unknown_scheme

_ENGINE_MODULES: Final = {
    "sqlite": "stalwart.storage.sqlite",
    "redis": "stalwart.storage.redis",
    "rediss": "stalwart.storage.redis",
    "unix": "stalwart.storage.redis",  # redis-py's scheme for a Unix socket
    "dynamodb": "stalwart.storage.dynamodb",
    "mongodb": "stalwart.storage.mongodb",
    "mongodb+srv": "stalwart.storage.mongodb",
}


def _engine_module(url: str) -> object:
    scheme = urlsplit(url).scheme.lower()
    module_name = _ENGINE_MODULES.get(scheme)
    if module_name is None:
        raise unknown_scheme(scheme, _ENGINE_MODULES)
    return importlib.import_module(module_name)


def open_store(url: str, *, clock: Clock | None = None) -> Store:
    """Open a synchronous store described by ``url``.

    ``clock`` (epoch seconds) replaces the wall clock for every expiry decision; every engine's
    ``store_from_url(url, *, clock=...)`` accepts it. Tests use it to move time.

    An unknown scheme, an unknown URL option or a malformed value raises
    :class:`StoreConfigurationError` (a ``ValueError``), whose message lists what is known.

    >>> store = open_store("sqlite:///:memory:?table=demo")
    >>> store.create(Key("acct-1", "balance"), {"cents": 0}).version
    1
    """
    module: Any = _engine_module(url)
    store: Store = (
        module.store_from_url(url) if clock is None else module.store_from_url(url, clock=clock)
    )
    return store


def open_async_store(url: str, *, clock: Clock | None = None) -> AsyncStore:
    """Open an asynchronous store described by ``url`` (same URL forms and ``clock`` as
    :func:`open_store`)."""
    module: Any = _engine_module(url)
    store: AsyncStore = (
        module.async_store_from_url(url)
        if clock is None
        else module.async_store_from_url(url, clock=clock)
    )
    return store
