"""A pending transfer's timeout voids it: the app's sweeper runs ``expire_pending`` for every
tenant, through a real uvicorn server."""

from __future__ import annotations

import time

from api_support import client, make_key, new_account, served_app, transfer


def test_a_timed_out_pending_transfer_is_voided_and_its_reservation_released(tmp_path):
    url = f"sqlite:///{tmp_path}/ledger.db"
    key = make_key(url, "acme")
    with served_app(url, expire_interval_s=0.1) as base, client(base, key) as api:
        funding = new_account(api, normal_balance="debit")["id"]
        wallet = new_account(api)["id"]
        held = transfer(api, funding, wallet, 300, pending=True, timeout_s=1).json()
        kept = transfer(api, funding, wallet, 200, pending=True, timeout_s=3600).json()
        assert api.get(f"/v1/accounts/{wallet}/balance").json()["pending"] == 500
        deadline = time.monotonic() + 6
        while api.get(f"/v1/transfers/{held['id']}").json()["status"] == "pending":
            assert time.monotonic() < deadline, "the timed-out transfer was never voided"
            time.sleep(0.1)
        assert api.get(f"/v1/transfers/{held['id']}").json()["status"] == "voided"
        assert api.get(f"/v1/transfers/{kept['id']}").json()["status"] == "pending"
        assert api.get(f"/v1/accounts/{wallet}/balance").json()["pending"] == 200
