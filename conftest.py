"""Root of both test suites (``tests/`` and ``services/ledger/tests/``): the real servers are
a plugin, so each starts at most once per ``uv run pytest``."""

import pytest

pytest_plugins = ["server_fixtures"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The ``slow`` tests first: xdist hands tests out in this order, and a long test handed out
    last runs alone at the end while the other workers wait."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable
