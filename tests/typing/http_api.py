"""Pins the public types of stalwart.http: type-checked (strict), never run."""

from __future__ import annotations

from typing import assert_type

import httpx

from stalwart.http import (
    AsyncResilientTransport,
    ClientPolicy,
    ResilientTransport,
    async_client,
    client,
    parse_retry_after,
)


def builders() -> None:
    policy = ClientPolicy(attempts=2, total_s=None)
    assert_type(client(policy, base_url="https://psp.example"), httpx.Client)
    assert_type(async_client(policy, http2=False), httpx.AsyncClient)
    assert_type(client(), httpx.Client)
    assert_type(policy.timeout(), httpx.Timeout)
    assert_type(parse_retry_after(httpx.Headers(), policy.max_retry_after_s), float | None)


def transports() -> None:
    sync: httpx.BaseTransport = ResilientTransport(ClientPolicy())
    wrapped: httpx.AsyncBaseTransport = AsyncResilientTransport(
        transport=httpx.AsyncHTTPTransport(retries=1)
    )
    httpx.Client(mounts={"https://psp.example": sync})
    httpx.AsyncClient(transport=wrapped)
