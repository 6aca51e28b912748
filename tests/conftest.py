"""The engine x mode matrix of the library's tests. The servers and ``store_url_factory`` live in
``server_fixtures.py`` (a plugin the root ``conftest.py`` loads, shared with the ledger's tests);
``unique_name`` is re-exported for the tests that import it from here."""

from __future__ import annotations

from server_fixtures import unique_name

ENGINES = ("sqlite", "redis", "dynamodb", "mongodb")
MODES = ("sync", "async")

__all__ = ["ENGINES", "MODES", "unique_name"]
