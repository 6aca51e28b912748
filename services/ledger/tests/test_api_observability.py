"""Logs and metrics of the API, through a real uvicorn server: the JSON lines name the request
id, the tenant and the transfer; EMF documents count transfers and time each request."""

from __future__ import annotations

from api_support import client, make_key, new_account, served_app

from stalwart.observability import capture_logs, capture_metrics


def test_a_transfer_is_logged_with_request_id_tenant_and_transfer_id_and_counted(tmp_path):
    url = f"sqlite:///{tmp_path}/ledger.db"
    key = make_key(url, "acme")
    with served_app(url) as base, client(base, key) as api:
        funding = new_account(api, normal_balance="debit")["id"]
        wallet = new_account(api)["id"]
        body = {"debit_account_id": funding, "credit_account_id": wallet, "amount": 9}
        headers = {"Idempotency-Key": "k-1", "X-Request-ID": "req-obs-1"}
        with capture_logs() as lines, capture_metrics() as documents:
            created = api.post("/v1/transfers", json=body | {"currency": "USD"}, headers=headers)
            replayed = api.post("/v1/transfers", json=body | {"currency": "USD"}, headers=headers)
    assert (created.status_code, replayed.status_code) == (201, 201)
    transfer_id = created.json()["id"]

    (logged, again) = [line for line in lines if line["message"] == "transfer created"]
    assert logged["transfer_id"] == transfer_id
    assert logged["tenant"] == "acme"
    assert logged["correlation_id"] == "req-obs-1"
    assert (logged["replayed"], again["replayed"]) == (False, True)
    access = [line for line in lines if line.get("route") == "/v1/transfers"]
    assert [line["principal"] for line in access] == ["acme", "acme"]

    creates = [doc for doc in documents if doc.get("operation") == "create_transfer"]
    assert len(creates) == 2
    assert creates[0]["TransfersCreated"] == 1
    assert "TransfersCreated" not in creates[1]  # a replay creates nothing
    assert all(doc["Latency"] > 0 for doc in creates)
    assert creates[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Ledger"
