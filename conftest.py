"""Root of both test suites (``tests/`` and ``services/ledger/tests/``): the real servers are
a plugin, so each starts at most once per ``uv run pytest``."""

import os

import pytest

pytest_plugins = ["server_fixtures"]

DEFAULT_SLOW_SECONDS = 5.0
"""What a ``slow`` test without ``seconds=`` is expected to take, for ordering only."""


def _slow_seconds(item: pytest.Item) -> float:
    marker = item.get_closest_marker("slow")
    return 0.0 if marker is None else float(marker.kwargs.get("seconds", DEFAULT_SLOW_SECONDS))


def _share_sizes(total: int, workers: int) -> list[int]:
    """The consecutive shares ``--dist worksteal`` first hands its workers, in order."""
    sizes = []
    for share in range(workers):
        sizes.append(total // (workers - share))
        total -= sizes[-1]
    return sizes


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every xdist worker's first share starts with its part of the ``slow`` tests, longest
    first (each to the share with the fewest expected seconds), then the others in their
    collected order (which keeps module fixtures together).

    ``--dist worksteal`` (pyproject) hands worker k the k-th consecutive share of this order,
    then moves tests not yet started from the tail of a busy worker's queue to an idle one.
    With every slow test at the front (the order before), xdist's default scheduler gave all
    of them to one worker, which ran them one after another for 95 s after the other two had
    finished (whole suite 346 s on this 2-core machine; 317-334 s with this order, the three
    workers ending within a second of each other)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    seconds = {item.nodeid: _slow_seconds(item) for item in items}
    slow = sorted(
        (item for item in items if seconds[item.nodeid]), key=lambda item: -seconds[item.nodeid]
    )
    others = [item for item in items if not seconds[item.nodeid]]
    shares: list[list[pytest.Item]] = [[] for _ in range(workers)]
    expected = [0.0] * workers
    for item in slow:
        least = expected.index(min(expected))
        shares[least].append(item)
        expected[least] += seconds[item.nodeid]
    ordered: list[pytest.Item] = []
    taken = 0
    for share, size in zip(shares, _share_sizes(len(items), workers), strict=True):
        filler = max(size - len(share), 0)
        ordered += share + others[taken : taken + filler]
        taken += filler
    items[:] = ordered + others[taken:]
