"""schemathesis against a running ledger, as one function: the CI test (``test_api_fuzz.py``,
300 cases) and ``benchmarks/faults.py`` (>= 1,000 cases) run the same generation.

:func:`run_fuzz` makes a few real rows through the API first (two accounts, a transfer between
them, an assistant conversation and its proposal) so that generated path ids sometimes hit
them, then sends generated requests -- valid and invalid ones -- to every operation of the
server's ``/openapi.json`` with a valid key, and counts:

- ``server_errors``: answers with a 5xx status, and answers of any status carrying a Python
  traceback (a leaked stack trace is a server failure whatever the status says);
- ``schema_violations``: answers whose status code, content type or body the schema does not
  declare for that operation.
"""

from __future__ import annotations

import json
import uuid
import warnings
from collections.abc import Callable
from typing import Any

import hypothesis
import requests
import schemathesis
from hypothesis import strategies as st
from hypothesis.errors import HypothesisDeprecationWarning
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

SCHEMA_CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]
TRACEBACK_MARKERS = ("Traceback", 'File "')
REQUEST_TIMEOUT_S = 10
SETUP_TIMEOUT_S = 60
"""For the rows made first: the first assistant request imports the assistant (pydantic-ai,
seconds; ``ledger.api.assistant``), which took over 10 s on the loaded CI machine."""
TOP_UP_ROUNDS = 3


def run_fuzz(
    base_url: str, key: str, cases: int, *, failures: list[str] | None = None
) -> dict[str, int]:
    """Send about ``cases`` generated requests, spread evenly over every operation (valid
    inputs, and invalid ones where the operation takes input); the counts of what failed.

    ``failures``, when given, receives each failed case as a curl command and the reason.
    The cases are the same on every run (fixed seeds): a failure reproduces.

    >>> run_fuzz("http://127.0.0.1:8000", key, 300)  # doctest: +SKIP
    {'cases': 300, 'server_errors': 0, 'schema_violations': 0}
    """
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {key}"
    ids = _real_ids(base_url, session)
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    runs = [(operation, mode) for operation in operations for mode in _modes(operation)]
    per_run = -(-cases // len(runs))
    counts = {"cases": 0, "server_errors": 0, "schema_violations": 0}
    found = failures if failures is not None else []

    def send(case: Any) -> None:
        counts["cases"] += 1
        response = case.call(base_url=base_url, session=session, timeout=REQUEST_TIMEOUT_S)
        curl = case.as_curl_command()
        if response.status_code >= 500:
            counts["server_errors"] += 1
            found.append(f"{curl}\nserver error {response.status_code}: {response.text[:500]}")
        elif any(marker in response.text for marker in TRACEBACK_MARKERS):
            counts["server_errors"] += 1
            found.append(f"{curl}\ntraceback in body: {response.text[:2000]}")
        try:
            case.validate_response(response, checks=SCHEMA_CHECKS)
        except FailureGroup as failed:
            counts["schema_violations"] += 1
            found.append(f"{curl}\n{failed}")

    with warnings.catch_warnings():
        # schemathesis' strategies draw from the `random` module, which hypothesis deprecates
        # (the test suite turns warnings into errors).
        warnings.simplefilter("ignore", HypothesisDeprecationWarning)
        for operation, mode in runs:
            _fuzz(operation, mode, per_run, send, ids, seed=0)
        # Operations with few distinct inputs (the probes take none) run out of cases before
        # their share: the others make up the difference, with other seeds.
        for seed in range(1, TOP_UP_ROUNDS + 1):
            missing = cases - counts["cases"]
            if missing <= 0:
                break
            with_input = [(o, m) for o, m in runs if _takes_input(o)]
            for operation, mode in with_input:
                _fuzz(operation, mode, -(-missing // len(with_input)), send, ids, seed=seed)
    return counts


def _real_ids(base_url: str, session: requests.Session) -> dict[str, list[str]]:
    """Rows that exist for the key's tenant, by path parameter name."""

    def post(path: str, body: Any = None, **headers: str) -> Any:
        response = session.post(
            f"{base_url}{path}", json=body, headers=headers, timeout=SETUP_TIMEOUT_S
        )
        response.raise_for_status()
        return response

    funding = post(
        "/v1/accounts", {"currency": "USD", "name": "funding", "normal_balance": "debit"}
    )
    wallet = post("/v1/accounts", {"currency": "USD", "name": "wallet"})
    accounts = [funding.json()["id"], wallet.json()["id"]]
    body = {"debit_account_id": accounts[0], "credit_account_id": accounts[1], "amount": 500}
    made = post(
        "/v1/transfers", body | {"currency": "USD"}, **{"Idempotency-Key": str(uuid.uuid4())}
    )
    conversation = post("/v1/assistant/conversations").json()["id"]
    answer = post(
        f"/v1/assistant/conversations/{conversation}/messages",
        {"message": "move 1.00 from funding to wallet"},
    )
    [proposal] = [
        line["id"]
        for line in map(json.loads, answer.text.splitlines())
        if line.get("type") == "proposal"
    ]
    endpoint = post(
        "/v1/webhook-endpoints", {"url": "https://example.com/hooks", "enabled_events": ["*"]}
    )
    events = session.get(f"{base_url}/v1/events", timeout=SETUP_TIMEOUT_S).json()["data"]
    return {
        "account_id": accounts,
        "transfer_id": [made.json()["id"]],
        "endpoint_id": [endpoint.json()["id"]],
        "event_id": [events[0]["id"]],
        "conversation_id": [conversation],
        "proposal_id": [proposal],
    }


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
    if _takes_input(operation):
        return [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
    return [GenerationMode.POSITIVE]


def _takes_input(operation: Any) -> bool:
    inputs = (operation.path_parameters, operation.query, operation.headers, operation.body)
    return any(len(part) for part in inputs)


def _fuzz(
    operation: Any,
    mode: GenerationMode,
    examples: int,
    send: Callable[[Any], None],
    ids: dict[str, list[str]],
    *,
    seed: int,
) -> None:
    """Send up to ``examples`` generated requests of ``operation`` (fewer when hypothesis
    runs out of distinct inputs, as for the probes, which take none)."""

    @hypothesis.seed(seed)  # the same cases on every run: a CI failure reproduces locally
    @hypothesis.settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(data=st.data())
    def run(data: st.DataObject) -> None:
        path_parameters = data.draw(_path_ids(operation, ids))
        send(
            data.draw(operation.as_strategy(generation_mode=mode, path_parameters=path_parameters))
        )

    run()
