"""schemathesis against the real ledger server: every operation of the published OpenAPI
schema, with a valid API key, valid and invalid inputs (``fuzz_support.run_fuzz``).

Each generated request must get an answer that is not a 5xx, whose status code the schema
declares for that operation, whose body matches the declared schema, and that carries no
Python traceback. ``benchmarks/faults.py`` (issue 15) runs the same generation with at least
1,000 cases; this CI version is sized to stay within a few tens of seconds.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from api_support import client, make_key, served_app
from fuzz_support import run_fuzz

CASES = 300
"""Generated requests in total over all operations (benchmarks/faults.py runs >= 1,000)."""


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[tuple[str, str]]:
    """The server's base URL and a tenant's key."""
    url = f"sqlite:///{tmp_path_factory.mktemp('fuzz')}/ledger.db"
    with served_app(url) as base:
        yield base, make_key(url, "acme")


@pytest.mark.slow(seconds=13)
def test_generated_requests_get_declared_answers_without_server_errors(served) -> None:
    base, key = served
    failures: list[str] = []
    counts = run_fuzz(base, key, CASES, failures=failures)
    assert counts["server_errors"] == counts["schema_violations"] == 0, (
        f"{len(failures)} of {counts['cases']} cases failed:\n" + "\n\n".join(failures)
    )
    assert counts["cases"] >= CASES * 0.8


def test_listing_the_transfers_of_an_unknown_account_is_a_declared_404(served) -> None:
    """Found by the fuzzer: ``GET /v1/transfers?account_id=<unknown>`` answers 404, which the
    operation did not declare."""
    base, key = served
    with client(base, key) as api:
        response = api.get("/v1/transfers", params={"account_id": "no-such-account"})
        declared = api.get("/openapi.json").json()["paths"]["/v1/transfers"]["get"]["responses"]
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert "404" in declared
