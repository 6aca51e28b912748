# Copyright 2026 stalwart contributors
"""Pure DynamoDB wire logic: item codec, builders, decoders and plans driven by scripted replies.

These prove the shared logic in isolation; the engine itself is proven against a real moto
server in test_dynamodb_store.py and the conformance suite.
"""

from __future__ import annotations

import doctest
import importlib
import json
import math
import re
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import (
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from hypothesis import given
from hypothesis import strategies as st

from stalwart.storage import (
    Check,
    Create,
    Delete,
    Increment,
    InvalidRecord,
    Key,
    Record,
    Replace,
    StorageError,
    StoreConfigurationError,
    StoreUnavailable,
    TransactionConflict,
)
from stalwart.storage import _dynamodb_core as core
from stalwart.storage._query import decode_cursor
from stalwart.storage.dynamodb import ConnectionSettings
from unit.storage.store_plans import dynamodb as checked

if TYPE_CHECKING:
    from collections.abc import Generator

NOW = 1_800_000_000.0
K = Key("p", "s")


def clock() -> float:
    return NOW


def failure(code: str, *, status: int = 400, **extra: Any) -> core.Failure:
    response = {
        "Error": {"Code": code, "Message": f"{code} happened"},
        "ResponseMetadata": {"HTTPStatusCode": status},
        **extra,
    }
    return core.failure_from_response(response, RuntimeError(code))


def drive[T](plan: Generator[Any, Any, T], replies: list[Any]) -> tuple[list[Any], T]:
    """Run a plan on scripted replies; return the steps it took and its result."""
    steps: list[Any] = []
    reply: Any = None
    try:
        while True:
            step = plan.send(reply)
            steps.append(step)
            reply = None if isinstance(step, core.Sleep) else replies.pop(0)
    except StopIteration as done:
        assert not replies, "the plan ignored scripted replies"
        return steps, done.value


def operations(steps: list[Any]) -> list[str]:
    return [s.operation if isinstance(s, core.Call) else "sleep" for s in steps]


# ---------------------------------------------------------------------------------------------
# Numbers and items
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "0"),
        (-0.0, "0"),
        (1, "1"),
        (2.5, "2.5"),
        (0.1, "0.1"),
        (-7, "-7"),
        (10**50, "1" + "0" * 50),
        (1e-130, "0." + "0" * 129 + "1"),
        (10**38 - 1, "9" * 38),
        (10**38 + 1, None),
        (1e126, None),
        (1e-131, None),
        (1 / 3, "0.3333333333333333"),
    ],
)
def test_dynamo_number(value: float, expected: str | None) -> None:
    assert core.dynamo_number(value) == expected


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.text(max_size=5)
    | st.floats(allow_nan=False, allow_infinity=False)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)


def typed(value: Any) -> str:
    """JSON that tells 1 from 1.0 (and ignores top-level -0.0's sign, documented)."""
    return json.dumps(value, sort_keys=True)


@given(
    st.dictionaries(st.text(max_size=6), json_values, max_size=6),
    st.none() | st.floats(min_value=1, max_value=4e9),
)
def test_item_round_trip_keeps_json_types(data: dict[str, Any], expires_at: float | None) -> None:
    normalized = core.normalize_data(data)
    item = core.encode_item(K, normalized, 3, expires_at)
    record = core.decode_item(item)
    expected = {
        name: 0.0 if value == 0 and isinstance(value, float) else value
        for name, value in normalized.items()
    }
    assert typed(record.data) == typed(expected)
    assert record.version == 3
    assert record.expires_at == expires_at
    if expires_at is None:
        assert item["exp"] == {"NULL": True}
    else:
        assert item["exp"] == {"N": str(math.ceil(expires_at))}


def test_empty_sort_key_is_stored_as_nul() -> None:
    assert core.key_attributes(Key("p")) == {"pk": {"S": "p"}, "sk": {"S": "\x00"}}
    assert core.decode_sort("\x00") == ""
    assert core.decode_sort("a") == "a"


def test_key_byte_limits() -> None:
    core.check_key_bytes(Key("a" * 1024, "b" * 1024))
    with pytest.raises(InvalidRecord, match="2048"):
        core.check_key_bytes(Key("€" * 700))
    with pytest.raises(InvalidRecord, match="1024"):
        core.check_key_bytes(Key("p", "é" * 513))


def test_liveness() -> None:
    live = core.encode_item(K, {}, 1, NOW + 1)
    assert core.live_record(live, NOW) is not None
    assert core.live_record(live, NOW + 1) is None
    assert core.live_record(core.encode_item(K, {}, 1, None), 1e30) is not None
    assert core.live_record(None, NOW) is None
    assert core.live_record({"pk": {"S": "p"}, "sk": {"S": "s"}}, NOW) is None  # half-written


# ---------------------------------------------------------------------------------------------
# Builders: every placeholder used is defined and every defined one is used
# ---------------------------------------------------------------------------------------------


def placeholders_match(request: dict[str, Any]) -> None:
    text = " ".join(
        str(request.get(part, ""))
        for part in (
            "ConditionExpression",
            "UpdateExpression",
            "KeyConditionExpression",
            "FilterExpression",
        )
    )
    assert set(re.findall(r"#\w+", text)) == set(request.get("ExpressionAttributeNames", {}))
    assert set(re.findall(r":\w+", text)) == set(request.get("ExpressionAttributeValues", {}))


def all_requests() -> list[dict[str, Any]]:
    item = core.encode_item(K, {"a": 1}, 1, None)
    requests = [
        core.put_request("t", item, core.create_condition(NOW)),
        core.put_request("t", item, core.version_condition(3, NOW)),
        core.delete_request("t", K, None, NOW),
        core.delete_request("t", K, 2, NOW),
        core.increment_request("t", K, "n", 1, expires_at=None, now=NOW),
        core.increment_request("t", K, "n", 0.5, expires_at=NOW + 5, now=NOW),
        core.query_request(
            "t", "p", prefix="", limit=5, descending=False, start_sort=None, now=NOW
        ),
        core.query_request(
            "t", "p", prefix="x", limit=5, descending=True, start_sort="x1", now=NOW
        ),
    ]
    for operation in (
        Create(K, {}),
        Replace(K, {}, 1),
        Delete(K, 1),
        Check(K, None),
        Check(K, 4),
        Increment(K, "n"),
    ):
        prepared = core._prepare(operation, NOW)
        request, _ = core._transact_item("t", prepared, None, NOW)
        requests.extend(request.values())
    return requests


@pytest.mark.parametrize("request_", all_requests())
def test_placeholders(request_: dict[str, Any]) -> None:
    placeholders_match(request_)


def test_conditions_return_old_items() -> None:
    for request in all_requests():
        if "ConditionExpression" in request:
            assert request["ReturnValuesOnConditionCheckFailure"] == "ALL_OLD"


def test_increment_request_shape() -> None:
    request = core.increment_request("t", K, "n", 0.5, expires_at=None, now=NOW)
    assert request["ReturnValues"] == "ALL_NEW"
    assert request["UpdateExpression"].endswith("ADD #fl :fl")
    assert request["ExpressionAttributeValues"][":fl"] == {"SS": ["n"]}
    assert (
        "ADD"
        not in core.increment_request("t", K, "n", 1, expires_at=None, now=NOW)["UpdateExpression"]
    )


def test_query_request_shape() -> None:
    request = core.query_request(
        "t", "p", prefix="ab", limit=7, descending=True, start_sort="ab1", now=NOW
    )
    assert request["ConsistentRead"] is True
    assert request["ScanIndexForward"] is False
    assert request["Limit"] == 7
    assert request["ExclusiveStartKey"] == {"pk": {"S": "p"}, "sk": {"S": "ab1"}}


# ---------------------------------------------------------------------------------------------
# Error mapping
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
    ],
)
def test_transient_codes_are_store_unavailable(code: str) -> None:
    assert isinstance(core.map_failure(failure(code)), StoreUnavailable)


def test_other_codes() -> None:
    assert isinstance(core.map_failure(failure("Whatever", status=503)), StoreUnavailable)
    size = failure("ValidationException")
    assert isinstance(core.map_failure(size), InvalidRecord)
    missing = core.map_failure(failure("ResourceNotFoundException"))
    assert type(missing) is StorageError
    assert type(core.map_failure(failure("AccessDeniedException"))) is StorageError


@pytest.mark.parametrize(
    "exc",
    [
        EndpointConnectionError(endpoint_url="http://x"),
        ConnectTimeoutError(endpoint_url="http://x"),
        ReadTimeoutError(endpoint_url="http://x"),
        ConnectionResetError(),
        TimeoutError(),
    ],
)
def test_transport_errors_are_store_unavailable(exc: BaseException) -> None:
    assert isinstance(core.map_transport_error(exc), StoreUnavailable)


def test_configuration_errors_are_not_transient() -> None:
    error = core.map_transport_error(NoCredentialsError())
    assert type(error) is StorageError


def test_cancellation_reasons() -> None:
    ops = [Create(Key("a"), {}), Replace(Key("b"), {}, 2), Increment(Key("c"), "n")]
    old = core.encode_item(Key("b"), {"x": 1}, 5, None)
    reasons = [{"Code": "None"}, {"Code": "ConditionalCheckFailed", "Item": old}, {"Code": "None"}]
    error = core.decode_cancellation(
        failure("TransactionCanceledException", CancellationReasons=reasons),
        ops,
        NOW,
        frozenset({2}),
    )
    assert isinstance(error, TransactionConflict)
    assert error.index == 1
    assert error.operation == ops[1]
    assert error.current == Record(Key("b"), {"x": 1}, 5, None)
    assert "version 2" in error.reason
    only_increment = [{"Code": "None"}, {"Code": "None"}, {"Code": "ConditionalCheckFailed"}]
    retry = core.decode_cancellation(
        failure("TransactionCanceledException", CancellationReasons=only_increment),
        ops,
        NOW,
        frozenset({2}),
    )
    assert retry is None
    throttled = [{"Code": "ThrottlingError"}, {"Code": "None"}, {"Code": "None"}]
    assert isinstance(
        core.decode_cancellation(
            failure("TransactionCanceledException", CancellationReasons=throttled),
            ops,
            NOW,
            frozenset(),
        ),
        StoreUnavailable,
    )
    racing = [{"Code": "None"}, {"Code": "TransactionConflict"}, {"Code": "None"}]
    conflict = core.decode_cancellation(
        failure("TransactionCanceledException", CancellationReasons=racing), ops, NOW, frozenset()
    )
    assert isinstance(conflict, TransactionConflict)
    assert conflict.index == 1
    increment_busy = [{"Code": "None"}, {"Code": "None"}, {"Code": "TransactionConflict"}]
    busy = failure("TransactionCanceledException", CancellationReasons=increment_busy)
    assert core.decode_cancellation(busy, ops, NOW, frozenset({2})) is None
    invalid = [
        {"Code": "ValidationError", "Message": "too big"},
        {"Code": "None"},
        {"Code": "None"},
    ]
    assert isinstance(
        core.decode_cancellation(
            failure("TransactionCanceledException", CancellationReasons=invalid),
            ops,
            NOW,
            frozenset(),
        ),
        InvalidRecord,
    )
    expired_old = core.encode_item(Key("a"), {}, 1, NOW - 1)
    stale = [
        {"Code": "ConditionalCheckFailed", "Item": expired_old},
        {"Code": "None"},
        {"Code": "None"},
    ]
    error = core.decode_cancellation(
        failure("TransactionCanceledException", CancellationReasons=stale), ops, NOW, frozenset()
    )
    assert isinstance(error, TransactionConflict)
    assert error.current is None


# ---------------------------------------------------------------------------------------------
# Plans on scripted replies
# ---------------------------------------------------------------------------------------------


def test_validation_happens_before_any_request() -> None:
    bad_plans = [
        checked.create("t", Key(""), {}, ttl=None, clock=clock),
        checked.create("t", K, {"x": object()}, ttl=None, clock=clock),
        checked.create("t", K, {}, ttl=-1, clock=clock),
        checked.replace("t", K, {}, expected_version=0, ttl=None, clock=clock),
        checked.delete("t", K, True, clock),  # type: ignore[arg-type]
        checked.increment("t", K, "a.b", 1, ttl=None, clock=clock),
        checked.increment("t", K, "n", math.inf, ttl=None, clock=clock),
        checked.increment("t", K, "n", 10**40 + 1, ttl=None, clock=clock),
        checked.query("t", "p", prefix="\x00", limit=1, cursor=None, descending=False, clock=clock),
        checked.transact("t", [Create(K, {}), Delete(K)], clock),
        checked.transact("t", [Replace(K, {"a": math.nan}, 1)], clock),
    ]
    for plan in bad_plans:
        with pytest.raises(InvalidRecord):
            next(plan)


def test_increment_plan_expired_path_and_emulator_retry() -> None:
    expired = core.encode_item(K, {"n": 10, "x": "old"}, 4, NOW - 1)
    steps, record = drive(
        checked.increment("t", K, "n", 2, ttl=None, clock=clock),
        [
            failure("ConditionalCheckFailedException", Item=expired),
            {"ResponseMetadata": {}},
        ],
    )
    assert operations(steps) == ["update_item", "put_item"]
    assert record == Record(K, {"n": 2}, 1, None)
    assert steps[1].request["ConditionExpression"] == "attribute_not_exists(#pk) OR #ea <= :now"
    half_written = {"pk": {"S": "p"}, "sk": {"S": "s"}}
    after = core.encode_item(K, {"n": 3}, 2, None)
    steps, record = drive(
        checked.increment("t", K, "n", 1, ttl=None, clock=clock),
        [
            failure("ConditionalCheckFailedException", Item=half_written),
            {"Attributes": after},
        ],
    )
    assert operations(steps) == ["update_item", "update_item"]
    assert record.data == {"n": 3}
    text = core.encode_item(K, {"n": "three"}, 2, None)
    with pytest.raises(InvalidRecord):
        drive(
            checked.increment("t", K, "n", 1, ttl=None, clock=clock),
            [failure("ConditionalCheckFailedException", Item=text)],
        )
    with pytest.raises(StoreUnavailable):
        drive(
            checked.increment("t", K, "n", 1, ttl=None, clock=clock),
            [failure("ThrottlingException")],
        )


def test_transact_plan_retries_increments_with_backoff_then_gives_up() -> None:
    ops = [Increment(K, "n", 2), Delete(Key("other"))]
    live = core.encode_item(K, {"n": 1, "keep": True}, 7, NOW + 100)
    lost = failure(
        "TransactionCanceledException",
        CancellationReasons=[{"Code": "ConditionalCheckFailed"}, {"Code": "None"}],
    )
    steps, results = drive(
        checked.transact("t", ops, clock),
        [
            {"Responses": [{"Item": live}]},
            lost,
            {"Responses": [{"Item": live}]},
            {},
        ],
    )
    assert operations(steps) == [
        "transact_get_items",
        "transact_write_items",
        "sleep",
        "transact_get_items",
        "transact_write_items",
    ]
    assert results == [Record(K, {"n": 3, "keep": True}, 8, NOW + 100), None]
    put = steps[-1].request["TransactItems"][0]["Put"]
    assert put["ExpressionAttributeValues"][":expected"] == {"N": "7"}
    replies: list[Any] = []
    for _ in range(core.CONTENTION_ATTEMPTS):
        replies += [{"Responses": [{"Item": live}]}, lost]
    with pytest.raises(StoreUnavailable):
        drive(checked.transact("t", ops, clock), replies)


def test_transact_increment_from_snapshot() -> None:
    float_item = core.encode_item(K, {"n": 1.5}, 2, None)
    _, results = drive(
        checked.transact("t", [Increment(K, "n", 1)], clock),
        [{"Responses": [{"Item": float_item}]}, {}],
    )
    assert results == [Record(K, {"n": 2.5}, 3, None)]
    _, results = drive(
        checked.transact("t", [Increment(K, "m", 1, ttl=5)], clock),
        [{"Responses": [{"Item": float_item}]}, {}],
    )
    assert results == [Record(K, {"n": 1.5, "m": 1}, 3, None)]
    expired = core.encode_item(K, {"n": 9}, 2, NOW)
    _, results = drive(
        checked.transact("t", [Increment(K, "n", 1, ttl=5)], clock),
        [{"Responses": [{"Item": expired}]}, {}],
    )
    assert results == [Record(K, {"n": 1}, 1, NOW + 5)]
    text = core.encode_item(K, {"n": "x"}, 2, None)
    with pytest.raises(InvalidRecord):
        drive(
            checked.transact("t", [Increment(K, "n", 1)], clock),
            [{"Responses": [{"Item": text}]}],
        )


def test_transact_without_increment_is_one_request() -> None:
    steps, results = drive(checked.transact("t", [Create(K, {"a": 1}, ttl=2)], clock), [{}])
    assert operations(steps) == ["transact_write_items"]
    assert results == [Record(K, {"a": 1}, 1, NOW + 2)]


def test_query_plan_fills_the_page_across_filtered_pages() -> None:
    def item(sort: str) -> dict[str, Any]:
        return core.encode_item(Key("p", sort), {}, 1, None)

    steps, page = drive(
        checked.query("t", "p", prefix="", limit=2, cursor=None, descending=False, clock=clock),
        [
            {"Items": [item("a")], "LastEvaluatedKey": {"pk": {"S": "p"}, "sk": {"S": "b"}}},
            {"Items": [item("c"), item("d")], "LastEvaluatedKey": {"pk": {}, "sk": {"S": "d"}}},
        ],
    )
    assert [s.request["Limit"] for s in steps] == [3, 2]
    assert steps[1].request["ExclusiveStartKey"]["sk"] == {"S": "b"}
    assert [r.key.sort for r in page.records] == ["a", "c"]
    assert page.cursor is not None
    assert decode_cursor(page.cursor, "p") == "c"
    _, last = drive(
        checked.query(
            "t", "p", prefix="", limit=2, cursor=page.cursor, descending=False, clock=clock
        ),
        [{"Items": [item("d")]}],
    )
    assert last.cursor is None


def test_create_table_plan() -> None:
    steps, _ = drive(
        core.create_table_plan("t", 5),
        [
            failure("ResourceInUseException"),
            {"Table": {"TableStatus": "CREATING"}},
            {"Table": {"TableStatus": "ACTIVE"}},
            {"TimeToLiveDescription": {"TimeToLiveStatus": "DISABLED"}},
            {},
        ],
    )
    assert operations(steps) == [
        "create_table",
        "describe_table",
        "sleep",
        "describe_table",
        "describe_time_to_live",
        "update_time_to_live",
    ]
    assert steps[0].request["BillingMode"] == "PAY_PER_REQUEST"
    assert steps[-1].request["TimeToLiveSpecification"] == {"Enabled": True, "AttributeName": "exp"}
    with pytest.raises(StorageError, match="TTL"):
        drive(
            core.create_table_plan("t", 5),
            [
                {},
                {"Table": {"TableStatus": "ACTIVE"}},
                {
                    "TimeToLiveDescription": {
                        "TimeToLiveStatus": "ENABLED",
                        "AttributeName": "other",
                    }
                },
            ],
        )
    with pytest.raises(StoreUnavailable, match="ACTIVE"):
        drive(core.create_table_plan("t", 0.2), [{}, {"Table": {"TableStatus": "CREATING"}}])


# ---------------------------------------------------------------------------------------------
# URL
# ---------------------------------------------------------------------------------------------


def test_url_settings() -> None:
    settings = ConnectionSettings.from_url(
        "dynamodb://My_Table.v2?region=eu-west-1&endpoint_url=http://127.0.0.1:9&timeout=3"
        "&max_attempts=1&create=true"
    )
    assert settings == ConnectionSettings(
        table="My_Table.v2",
        region="eu-west-1",
        endpoint_url="http://127.0.0.1:9",
        connect_timeout=3.0,
        read_timeout=3.0,
        max_attempts=1,
        create=True,
    )
    assert settings.config_kwargs()["retries"] == {"mode": "standard", "max_attempts": 1}
    defaults = ConnectionSettings.from_url("dynamodb://orders")
    assert (
        defaults.connect_timeout,
        defaults.read_timeout,
        defaults.max_attempts,
        defaults.create,
    ) == (2.0, 5.0, 3, False)
    assert defaults.client_kwargs() == {}


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://x", "not a dynamodb:// URL"),
        ("dynamodb://ab", "invalid DynamoDB table name 'ab'"),
        ("dynamodb://orders?timeout=0", "timeout must be a positive number"),
        ("dynamodb://orders?timeout=x", "timeout must be a positive number"),
        ("dynamodb://orders?create=maybe", "create must be true or false"),
        ("dynamodb://orders?max_attempts=2.5", "max_attempts must be an integer"),
        ("dynamodb://orders?region=a&region=b", "'region' is given twice"),
        (
            "dynamodb://orders?colour=blue",
            "unknown dynamodb URL option(s) 'colour'; known: connect_timeout, create, ",
        ),
    ],
)
def test_url_mistakes_are_configuration_errors(url: str, message: str) -> None:
    with pytest.raises(StoreConfigurationError) as caught:
        ConnectionSettings.from_url(url)
    assert message in str(caught.value)


@pytest.mark.parametrize("module", ["stalwart.storage.dynamodb", "stalwart.storage._dynamodb_core"])
def test_docstring_examples_run(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0
    assert result.failed == 0


def test_public_module_exports_what_it_lists() -> None:
    dynamodb = importlib.import_module("stalwart.storage.dynamodb")
    public = {
        name
        for name, value in vars(dynamodb).items()
        if not name.startswith("_") and getattr(value, "__module__", None) == dynamodb.__name__
    }
    assert public <= set(dynamodb.__all__)
    assert all(hasattr(dynamodb, name) for name in dynamodb.__all__)
