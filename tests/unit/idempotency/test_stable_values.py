# Copyright 2026 stalwart contributors
"""Pinned record keys, fingerprints and stored layouts.

Records outlive deployments: a retry that reaches a newer version of the layer must find the
record an older one wrote (same key), validate against it (same fingerprint) and replay it (same
layout). The expected values below were produced by the first released implementation; a change
here is a compatibility break, not a refactoring.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from stalwart.idempotency import (
    AsyncIdempotency,
    HttpPolicy,
    Idempotency,
    IdempotencyPolicy,
    idempotent,
)
from stalwart.idempotency._core import canonical_json, record_key
from stalwart.idempotency._http import HttpReply, HttpRequest, request_fingerprint, storable
from unit.idempotency.idem_apps import make_fastapi
from unit.idempotency.idem_memory_store import AsyncMemoryStore, MemoryStore

CORE = IdempotencyPolicy()


@pytest.mark.parametrize(
    ("scope", "partition"),
    [
        (
            ("http", "", "POST", "/orders", "k1"),
            "7b7b5b6a64e0622def2c2c3354210074769549554febce8fa21278d1715b4b6a",
        ),
        (
            ("ns", 'tenant "\u00e9" \\ \u2603', "PATCH", "/o/{id}", "a b"),
            "04d60d955c0fd73a9af89bccdc6ba93f9147df202ff5bd5c690cf5365ec68df3",
        ),
        (("a", "b\u2028\x00c"), "3bdd7a75e60bef00f5897f4faf1e1b2ab7c0027903a22c36447819ca4c9f6ec5"),
    ],
)
def test_record_keys_are_stable(scope: tuple[str, ...], partition: str) -> None:
    assert record_key(CORE, *scope).partition == f"idempotency:{partition}"


def test_canonical_json_shape() -> None:
    value = {"b": [1.5, None, True, "\u00e9\u2028\n"], "a": {"z": 1, "y": -0.0}, "c": 10**20}
    assert (
        canonical_json(value)
        == '{"a":{"y":-0.0,"z":1},"b":[1.5,null,true,"\u00e9\u2028\\n"],"c":100000000000000000000}'
    )
    with pytest.raises(ValueError, match="Out of range float"):
        canonical_json([float("nan")])
    with pytest.raises(TypeError, match="not JSON serializable"):
        canonical_json({"a": object()})
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular reference"):
        canonical_json(loop)


_JSON = {"content-type": "application/json"}
_FINGERPRINTS = [
    (
        HttpRequest(
            "POST", "/orders", "/orders", "", b'{"b": 1, "a": [1.5, null, "\\u00e9"]}', _JSON
        ),
        "28746cf1724ce77da1a7ffacda22a57fa9ecc392a721c4c7427da8cf82fde85b",
    ),
    (
        HttpRequest(
            "post",
            "/o/{id}",
            "/o/7",
            "b=2&a=1&a=&c",
            b'{"x":1}',
            {"content-type": "application/merge-patch+json; charset=utf-8", "x-currency": "EUR"},
        ),
        "ebffd478943a6edfc2a37d8683777f5b9825a525d983a3c3a190b37fc6b46670",
    ),
    (
        HttpRequest("POST", "/orders", "/orders", "q=%C3%A9+x", b"not json", _JSON),
        "f69964665e6b48902f3ba601882226e27385a8ee9b3e3df42f10556552b402ce",
    ),
    (
        HttpRequest("POST", "/orders", "/orders", "", b"NaN", _JSON),
        "a52ffb6a681f048cd6d4d61abcdb8864f36d5de252b51da6677a9278babac5d8",
    ),
    (
        HttpRequest("POST", "/orders", "/orders", "", b"\xff\xfe", _JSON),
        "412c2b317ddf26167a6d0dd9dc6e286400f3ff891847c8986bd9092a26d107c1",
    ),
    (
        HttpRequest("POST", "/orders", "/orders", "", b'{"a":1}', {"content-type": "text/plain"}),
        "06773d60221b478801d33299e9734afd491f21be0e70edb18a5fc14560e9cce7",
    ),
    (
        HttpRequest("POST", "/orders", "/orders", "", b"", _JSON),
        "50375af1bfa624ae338715af6040360dcfd896c61996c594c32c07111d1de6a3",
    ),
    (
        HttpRequest("POST", "/orders", "/orders", "", b"", {}),
        "50375af1bfa624ae338715af6040360dcfd896c61996c594c32c07111d1de6a3",
    ),
    (
        HttpRequest("POST", "/orders", "/orders", "", b'"just a string"', _JSON),
        "a04a27a4cc516754756eedad86846301548e120b84bda757a58a4d834375b585",
    ),
    (
        HttpRequest(
            "POST", "/orders", "/orders", "", b"[1e400, -0.0, 1E2, 12345678901234567890]", _JSON
        ),
        "0c81bb08739890e9c835806552c7e1a50a69aa753934e7a0e6a39330d536fc9b",
    ),
]


_DEFAULT_POLICY_FINGERPRINTS = [
    (  # parses, but a lone surrogate cannot be UTF-8 encoded: the raw digest is used
        HttpRequest("POST", "/r", "/r", "a=1", b'"\\ud800"', _JSON),
        "c1fac58c4ebf5f7b57a99f61ca056b599e6d8da3d5b1a151c8c4e7663bc3575b",
    ),
    (
        HttpRequest("POST", "/r", "/r", "a=1", b'{"a":"\\udfff"}', _JSON),
        "3468267e744bec978d499e5bcb484e465e18a88424387e2a478a24345951163b",
    ),
    (  # parses to infinity, which canonical JSON refuses
        HttpRequest("POST", "/r", "/r", "a=1", b"1e999", _JSON),
        "e9f3e5c074a49540c40b8ecaf4238bee42b9139d36f6e84296468bd0a5cebbc5",
    ),
]


@pytest.mark.parametrize(("request_", "fingerprint"), _FINGERPRINTS)
def test_fingerprints_are_stable(request_: HttpRequest, fingerprint: str) -> None:
    policy = HttpPolicy(fingerprint_headers=("X-Currency", "x-missing"))
    assert request_fingerprint(policy, request_) == fingerprint


@pytest.mark.parametrize(("request_", "fingerprint"), _DEFAULT_POLICY_FINGERPRINTS)
def test_fingerprints_of_json_that_does_not_encode_are_stable(
    request_: HttpRequest, fingerprint: str
) -> None:
    assert request_fingerprint(HttpPolicy(), request_) == fingerprint


def test_fingerprints_without_fingerprint_headers_are_stable() -> None:
    assert [request_fingerprint(HttpPolicy(), request) for request, _ in _FINGERPRINTS[:2]] == [
        "f2a4760919e07582f77b0ae83505c6578ef84c018f9837efb2d88b0340cf383b",
        "6536489ca3644db45b6d83be66a4e0af648deeb7afdd190875ec02a5b6225e05",
    ]


def test_stored_reply_layout_is_stable() -> None:
    reply = HttpReply(
        201,
        (
            ("Content-Type", "application/json"),
            ("set-cookie", "x=1"),
            ("Location", "/a"),
            ("location", "/b"),
        ),
        '{"\u00e9": 1}'.encode(),
    )
    assert storable(HttpPolicy(), reply).to_json() == {
        "status": 201,
        "headers": [["Content-Type", "application/json"], ["Location", "/a"], ["location", "/b"]],
        "body": '{"\u00e9": 1}',
        "encoding": "utf-8",
    }
    binary = storable(HttpPolicy(), HttpReply(200, (), b"\xff\x00")).to_json()
    assert binary == {"status": 200, "headers": [], "body": "/wA=", "encoding": "base64"}
    assert HttpReply.from_json(binary) == HttpReply(200, (), b"\xff\x00")


def _without_lease(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in ("owner", "lease_expires_at")}


async def test_fastapi_records_are_stable() -> None:
    store = AsyncMemoryStore()
    policy = HttpPolicy(max_response_bytes=2000, fingerprint_headers=("x-currency",))
    app, _, _ = make_fastapi(AsyncIdempotency(store, IdempotencyPolicy(lease=5)), policy)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        await client.post(
            "/orders?z=1&a=%C3%A9",
            json={"item": "tea", "qty": 2},
            headers={"Idempotency-Key": '"k-1"', "x-tenant": "t1", "x-currency": "EUR"},
        )
        await client.patch(
            "/orders/5",
            content=b'{"item":"tea"}',
            headers={"Idempotency-Key": "k-2", "content-type": "application/json"},
        )
        await client.post("/not-found", json={}, headers={"Idempotency-Key": "k-3"})
    records = {key.partition: record for key, record in store.sync._records.items()}
    assert {k: (r.version, _without_lease(r.data)) for k, r in records.items()} == {
        "idempotency:ccde06764f46eab9e28f690d93919a0c50b8548032031232308f92efc57d6dc0": (
            2,
            {
                "status": "COMPLETED",
                "fingerprint": "bed982ef5874774f46779202cf7e734ac61e3d35b946ba9b5ee465f9f7e547b5",
                "result": {
                    "status": 201,
                    "headers": [["location", "/orders/1"], ["content-type", "application/json"]],
                    "body": '{"item":"tea","qty":2,"n":1,"tenant":"t1"}',
                    "encoding": "utf-8",
                },
            },
        ),
        "idempotency:86bf8d851cbaf289bbe5b3ef11485d3525f0199ed2d02bb2626ac91615073503": (
            2,
            {
                "status": "COMPLETED",
                "fingerprint": "390177a938509d4021dc572bbe2c221b0e7df7dbfafa52c1b93d162d7cd09a6a",
                "result": {
                    "status": 200,
                    "headers": [["content-type", "application/json"]],
                    "body": '{"id":5,"item":"tea"}',
                    "encoding": "utf-8",
                },
            },
        ),
        "idempotency:f2dd52acd4af680a73d47217397c3f5726fccdc46d636507ad5b15384b69c103": (
            2,
            {
                "status": "COMPLETED",
                "fingerprint": "ab358a76cd8f1292a079d29f6e57a7e193c5cef29360cae414e8bcf1575e5365",
                "result": {
                    "status": 404,
                    "headers": [["content-type", "application/json"]],
                    "body": '{"detail":"no such thing"}',
                    "encoding": "utf-8",
                },
            },
        ),
    }
    for record in records.values():
        assert set(record.data) == {"status", "owner", "lease_expires_at", "fingerprint", "result"}


def test_function_records_are_stable() -> None:
    store = MemoryStore()
    layer = Idempotency(store)

    @idempotent(layer, key_args=["order_id"], namespace="golden.charge")
    def charge(order_id: str, cents: int, note: str = "n") -> dict[str, int]:
        return {"cents": cents}

    @idempotent(layer, namespace="golden.everything")
    def everything(a: int, b: list[str], c: dict[str, float] | None = None) -> int:
        return len(b) + a - 1

    charge("o-1", 5)
    charge(order_id="o-2", cents=7, note="\u00e9")
    everything(1, ["x"], {"z": 1.5, "a": 2.0})
    records = {key.partition: _without_lease(r.data) for key, r in store._records.items()}
    assert records == {
        "idempotency:777e043dfb0dda4a3647fd4f82eeb51e60a2bb2b0e70a5c8078c4fac460244aa": {
            "status": "COMPLETED",
            "fingerprint": "6fa19ade05164f382c07d15912ed6087de4b448cbb41e735e7c7af6a5f94e04f",
            "result": {"cents": 5},
        },
        "idempotency:bc7f3ce4ba2c29fe4c11a0f8c51c2962fe4e08b08200c3a818894ffc3da2e49a": {
            "status": "COMPLETED",
            "fingerprint": "512240defd166626e5cb8c1e1110aec30c9b98c28b9018aee42ca9afd11b4039",
            "result": {"cents": 7},
        },
        "idempotency:e2f52fcf47847dc26464d313b19d927a868789860a0568eab1bd25ba9771c56f": {
            "status": "COMPLETED",
            "fingerprint": "16c34f14e28f2f6136daf520778f8a7bfc8ce7619387f82da5ea9be74c710226",
            "result": 1,
        },
    }
