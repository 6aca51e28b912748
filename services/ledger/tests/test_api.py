"""The /v1 API through a real uvicorn server, on SQLite and on Redis."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import httpx
import pytest
from api_support import client, idem, make_key, new_account, served_app, transfer
from ledger.auth import revoke_key
from ledger.settings import LedgerSettings

from stalwart.storage import open_store


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def store_url(request, tmp_path_factory):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('ledger')}/ledger.db?synchronous=full"
        return
    server = request.getfixturevalue("redis_srv")  # the session's redis-server
    yield f"{server.url}?prefix=ledger-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def base(store_url):
    with served_app(store_url) as url:
        yield url


@pytest.fixture(scope="module")
def api(store_url, base):
    with client(base, make_key(store_url, "acme")) as acme:
        yield acme


@pytest.fixture(scope="module")
def other(store_url, base):
    with client(base, make_key(store_url, "globex")) as globex:
        yield globex


@pytest.fixture
def pair(api):
    """A debit-normal funding account and a credit-normal wallet of tenant acme."""
    return new_account(api, normal_balance="debit")["id"], new_account(api)["id"]


def code(response: httpx.Response) -> str:
    assert response.headers["content-type"] == "application/problem+json", response.text
    return str(response.json()["code"])


def test_accounts_create_read_list_and_paginate(api):
    created = api.post("/v1/accounts", json={"currency": "EUR", "name": "Page test"})
    assert created.status_code == 201
    account = created.json()
    assert created.headers["location"] == f"/v1/accounts/{account['id']}"
    read = api.get(f"/v1/accounts/{account['id']}")
    assert read.json() == account
    assert read.headers["etag"] == created.headers["etag"]

    ids = {account["id"]} | {new_account(api, "EUR")["id"] for _ in range(4)}
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, "currency": "EUR"} | ({"cursor": cursor} if cursor else {})
        page = api.get("/v1/accounts", params=params).json()
        assert len(page["data"]) <= 2
        seen += [a["id"] for a in page["data"]]
        if not page["has_more"]:
            break
        cursor = page["next_cursor"]
    assert len(seen) == len(set(seen))  # no duplicates across pages
    assert ids <= set(seen)
    for limit in (0, 101):
        assert code(api.get("/v1/accounts", params={"limit": limit})) == "validation-failed"


def test_metadata_update_and_close_need_a_current_if_match(api, pair):
    _, wallet = pair
    url = f"/v1/accounts/{wallet}"
    tag = api.get(url).headers["etag"]
    assert code(api.patch(url, json={"metadata": {"tier": "gold"}})) == "precondition-required"
    updated = api.patch(url, json={"metadata": {"tier": "gold"}}, headers={"If-Match": tag})
    assert updated.status_code == 200
    assert updated.json()["metadata"] == {"tier": "gold"}
    assert updated.headers["etag"] != tag
    stale = api.patch(url, json={"metadata": {"tier": "lead"}}, headers={"If-Match": tag})
    assert stale.status_code == 412
    assert api.get(url).json()["metadata"] == {"tier": "gold"}  # the stale write changed nothing
    starred = api.patch(url, json={"metadata": {"tier": "gold+"}}, headers={"If-Match": "*"})
    assert starred.json()["version"] == updated.json()["version"] + 1
    closed = api.post(f"{url}/close", headers={"If-Match": starred.headers["etag"]})
    assert closed.status_code == 200
    assert closed.json()["status"] == "closed"


def test_a_transfer_needs_an_idempotency_key_and_replays_exactly(api, pair):
    funding, wallet = pair
    body = {"debit_account_id": funding, "credit_account_id": wallet, "amount": 700}
    body |= {"currency": "USD"}
    assert code(api.post("/v1/transfers", json=body)) == "idempotency-key-missing"
    bad = api.post("/v1/transfers", json=body, headers={"Idempotency-Key": '""'})
    assert code(bad) == "idempotency-key-invalid"

    key = idem()
    first = api.post("/v1/transfers", json=body, headers=key)
    again = api.post("/v1/transfers", json=body, headers=key)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    reused = api.post("/v1/transfers", json=body | {"amount": 701}, headers=key)
    assert code(reused) == "idempotency_key_reused"
    balance = api.get(f"/v1/accounts/{wallet}/balance").json()
    assert (balance["posted"], balance["available"]) == (700, 700)  # one transfer, not two
    entries = api.get(f"/v1/accounts/{wallet}/entries").json()["data"]
    assert [e["transfer_id"] for e in entries] == [first.json()["id"]]


def test_transfers_listed_by_creation_time(api, pair):
    funding, wallet = pair
    since = datetime.now(UTC).isoformat()
    made = [transfer(api, funding, wallet, amount).json()["id"] for amount in (1, 2, 3)]
    listed = api.get("/v1/transfers", params={"created_gte": since, "limit": 2}).json()
    page2 = api.get(
        "/v1/transfers", params={"created_gte": since, "limit": 2, "cursor": listed["next_cursor"]}
    ).json()
    assert [t["id"] for t in listed["data"] + page2["data"]] == made  # oldest first
    assert not page2["has_more"]
    until = api.get("/v1/transfers", params={"created_gte": since, "created_lt": since}).json()
    assert until["data"] == []
    naive = api.get("/v1/transfers", params={"created_gte": "2026-12-01T00:00:00"})
    assert naive.status_code == 422  # a time without its UTC offset is ambiguous
    alone = api.get("/v1/transfers", params={"created_lt": since})
    assert code(alone) == "invalid_request"


def test_two_phase_post_void_reverse_and_batch(api, pair):
    funding, wallet = pair
    pending = transfer(api, funding, wallet, 1000, pending=True).json()
    assert pending["status"] == "pending"
    posted = api.post(f"/v1/transfers/{pending['id']}/post", json={"amount": 600})
    assert posted.json()["posted_amount"] == 600
    assert code(api.post(f"/v1/transfers/{pending['id']}/void")) == "transfer_not_pending"

    held = transfer(api, funding, wallet, 50, pending=True).json()
    assert api.post(f"/v1/transfers/{held['id']}/void").json()["status"] == "voided"

    reversal = api.post(f"/v1/transfers/{pending['id']}/reverse", headers=idem())
    assert reversal.status_code == 201
    assert reversal.json()["reverses"] == pending["id"]
    twice = api.post(f"/v1/transfers/{pending['id']}/reverse", headers=idem())
    assert code(twice) == "already_reversed"

    items = [
        {"debit_account_id": funding, "credit_account_id": wallet, "amount": n, "currency": "USD"}
        for n in (1, 2)
    ]
    batch = api.post("/v1/transfers/batch", json={"transfers": items}, headers=idem())
    assert batch.status_code == 201
    assert [t["amount"] for t in batch.json()["data"]] == [1, 2]
    broken = [*items, items[0] | {"currency": "EUR"}]
    failed = api.post("/v1/transfers/batch", json={"transfers": broken}, headers=idem())
    assert code(failed) == "currency_mismatch"
    assert failed.json()["index"] == 2
    balance = api.get(f"/v1/accounts/{wallet}/balance").json()
    assert balance["posted"] == 600 - 600 + 3  # posted 600, reversed, then the batch's 1 + 2
    listed = api.get("/v1/transfers", params={"account_id": wallet, "limit": 100}).json()
    assert {t["status"] for t in listed["data"]} == {"posted", "voided"}


def test_a_tenant_never_reads_lists_posts_or_replays_another_tenants_objects(api, other, pair):
    funding, wallet = pair
    key = idem()
    body = {"debit_account_id": funding, "credit_account_id": wallet, "amount": 5}
    body |= {"currency": "USD", "pending": True}
    theirs = api.post("/v1/transfers", json=body, headers=key).json()

    assert code(other.get(f"/v1/accounts/{wallet}")) == "not_found"
    assert code(other.get(f"/v1/accounts/{wallet}/balance")) == "not_found"
    assert code(other.get(f"/v1/transfers/{theirs['id']}")) == "not_found"
    assert code(other.post(f"/v1/transfers/{theirs['id']}/post")) == "not_found"
    assert code(other.post(f"/v1/transfers/{theirs['id']}/void")) == "not_found"
    replay = other.post("/v1/transfers", json=body, headers=key)  # the same key and body
    assert code(replay) == "not_found"  # acme's accounts do not exist for globex
    assert other.get("/v1/accounts").json()["data"] == []
    assert other.get("/v1/transfers").json()["data"] == []
    # The same key in globex's own scope makes globex's own transfer.
    g_funding = new_account(other, normal_balance="debit")["id"]
    g_wallet = new_account(other)["id"]
    own = body | {"debit_account_id": g_funding, "credit_account_id": g_wallet}
    mine = other.post("/v1/transfers", json=own, headers=key)
    assert mine.status_code == 201
    assert mine.json()["id"] != theirs["id"]
    assert api.get(f"/v1/transfers/{theirs['id']}").json()["status"] == "pending"


def test_missing_unknown_and_revoked_keys_get_401(store_url, base):
    key = make_key(store_url, "initech")
    with client(base, None) as anonymous:
        missing = anonymous.get("/v1/accounts")
        assert code(missing) == "unauthorized"
        assert missing.headers["www-authenticate"] == "Bearer"
        assert anonymous.get("/livez").status_code == 200  # probes need no key
    with client(base, "ldg_0123456789abcdef_nope") as unknown:
        assert code(unknown.get("/v1/accounts")) == "unauthorized"
    with client(base, key) as initech:
        assert initech.get("/v1/accounts").status_code == 200
        with open_store(store_url) as store:
            assert revoke_key(store, key.split("_")[1])
        revoked_at = time.monotonic()
        # The server may trust the key it verified for LEDGER_API_KEY_CACHE_S more.
        trusted_s = LedgerSettings.model_fields["api_key_cache_s"].default
        while (status := initech.get("/v1/accounts").status_code) == 200:
            assert time.monotonic() - revoked_at < trusted_s + 1
            time.sleep(0.05)
        assert status == 401
        assert code(initech.get("/v1/accounts")) == "unauthorized"


def test_concurrent_identical_posts_make_one_transfer_and_identical_answers(api, pair, base):
    funding, wallet = pair
    body = {"debit_account_id": funding, "credit_account_id": wallet, "amount": 25}
    body |= {"currency": "USD"}
    key = idem()
    auth = {"Authorization": api.headers["Authorization"]}

    def post(_: int) -> httpx.Response:
        with httpx.Client(base_url=base, headers=auth, timeout=10) as own:  # own connection
            return own.post("/v1/transfers", json=body, headers=key)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(post, range(8)))
    assert {a.status_code for a in answers} == {201}
    assert len({a.text for a in answers}) == 1
    assert sum("idempotent-replayed" not in a.headers for a in answers) == 1
    assert api.get(f"/v1/accounts/{wallet}/balance").json()["posted"] == 25
