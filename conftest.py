"""Root of both test suites (``tests/`` and ``services/ledger/tests/``): the real servers are
a plugin, so each starts at most once per ``uv run pytest``."""

pytest_plugins = ["server_fixtures"]
