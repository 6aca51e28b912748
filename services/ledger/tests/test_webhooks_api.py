"""The webhook API (endpoints, events, resend) on a real server, tenant-scoped; the signature
helper a receiver uses; the worker started inside the app (``--with-worker``)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from api_support import client, make_key, served_app
from ledger.domain.errors import InvalidWebhookUrl
from ledger.webhooks import InvalidSignature, signature_header, verify_signature
from ledger.webhooks.records import check_url
from webhook_scenarios import Receiver, ReceiverServer, wait_until

HOOK = "https://example.com/hooks/ledger"


def test_signature_verifies_and_rejects_tampering_staleness_and_garbage() -> None:
    body = b'{"id": "evt_1"}'
    header = signature_header("whsec_a", body, timestamp=1_000_000)
    assert verify_signature("whsec_a", header, body, now=1_000_100) == 1_000_000
    # A rotated secret: several v1 entries, one matches.
    other = signature_header("whsec_b", body, timestamp=1_000_000).split(",")[1]
    assert verify_signature("whsec_a", f"{header},{other}", body, now=1_000_000)
    for bad_header, bad_body, now in [
        (header, b'{"id": "evt_2"}', 1_000_000),  # another body
        (header, body, 1_000_301),  # older than the 300 s tolerance: a replay
        (header.replace("t=1000000", "t=1000001"), body, 1_000_000),  # another timestamp
        ("v1=abc", body, 1_000_000),  # no timestamp
        ("", body, 1_000_000),
    ]:
        with pytest.raises(InvalidSignature):
            verify_signature("whsec_a", bad_header, bad_body, now=now)
    with pytest.raises(InvalidSignature):
        verify_signature("whsec_b", header, body, now=1_000_000)


def test_urls_must_be_https_except_loopback_http_in_development() -> None:
    assert check_url(HOOK, development=False) == HOOK
    assert check_url("http://localhost:9000/h", development=True)
    for url, development in [
        ("http://127.0.0.1:9000/h", False),
        ("http://example.com/h", True),
        ("ftp://example.com/h", True),
        ("https:///nohost", True),
        ("not a url", True),
    ]:
        with pytest.raises(InvalidWebhookUrl):
            check_url(url, development=development)


def test_endpoints_are_managed_per_tenant(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/ledger.db"
    with (
        served_app(url) as base,
        client(base, make_key(url, "acme")) as api,
        client(base, make_key(url, "other")) as other,
    ):
        created = api.post(
            "/v1/webhook-endpoints",
            json={"url": HOOK, "enabled_events": ["transfer.posted"], "description": "erp"},
        )
        assert created.status_code == 201, created.text
        endpoint = created.json()
        assert endpoint["secret"].startswith("whsec_")
        assert created.headers["Location"] == f"/v1/webhook-endpoints/{endpoint['id']}"
        path = created.headers["Location"]
        shown = api.get(path).json()
        assert "secret" not in shown  # shown once, at creation
        assert shown["status"] == "enabled"
        assert [e["id"] for e in api.get("/v1/webhook-endpoints").json()["data"]] == [
            endpoint["id"]
        ]
        for response in (other.get(path), other.patch(path, json={}), other.delete(path)):
            assert response.status_code == 404
            assert response.json()["code"] == "not_found"
        assert other.get("/v1/webhook-endpoints").json()["data"] == []

        updated = api.patch(path, json={"status": "disabled", "enabled_events": ["*"]})
        assert updated.status_code == 200, updated.text
        assert (updated.json()["status"], updated.json()["enabled_events"]) == ("disabled", ["*"])
        assert updated.json()["description"] == "erp"
        for bad in ("http://example.com/h", "ftp://example.com/h"):
            refused = api.post("/v1/webhook-endpoints", json={"url": bad, "enabled_events": ["*"]})
            assert refused.status_code == 422
            assert refused.json()["code"] == "invalid_webhook_url"
            assert api.patch(path, json={"url": bad}).json()["code"] == "invalid_webhook_url"
        unknown = api.post("/v1/webhook-endpoints", json={"url": HOOK, "enabled_events": ["x"]})
        assert unknown.status_code == 422
        assert api.patch(path, json={"status": None}).status_code == 422

        assert api.delete(path).status_code == 204
        assert api.get(path).status_code == 404
        assert api.get("/v1/webhook-endpoints/evil/../x").status_code == 404


def _transfer(api: object, debit: str, credit: str, **fields: object) -> dict[str, object]:
    body = {"debit_account_id": debit, "credit_account_id": credit, "amount": 5}
    response = api.post(  # type: ignore[attr-defined]
        "/v1/transfers",
        json={"currency": "USD", **body, **fields},
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_events_are_listed_read_and_resent(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/ledger.db"
    receiver = Receiver()
    with (
        ReceiverServer(receiver) as server,
        served_app(url, webhook_worker=True, webhook_poll_s=0.1) as base,
        client(base, make_key(url, "acme")) as api,
        client(base, make_key(url, "other")) as other,
    ):
        hook = api.post("/v1/webhook-endpoints", json={"url": server.url, "enabled_events": ["*"]})
        receiver.secret = hook.json()["secret"]
        accounts = [
            api.post("/v1/accounts", json={"currency": "USD", "name": n, "normal_balance": b})
            for n, b in (("cash", "debit"), ("wallet", "credit"))
        ]
        cash, wallet = (a.json()["id"] for a in accounts)
        paid = _transfer(api, cash, wallet)
        hold = _transfer(api, cash, wallet, pending=True)
        assert api.post(f"/v1/transfers/{hold['id']}/post", json={}).status_code == 200

        listed = api.get("/v1/events").json()["data"]
        assert [(e["type"], e["data"]["object"]["id"]) for e in listed] == [
            ("transfer.created", paid["id"]),
            ("transfer.created", hold["id"]),
            ("transfer.posted", hold["id"]),
        ]
        assert listed[2]["data"]["object"]["status"] == "posted"
        posted = api.get("/v1/events", params={"type": "transfer.posted"}).json()["data"]
        assert [e["id"] for e in posted] == [listed[2]["id"]]
        first = api.get("/v1/events", params={"limit": 2}).json()
        rest = api.get("/v1/events", params={"limit": 2, "cursor": first["next_cursor"]}).json()
        assert [e["id"] for e in first["data"] + rest["data"]] == [e["id"] for e in listed]
        assert rest["has_more"] is False
        assert other.get("/v1/events").json()["data"] == []

        # The worker inside the app (webhook_worker) delivers all three, signed.
        ids = {e["id"] for e in listed}
        assert wait_until(lambda: ids <= receiver.delivered_ids(), timeout_s=30)
        event_id = listed[0]["id"]
        assert wait_until(
            lambda: (
                api.get(f"/v1/events/{event_id}").json()["deliveries"][0]["status"] == "delivered"
            ),
            timeout_s=30,
        )
        [delivery] = api.get(f"/v1/events/{event_id}").json()["deliveries"]
        assert (delivery["endpoint_id"], delivery["attempts"]) == (hook.json()["id"], 1)
        assert other.get(f"/v1/events/{event_id}").status_code == 404

        key = {"Idempotency-Key": str(uuid.uuid4())}
        assert api.post(f"/v1/events/{event_id}/resend").status_code == 400  # no key
        resent = api.post(f"/v1/events/{event_id}/resend", headers=key)
        assert resent.status_code == 202
        assert "Idempotent-Replayed" not in resent.headers
        replayed = api.post(f"/v1/events/{event_id}/resend", headers=key)
        assert replayed.headers["Idempotent-Replayed"] == "true"
        reused = api.post(f"/v1/events/{listed[1]['id']}/resend", headers=key)
        assert reused.status_code == 422
        assert reused.json()["code"] == "idempotency_key_reused"
        assert other.post(f"/v1/events/{event_id}/resend", headers=key).status_code == 404
        assert wait_until(
            lambda: [d.event_id for d in receiver.deliveries].count(event_id) == 2,
            timeout_s=30,
        )
        assert all(d.verified for d in receiver.deliveries)
