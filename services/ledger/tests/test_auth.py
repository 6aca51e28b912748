"""API keys: issued once in plaintext, stored hashed, bound to one tenant, revocable."""

from __future__ import annotations

import asyncio

import pytest
from ledger.auth import (
    DEVELOPMENT_TENANT,
    MAX_KEY_CACHE_S,
    KeyCache,
    authenticate,
    create_key,
    ensure_development_key,
    parse_key,
    revoke_key,
)

from stalwart.storage import open_async_store, open_store
from stalwart.web import HttpProblem


@pytest.fixture
def store_url(tmp_path):
    return f"sqlite:///{tmp_path}/keys.db"


def tenant_of(url: str, presented: str | None, cache: KeyCache | None = None) -> str:
    async def check() -> str:
        store = open_async_store(url)
        try:
            return await authenticate(store, presented, cache)
        finally:
            await store.close()

    return asyncio.run(check())


def test_a_key_is_stored_hashed_and_authenticates_its_tenant(store_url):
    with open_store(store_url) as store:
        issued = create_key(store, "acme")
        parsed = parse_key(issued.plaintext)
        assert parsed is not None
        (record,) = store.query("api-keys").records
    assert record.key.sort == issued.key_id
    assert parsed[1] not in str(record.data)  # only the digest is stored
    assert record.data["tenant"] == "acme"
    assert tenant_of(store_url, issued.plaintext) == "acme"


@pytest.mark.parametrize(
    "presented",
    [None, "", "Basic abc", "ldg_0123456789abcdef_wrong-secret", "ldg_nothex_secret"],
)
def test_missing_malformed_and_wrong_keys_are_401(store_url, presented):
    with open_store(store_url) as store:
        create_key(store, "acme")
    with pytest.raises(HttpProblem) as refused:
        tenant_of(store_url, presented)
    assert refused.value.status == 401
    assert refused.value.headers == {"WWW-Authenticate": "Bearer"}


def test_a_wrong_secret_for_an_existing_key_id_is_refused(store_url):
    with open_store(store_url) as store:
        issued = create_key(store, "acme")
    forged = f"ldg_{issued.key_id}_{'A' * 43}"
    with pytest.raises(HttpProblem):
        tenant_of(store_url, forged)


def test_a_revoked_key_is_refused_and_revoking_twice_says_so(store_url):
    with open_store(store_url) as store:
        issued = create_key(store, "acme")
        kept = create_key(store, "acme")
        assert revoke_key(store, issued.key_id) is True
        assert revoke_key(store, issued.key_id) is False
        assert revoke_key(store, "0123456789abcdef") is False
    with pytest.raises(HttpProblem):
        tenant_of(store_url, issued.plaintext)
    assert tenant_of(store_url, kept.plaintext) == "acme"


def test_the_development_key_is_made_only_on_a_store_without_keys(store_url):
    with open_store(store_url) as store:
        first = ensure_development_key(store)
        assert first is not None
        assert first.tenant == DEVELOPMENT_TENANT
        assert ensure_development_key(store) is None


@pytest.mark.parametrize("name", ["", "Acme", "a/b", "-x", "x" * 64])
def test_tenant_names_that_cannot_be_part_of_a_storage_key_are_refused(store_url, name):
    with open_store(store_url) as store, pytest.raises(ValueError, match="invalid tenant"):
        create_key(store, name)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_cached_key_is_trusted_until_its_time_is_up_then_read_again(store_url):
    clock = Clock()
    cache = KeyCache(ttl_s=1.0, clock=clock)
    with open_store(store_url) as store:
        issued = create_key(store, "acme")
        assert tenant_of(store_url, issued.plaintext, cache) == "acme"  # read and kept
        assert revoke_key(store, issued.key_id)
    clock.now += 0.9
    assert tenant_of(store_url, issued.plaintext, cache) == "acme"  # not read again yet
    forged = f"ldg_{issued.key_id}_{'A' * 43}"
    with pytest.raises(HttpProblem):  # the secret is compared on every request
        tenant_of(store_url, forged, cache)
    clock.now += 0.1
    with pytest.raises(HttpProblem) as refused:  # read again: revoked
        tenant_of(store_url, issued.plaintext, cache)
    assert refused.value.status == 401
    with pytest.raises(HttpProblem):  # and a refused key is not kept
        tenant_of(store_url, issued.plaintext, cache)


def test_the_key_cache_is_bounded_in_time_and_size(store_url):
    with pytest.raises(ValueError, match="ttl_s"):
        KeyCache(ttl_s=MAX_KEY_CACHE_S + 0.5)
    off = KeyCache(ttl_s=0)
    off.put("k", {"tenant": "acme"})
    assert off.get("k") is None
    small = KeyCache(ttl_s=1.0, max_keys=2)
    for key_id in ("a", "b", "a", "c"):  # "a" used again: "b" is the oldest
        small.put(key_id, {"tenant": key_id})
    assert [small.get(k) is not None for k in ("a", "b", "c")] == [True, False, True]
