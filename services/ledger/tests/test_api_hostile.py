"""Hostile input through the real server: each gets a clear 4xx problem+json document with a
stable ``code``, and nothing is written (the tenant's accounts, transfers and balances are the
same before and after). docs/ledger.md ("Hostile input") lists what each one gets."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from api_support import client, idem, make_key, new_account, served_app, transfer
from ledger.app import MAX_BODY_BYTES, MAX_HEADER_BYTES

PROBLEM = "application/problem+json"
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[dict[str, Any]]:
    """A server; tenant acme with two funded USD accounts; tenant globex with one account."""
    url = f"sqlite:///{tmp_path_factory.mktemp('hostile')}/ledger.db"
    with (
        served_app(url) as base,
        client(base, make_key(url, "acme")) as api,
        client(base, make_key(url, "globex")) as other,
    ):
        funding = new_account(api, normal_balance="debit")["id"]
        wallet = new_account(api)["id"]
        assert transfer(api, funding, wallet, 1000).status_code == 201
        foreign = new_account(other)["id"]
        yield {
            "base": base,
            "api": api,
            "funding": funding,
            "wallet": wallet,
            "foreign": foreign,
        }


def snapshot(world: dict[str, Any]) -> Any:
    """What the tenant can see: every account, every transfer, both balances."""
    api: httpx.Client = world["api"]
    return (
        api.get("/v1/accounts", params={"limit": 100}).json()["data"],
        api.get("/v1/transfers", params={"limit": 100}).json()["data"],
        [api.get(f"/v1/accounts/{world[n]}/balance").json() for n in ("funding", "wallet")],
    )


def problem_code(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM, response.text
    document = response.json()
    assert document["status"] == status
    for marker in ("Traceback", 'File "'):
        assert marker not in response.text
    return str(document["code"])


def a_transfer(world: dict[str, Any], **fields: Any) -> dict[str, Any]:
    body = {"debit_account_id": world["funding"], "credit_account_id": world["wallet"]}
    return {**body, "amount": 100, "currency": "USD", **fields}


def post_transfer(world: dict[str, Any], body: Any) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response: httpx.Response = world["api"].post(
        "/v1/transfers", content=content, headers=JSON | idem()
    )
    return response


@pytest.fixture
def unchanged(world: dict[str, Any]) -> Iterator[None]:
    """The test's requests must write nothing."""
    before = snapshot(world)
    yield
    assert snapshot(world) == before


@pytest.mark.usefixtures("unchanged")
def test_an_oversized_body_is_413_before_it_is_read(world) -> None:
    # Valid in every other way: the limit alone refuses it (metadata values are bounded by the
    # model, so a big body is mostly whitespace here).
    padded = json.dumps(a_transfer(world)).encode()[:-1] + b" " * MAX_BODY_BYTES + b"}"
    assert problem_code(post_transfer(world, padded), 413) == "request-entity-too-large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield padded[: MAX_BODY_BYTES // 2]
        yield padded[MAX_BODY_BYTES // 2 :]

    streamed = world["api"].post("/v1/transfers", content=chunks(), headers=JSON | idem())
    assert problem_code(streamed, 413) == "request-entity-too-large"
    paths = world["api"].get("/openapi.json").json()["paths"]
    assert "413" in paths["/v1/transfers"]["post"]["responses"]
    assert "413" not in paths["/v1/transfers"]["get"]["responses"]  # no body to limit


@pytest.mark.usefixtures("unchanged")
def test_a_body_at_the_limit_is_read(world) -> None:
    body = json.dumps(a_transfer(world, amount=0)).encode()
    padded = body[:-1] + b" " * (MAX_BODY_BYTES - len(body)) + b"}"
    assert len(padded) == MAX_BODY_BYTES
    assert problem_code(post_transfer(world, padded), 422) == "validation-failed"  # amount 0


@pytest.mark.usefixtures("unchanged")
def test_oversized_headers_are_431(world) -> None:
    api: httpx.Client = world["api"]
    big = {"X-Padding": "a" * MAX_HEADER_BYTES}
    assert problem_code(api.get("/v1/accounts", headers=big), 431) == (
        "request-header-fields-too-large"
    )
    many = {f"X-Padding-{i}": "a" * 100 for i in range(MAX_HEADER_BYTES // 100)}
    assert problem_code(
        api.post("/v1/transfers", json=a_transfer(world), headers=many | idem()), 431
    )


@pytest.mark.usefixtures("unchanged")
def test_huge_headers_get_an_answer_not_a_hang(world) -> None:
    """uvicorn with httptools buffers a request's headers without a limit of its own (a
    40 MB header was answered 200 before the kit's limit): the answer is the kit's 431."""
    host, port = world["base"].removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        raw.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8_000_000 + b"\r\n\r\n")
        status_line = raw.recv(64).split(b"\r\n")[0]
    assert status_line == b"HTTP/1.1 431 Request Header Fields Too Large"


@pytest.mark.usefixtures("unchanged")
def test_deeply_nested_json_is_400(world) -> None:
    deep = '{"a":' * 10_000 + '"x"' + "}" * 10_000
    body = json.dumps(a_transfer(world)).encode()[:-1] + b', "metadata": ' + deep.encode() + b"}"
    assert problem_code(post_transfer(world, body), 400) == "bad-request"
    nested_lists = json.dumps(a_transfer(world)).encode()[:-1] + b', "x": ' + b"[" * 10_000
    assert problem_code(post_transfer(world, nested_lists + b"]" * 10_000 + b"}"), 400)


@pytest.mark.usefixtures("unchanged")
def test_invalid_utf8_is_400(world) -> None:
    body = json.dumps(a_transfer(world, external_id="XX")).encode().replace(b"XX", b"\xff\xfe")
    assert problem_code(post_transfer(world, body), 400) == "bad-request"
    account = b'{"currency": "USD", "name": "\xc3\x28"}'
    response = world["api"].post("/v1/accounts", content=account, headers=JSON)
    assert problem_code(response, 400) == "bad-request"


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize("amount", [2**53, 2**63, 2**64, 10**100, 0, -1, -(2**64), 1.5])
def test_amounts_outside_1_to_2_53_minus_1_are_422(world, amount) -> None:
    assert problem_code(post_transfer(world, a_transfer(world, amount=amount)), 422) == (
        "validation-failed"
    )


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize("amount", ["100", 100.0, "1e2", True])
def test_an_amount_is_a_json_integer_never_a_string_float_or_boolean(world, amount) -> None:
    assert problem_code(post_transfer(world, a_transfer(world, amount=amount)), 422) == (
        "validation-failed"
    )


@pytest.mark.usefixtures("unchanged")
def test_an_integer_literal_of_5000_digits_is_400(world) -> None:
    body = json.dumps(a_transfer(world, amount=0)).replace('"amount": 0', '"amount": ' + "9" * 5000)
    assert problem_code(post_transfer(world, body.encode()), 400) == "bad-request"


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize("currency", ["XYZ", "usd", "", "US", "€"])
def test_unknown_currencies_are_422(world, currency) -> None:
    assert problem_code(post_transfer(world, a_transfer(world, currency=currency)), 422) == (
        "validation-failed"
    )
    account = world["api"].post("/v1/accounts", json={"currency": currency, "name": "n"})
    assert problem_code(account, 422) == "validation-failed"


@pytest.mark.usefixtures("unchanged")
def test_another_tenants_account_in_a_transfer_is_404(world) -> None:
    foreign = world["foreign"]
    for side in ("debit_account_id", "credit_account_id"):
        response = post_transfer(world, a_transfer(world, **{side: foreign}))
        assert problem_code(response, 404) == "not_found"
    batch = {"transfers": [a_transfer(world), a_transfer(world, credit_account_id=foreign)]}
    response = world["api"].post("/v1/transfers/batch", json=batch, headers=idem())
    assert problem_code(response, 404) == "not_found"
    assert response.json()["index"] == 1


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml", None]
)
def test_a_body_that_is_not_json_is_refused(world, content_type) -> None:
    body = json.dumps(a_transfer(world)).encode()
    headers = idem() | ({"content-type": content_type} if content_type else {})
    response = world["api"].post("/v1/transfers", content=body, headers=headers)
    assert problem_code(response, 422) == "validation-failed"
