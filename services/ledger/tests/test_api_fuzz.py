"""schemathesis against the real ledger server: every operation of the published OpenAPI
schema, with a valid API key, valid and invalid inputs.

Each generated request must get an answer that is not a 5xx, whose status code the schema
declares for that operation, whose body matches the declared schema, and that carries no
Python traceback. ``benchmarks/faults.py`` (issue 15) runs the same generation with at least
1,000 cases; this CI version is sized to stay within a few tens of seconds.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from api_support import client, make_key, new_account, served_app, transfer
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CASES = 300
"""Generated requests in total over all operations (benchmarks/faults.py runs >= 1,000)."""

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
TRACEBACK_MARKERS = ("Traceback", 'File "')

# schemathesis' strategies draw from the `random` module (hypothesis deprecates that; the
# suite turns warnings into errors).
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[tuple[str, str, dict[str, list[str]]]]:
    """The server's base URL, a tenant's key, and ids that exist for that tenant (two
    accounts, a transfer between them, its event, a webhook endpoint, an assistant
    conversation and its proposal), so
    generated path ids sometimes hit real rows."""
    url = f"sqlite:///{tmp_path_factory.mktemp('fuzz')}/ledger.db"
    with served_app(url) as base:
        key = make_key(url, "acme")
        with client(base, key) as api:
            funding = new_account(api, normal_balance="debit", name="funding")["id"]
            wallet = new_account(api, name="wallet")["id"]
            made = transfer(api, funding, wallet, 500)
            assert made.status_code == 201, made.text
            conversation = api.post("/v1/assistant/conversations").json()["id"]
            answer = api.post(
                f"/v1/assistant/conversations/{conversation}/messages",
                json={"message": "move 1.00 from funding to wallet"},
            )
            [proposal] = [
                line["id"]
                for line in map(json.loads, answer.text.splitlines())
                if line.get("type") == "proposal"
            ]
            endpoint = api.post(
                "/v1/webhook-endpoints",
                json={"url": "https://example.com/hooks", "enabled_events": ["*"]},
            )
            assert endpoint.status_code == 201, endpoint.text
            ids = {
                "account_id": [funding, wallet],
                "transfer_id": [made.json()["id"]],
                "endpoint_id": [endpoint.json()["id"]],
                "event_id": [api.get("/v1/events").json()["data"][0]["id"]],
                "conversation_id": [conversation],
                "proposal_id": [proposal],
            }
        yield base, key, ids


def _path_ids(operation: Any, ids: dict[str, list[str]]) -> st.SearchStrategy[dict[str, str]]:
    """Real ids for the operation's path parameters (or none: then schemathesis makes some)."""
    names = [p.name for p in operation.path_parameters]
    if not names:
        return st.just({})
    real = st.fixed_dictionaries({name: st.sampled_from(ids[name]) for name in names})
    return st.one_of(st.just({}), real)


def _modes(operation: Any) -> list[GenerationMode]:
    """Valid inputs, and invalid ones where the operation takes any input (the probes take
    none: nothing to make invalid)."""
    inputs = (operation.path_parameters, operation.query, operation.headers, operation.body)
    if any(len(part) for part in inputs):
        return [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
    return [GenerationMode.POSITIVE]


def _fuzz(
    operation: Any,
    mode: GenerationMode,
    examples: int,
    send: Callable[[Any], requests.Response],
    ids: dict[str, list[str]],
) -> list[str]:
    """Send ``examples`` generated requests of ``operation``; the failures (with curl)."""
    failures: list[str] = []

    @hypothesis.settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,  # the same cases on every run: a CI failure reproduces locally
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(data=st.data())
    def run(data: st.DataObject) -> None:
        path_parameters = data.draw(_path_ids(operation, ids))
        case = data.draw(
            operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)
        )
        response = send(case)
        try:
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as failed:
            failures.append(f"{case.as_curl_command()}\n{failed}")
        if any(marker in response.text for marker in TRACEBACK_MARKERS):
            failures.append(f"{case.as_curl_command()}\ntraceback in body: {response.text}")

    run()
    return failures


@pytest.mark.slow
def test_generated_requests_get_declared_answers_without_server_errors(served) -> None:
    base, key, ids = served
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 16  # 14 /v1 operations and the two probes
    runs = [(operation, mode) for operation in operations for mode in _modes(operation)]
    per_run = -(-CASES // len(runs))
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {key}"
    sent = 0

    def send(case: Any) -> requests.Response:
        nonlocal sent
        sent += 1
        response: requests.Response = case.call(base_url=base, session=session, timeout=10)
        return response

    failures = [failure for run in runs for failure in _fuzz(*run, per_run, send, ids)]
    assert not failures, f"{len(failures)} of {sent} cases failed:\n" + "\n\n".join(failures)
    assert sent >= CASES * 0.8


def test_listing_the_transfers_of_an_unknown_account_is_a_declared_404(served) -> None:
    """Found by the fuzzer: ``GET /v1/transfers?account_id=<unknown>`` answers 404, which the
    operation did not declare."""
    base, key, _ = served
    with client(base, key) as api:
        response = api.get("/v1/transfers", params={"account_id": "no-such-account"})
        declared = api.get("/openapi.json").json()["paths"]["/v1/transfers"]["get"]["responses"]
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert "404" in declared
