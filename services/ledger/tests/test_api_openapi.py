"""/docs and /redoc are complete enough to generate a client: every operation declares its
errors with examples, every model field has a description, every model an example."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from api_support import served_app
from ledger.api.problems import EXAMPLE_DETAILS, problem_type
from ledger.domain.errors import error_types

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def openapi(tmp_path_factory) -> dict[str, Any]:
    url = f"sqlite:///{tmp_path_factory.mktemp('openapi')}/ledger.db"
    with served_app(url) as base:
        assert httpx.get(f"{base}/docs").status_code == 200
        assert httpx.get(f"{base}/redoc").status_code == 200
        return dict(httpx.get(f"{base}/openapi.json").json())


def operations(openapi: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in openapi["paths"].items()
        for method, operation in item.items()
        if path.startswith("/v1/")
    ]


def test_every_v1_operation_declares_its_errors_with_examples(openapi):
    ops = operations(openapi)
    # 7 account, 7 transfer, 5 webhook endpoint, 3 event and 5 assistant operations
    assert len(ops) == 27
    for method, path, operation in ops:
        responses = operation["responses"]
        assert {"401", "500", "503"} <= set(responses), (method, path)
        assert operation["security"] == [{"ApiKey": []}], (method, path)
        for status, response in responses.items():
            if not status.startswith(("4", "5")):
                continue
            examples = response["content"][PROBLEM]["examples"]
            assert examples, (method, path, status)
            for example in examples.values():
                assert example["value"]["status"] == int(status), (method, path, status)


def test_operation_ids_are_the_handlers_names(openapi):
    ids = [operation["operationId"] for _, _, operation in operations(openapi)]
    assert len(ids) == len(set(ids))
    assert {"create_account", "create_transfer", "create_batch", "get_balance"} <= set(ids)


def test_money_moving_operations_declare_the_ledger_codes(openapi):
    create = openapi["paths"]["/v1/transfers"]["post"]["responses"]
    declared = {
        code
        for r in create.values()
        for code in r.get("content", {}).get(PROBLEM, {}).get("examples", {})
    }
    expected = {"insufficient_funds", "currency_mismatch", "account_closed", "not_found"}
    expected |= {"idempotency_key_reused", "idempotency-key-missing", "contention"}
    assert expected <= declared
    header = create["201"]["headers"]
    assert "Idempotent-Replayed" in header


def test_every_ledger_error_has_an_example_and_a_row_in_docs_ledger_md():
    assert {t.code for t in error_types()} == set(EXAMPLE_DETAILS)
    docs = (Path(__file__).resolve().parents[3] / "docs" / "ledger.md").read_text()
    for error_type in error_types():
        anchor = problem_type(error_type.code).partition("#")[2]
        assert f'<a id="{anchor}"></a>`{error_type.code}`' in docs, error_type.code


def test_every_model_field_has_a_description_and_an_example(openapi):
    own = {
        name: schema
        for name, schema in openapi["components"]["schemas"].items()
        if not name.startswith(("HTTPValidationError", "ValidationError"))
        and "enum" not in schema  # an enum's values are its examples
    }
    assert {"Account", "NewAccount", "Transfer", "NewTransfer", "Balance", "Entry"} <= set(own)
    for name, schema in own.items():
        for field, spec in schema.get("properties", {}).items():
            assert spec.get("description"), f"{name}.{field} has no description"
            # A nested model or a list of them carries its own examples.
            nested = "$ref" in spec or "$ref" in spec.get("items", {})
            assert nested or spec.get("examples"), f"{name}.{field} has no example"
