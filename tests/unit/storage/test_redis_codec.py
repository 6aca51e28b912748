# Copyright 2026 stalwart contributors
"""Pure parts of the Redis engine: key layout, bounds, cursors, URL options, error mapping."""

from __future__ import annotations

import pytest
import redis
from redis import exceptions as redis_errors
from redis.crc import key_slot

from stalwart.storage import (
    Create,
    Increment,
    InvalidRecord,
    Key,
    StorageError,
    StoreConfigurationError,
    StoreUnavailable,
)
from stalwart.storage._redis_codec import (
    MAX_ITEM_BYTES,
    Layout,
    create_call,
    increment_call,
    parse_store_url,
    partition_key,
    query_bounds,
    transact_call,
    translate_error,
)
from stalwart.storage.redis import RedisStore

LAYOUT = Layout("app")


def offline_store() -> RedisStore:
    """A store on a port nothing listens on: what it rejects, it rejects before any I/O
    (StoreUnavailable would show an attempt)."""
    return RedisStore(redis.Redis(port=1, socket_connect_timeout=1), prefix="app")


@pytest.mark.parametrize(
    ("prefix", "partition", "expected"),
    [
        ("app", "acct-1", "{app:acct-1}"),
        ("app", "a:b", "{app:a%3Ab}"),
        ("a:b", "c", "{a%3Ab:c}"),
        ("}x", "{y}", "{%7Dx:%7By%7D}"),
        ("p%", "%7B", "{p%25:%257B}"),
    ],
)
def test_partition_key_escapes_tag_delimiters(prefix, partition, expected):
    assert partition_key(prefix, partition) == expected


def test_prefix_and_partition_never_collide_through_the_separator():
    assert partition_key("a:b", "c") != partition_key("a", "b:c")


@pytest.mark.parametrize("partition", ["acct-1", "}", "{", "a}b{c", "ü:{x}"])
def test_every_key_of_a_partition_hashes_to_one_slot(partition):
    index = LAYOUT.index_key(partition)
    slots = {key_slot(index)}
    for sort in ["", "a", "}", "{z}", "x" * 300]:
        slots.add(key_slot(LAYOUT.record_key(Key(partition, sort))))
    assert len(slots) == 1


def test_record_and_index_keys_are_distinct_and_namespaced():
    assert LAYOUT.index_key("p") == b"{app:p}i"
    assert LAYOUT.record_key(Key("p", "")) == b"{app:p}r:"
    assert LAYOUT.record_key(Key("p", "i")) == b"{app:p}r:i"


@pytest.mark.parametrize(
    ("prefix", "after", "descending", "expected"),
    [
        (b"", None, False, (b"-", b"+")),
        (b"", None, True, (b"+", b"-")),
        (b"ab", None, False, (b"[ab", b"(ab\xff")),
        (b"ab", None, True, (b"(ab\xff", b"[ab")),
        (b"", b"k", False, (b"(k", b"+")),
        (b"ab", b"abc", False, (b"(abc", b"(ab\xff")),
        (b"ab", b"abc", True, (b"(abc", b"[ab")),
        # a cursor outside the prefix range is clamped, not trusted
        (b"m", b"a", False, (b"[m", b"(m\xff")),
        (b"m", b"z", True, (b"(m\xff", b"[m")),
    ],
)
def test_query_bounds(prefix, after, descending, expected):
    assert query_bounds(prefix, after, descending=descending) == expected


@pytest.mark.parametrize("limit", [0, 1001, -1, True, 2.0])
def test_query_limit_is_validated(limit):
    with pytest.raises(InvalidRecord):
        offline_store().query("p", limit=limit)


def test_oversize_data_is_rejected_before_io():
    create_call(LAYOUT, Key("p"), {"x": "a" * (MAX_ITEM_BYTES - 10)}, ttl=None, now=0.0)
    with pytest.raises(InvalidRecord, match="limit"):
        create_call(LAYOUT, Key("p"), {"x": "a" * MAX_ITEM_BYTES}, ttl=None, now=0.0)


@pytest.mark.parametrize(
    "bad",
    [
        lambda: create_call(LAYOUT, Key("p", "\ud800"), {}, ttl=None, now=0.0),
        lambda: create_call(LAYOUT, Key("p"), {"x": "\udfff"}, ttl=None, now=0.0),
        lambda: offline_store().create(Key(""), {}),
        lambda: create_call(LAYOUT, Key("p"), {}, ttl=0, now=0.0),
        lambda: increment_call(LAYOUT, Key("p"), "a.b", 1, ttl=None, now=0.0),
        lambda: increment_call(LAYOUT, Key("p"), "a", float("nan"), ttl=None, now=0.0),
        lambda: increment_call(LAYOUT, Key("p"), "a", True, ttl=None, now=0.0),
    ],
)
def test_bad_input_is_invalid_record(bad):
    with pytest.raises(InvalidRecord):
        bad()


def test_ttl_sets_physical_expiry_with_grace():
    call = create_call(LAYOUT, Key("p"), {}, ttl=2.5, now=100.0)
    # ARGV: now, data, expires_at, pexpire_ms, member
    assert call.args[2] == "102.5"
    assert call.args[3] == "3500"


def test_each_call_gets_its_own_replay_marker_in_its_partition_slot():
    first = create_call(LAYOUT, Key("p"), {}, ttl=None, now=0.0)
    second = create_call(LAYOUT, Key("p"), {}, ttl=None, now=0.0)
    assert first.keys[2] != second.keys[2]
    assert first.keys[2].startswith(LAYOUT.tag("p").encode() + b"w:")
    assert len(create_call(LAYOUT, Key("p"), {}, ttl=None, now=0.0, remember=False).keys) == 2
    operations = [Increment(Key("q", "a"), "n"), Increment(Key("q", "b"), "n")]
    call = transact_call(LAYOUT, operations, now=0.0, single_slot=True)
    assert len(call.keys) == 5
    assert call.keys[4].startswith(LAYOUT.tag("q").encode() + b"w:")


def test_cluster_mode_rejects_cross_partition_transactions():
    operations = [Create(Key("a"), {}), Increment(Key("b"), "n")]
    transact_call(LAYOUT, operations, now=0.0, single_slot=False)
    with pytest.raises(InvalidRecord, match="one partition"):
        transact_call(LAYOUT, operations, now=0.0, single_slot=True)
    same = [Create(Key("a", "1"), {}), Increment(Key("a", "2"), "n")]
    transact_call(LAYOUT, same, now=0.0, single_slot=True)


def test_transaction_item_limit():
    operations = [Create(Key("p", str(i)), {}) for i in range(101)]
    with pytest.raises(InvalidRecord, match="at most 100"):
        offline_store().transact(operations)


def test_url_defaults():
    options = parse_store_url("redis://127.0.0.1:6379/0")
    assert options.client_url == "redis://127.0.0.1:6379/0"
    assert options.prefix == "stalwart"
    assert options.socket_connect_timeout == 2.0
    assert options.socket_timeout == 5.0
    assert options.health_check_interval == 30
    assert options.retries == 0
    assert options.cluster is False


def test_url_overrides_and_passthrough():
    options = parse_store_url(
        "rediss://u:p@h:6380/3?prefix=x&socket_connect_timeout=0.5&timeout=1.5"
        "&health_check_interval=0&retries=2&cluster=true&max_connections=7&client_name=c"
    )
    assert options.client_url == "rediss://u:p@h:6380/3?max_connections=7&client_name=c"
    assert (options.prefix, options.socket_connect_timeout, options.socket_timeout) == (
        "x",
        0.5,
        1.5,
    )
    assert (options.health_check_interval, options.retries, options.cluster) == (0, 2, True)


@pytest.mark.parametrize(
    "url",
    [
        "http://h/0",
        "redis://h/0?prefix=",
        "redis://h/0?timeout=0",
        "redis://h/0?timeout=abc",
        "redis://h/0?socket_connect_timeout=inf",
        "redis://h/0?retries=6",
        "redis://h/0?retries=x",
        "redis://h/0?cluster=maybe",
        "redis://h/0?prefx=typo",
        "redis://h/0?transport=fast",
        "redis://h:port/0",
        "redis://h:99999/0",
        "redis://h/db1",
        "redis://h/0?db=x",
        "redis://h/0?max_connections=0",
        "redis://h/0?ssl_ca_certs=/ca.pem",
        "rediss://h/0?ssl_cert_reqs=sometimes",
        "redis://h/0?protocol=4",
        "unix://",
        "unix:///tmp/r.sock?socket_keepalive=true",
        "redis://[::1/0",
    ],
)
def test_bad_urls_are_configuration_errors(url):
    """Malformed URLs, unknown parameters, wrong values: StoreConfigurationError (a
    ValueError too), never a raw ValueError from urllib or redis-py, never InvalidRecord."""
    with pytest.raises(StoreConfigurationError):
        parse_store_url(url)


def test_unknown_parameters_are_named_with_the_known_ones():
    with pytest.raises(StoreConfigurationError, match=r"'prefx'.*known:.*prefix.*transport"):
        parse_store_url("redis://h/0?prefx=typo")


def test_unix_and_transport_urls():
    options = parse_store_url("unix:///run/redis.sock?db=2&prefix=app&transport=redis-py")
    assert (options.client_url, options.prefix) == ("unix:///run/redis.sock?db=2", "app")
    assert options.transport == "redis-py"
    assert parse_store_url("redis://h/0").transport == "auto"


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (redis_errors.ConnectionError("refused"), StoreUnavailable),
        (redis_errors.TimeoutError("timed out"), StoreUnavailable),
        (redis_errors.BusyLoadingError("loading"), StoreUnavailable),
        (redis_errors.ReadOnlyError("replica"), StoreUnavailable),
        (redis_errors.OutOfMemoryError("oom"), StoreUnavailable),
        (redis_errors.ResponseError("BUSY Redis is busy running a script"), StoreUnavailable),
        (redis_errors.ResponseError("TRYAGAIN multiple keys"), StoreUnavailable),
        (redis_errors.ResponseError("STALWART_INVALID field x is not a number"), InvalidRecord),
        (redis_errors.ResponseError("WRONGTYPE Operation against a key"), StorageError),
        (redis_errors.AuthenticationError("bad password"), StoreConfigurationError),
        (redis_errors.ResponseError("NOAUTH Authentication required."), StoreConfigurationError),
        (redis_errors.ResponseError("WRONGPASS invalid password"), StoreConfigurationError),
        (redis_errors.NoPermissionError("no permissions"), StoreConfigurationError),
        (redis_errors.DataError("bad arg"), StorageError),
    ],
)
def test_error_mapping(error, expected):
    mapped = translate_error(error)
    assert type(mapped) is expected


def test_invalid_code_is_stripped_from_message():
    mapped = translate_error(redis_errors.ResponseError("STALWART_INVALID field x is bad"))
    assert str(mapped) == "field x is bad"
