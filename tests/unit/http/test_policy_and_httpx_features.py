"""ClientPolicy validation, and httpx's own features on a stalwart client (real server)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from http_app import Reply, ScriptedApp
from stalwart.http import (
    AsyncResilientTransport,
    ClientPolicy,
    ResilientTransport,
    client,
)


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"attempts": 0}, ValueError),
        ({"attempts": 2.5}, TypeError),
        ({"attempts": True}, TypeError),
        ({"read_timeout_s": 0}, ValueError),
        ({"total_s": float("inf")}, ValueError),
        ({"attempt_timeout_s": "10"}, TypeError),
        ({"backoff_base_s": 5.0, "backoff_cap_s": 1.0}, ValueError),
        ({"retry_statuses": frozenset({200, 999})}, ValueError),
        ({"retry_methods": "GET"}, TypeError),
        ({"idempotency_header": " "}, ValueError),
        ({"breaker": {"min_calls": 5}}, TypeError),
        ({"retry_budget_tokens": 0}, ValueError),
        ({"max_in_flight": 0}, ValueError),
        ({"max_queued": -1}, ValueError),
    ],
)
def test_a_wrong_policy_fails_where_it_is_written(changes: dict, error: type) -> None:
    with pytest.raises(error, match="ClientPolicy"):
        ClientPolicy(**changes)


def test_methods_are_normalised() -> None:
    policy = ClientPolicy(retry_methods={"get", "Put"}, auto_key_methods=["post"])
    assert policy.retry_methods == frozenset({"GET", "PUT"})
    assert policy.auto_key_methods == frozenset({"POST"})


def test_an_inner_transport_and_its_options_are_exclusive() -> None:
    with pytest.raises(TypeError, match="not both"):
        ResilientTransport(transport=httpx.HTTPTransport(), http2=True)
    with pytest.raises(TypeError, match="not both"):
        AsyncResilientTransport(transport=httpx.AsyncHTTPTransport(), verify=False)
    with pytest.raises(TypeError, match="not both"):
        client(transport=httpx.HTTPTransport(), limits=httpx.Limits(max_connections=1))


def test_auth_event_hooks_and_base_url_still_work(server: ScriptedApp) -> None:
    path = server.path(Reply(503), Reply(200))
    seen: list[int] = []
    policy = ClientPolicy(backoff_base_s=0.001, backoff_cap_s=0.01)
    with client(
        policy,
        base_url=server.base_url,
        auth=httpx.BasicAuth("ops", "s3cret"),
        event_hooks={"response": [lambda response: seen.append(response.status_code)]},
    ) as http:
        assert http.get(path).status_code == 200
    assert [r.headers["authorization"].startswith("Basic ") for r in server.received[path]] == [
        True,
        True,
    ]
    assert seen == [200]  # hooks see the logical request's final response


def test_a_mounted_transport_retries_for_its_host(server: ScriptedApp) -> None:
    path = server.path(Reply(503), Reply(200))
    policy = ClientPolicy(backoff_base_s=0.001, backoff_cap_s=0.01)

    async def go() -> int:
        mounts = {server.base_url: AsyncResilientTransport(policy)}
        async with httpx.AsyncClient(mounts=mounts) as http:
            return (await http.get(server.base_url + path)).status_code

    assert asyncio.run(go()) == 200
    assert server.count(path) == 2
