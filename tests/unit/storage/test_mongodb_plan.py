"""The MongoDB engine's pure parts: builders, decoders, cursors, URL parsing, error mapping, and
the commands each plan sends on MongoDB and on secantusdb."""

from __future__ import annotations

import doctest
from datetime import UTC, datetime

import pytest
from bson import ObjectId
from bson.errors import InvalidDocument
from pymongo.errors import (
    AutoReconnect,
    DocumentTooLarge,
    DuplicateKeyError,
    ExecutionTimeout,
    NetworkTimeout,
    OperationFailure,
    ServerSelectionTimeoutError,
    WriteConcernError,
)

from stalwart.storage import (
    AlreadyExists,
    Check,
    Create,
    Increment,
    InvalidRecord,
    Key,
    Record,
    StorageError,
    StoreConfigurationError,
    StoreUnavailable,
    TransactionConflict,
    VersionConflict,
)
from stalwart.storage import _mongodb_plan as plan
from stalwart.storage._mongodb_url import DEFAULT_TIMEOUTS_MS, parse_url
from stalwart.storage._query import encode_cursor
from unit.storage.store_plans import mongodb as checked


def run_plan(generator, replies, server: plan.Server = "mongodb"):
    """Drive a plan with canned replies; return (commands seen, result or exception).

    :class:`~plan.DetectServer` is answered with ``server`` and not listed: the executors answer
    it from a per-client cache, so it is no round trip (but for a client's very first).
    """
    commands = []
    reply_iter = iter(replies)
    try:
        command = next(generator)
        while True:
            if isinstance(command, plan.DetectServer):
                command = generator.send(server)
                continue
            commands.append(command)
            reply = next(reply_iter)
            if isinstance(reply, BaseException):
                command = generator.throw(reply)
            else:
                command = generator.send(reply)
    except StopIteration as stop:
        return commands, stop.value
    except StorageError as exc:
        return commands, exc


def settings(now: float = 1000.0) -> plan.Settings:
    return plan.Settings(clock=lambda: now)


def first_command(generator, server: plan.Server = "mongodb"):
    """Start a plan and return its first round-trip command."""
    command = next(generator)
    if isinstance(command, plan.DetectServer):
        command = generator.send(server)
    return command


# --- prefix bounds and cursors ---------------------------------------------------------------


def test_query_command_combines_prefix_cursor_and_liveness() -> None:
    ascending = plan.query_command(
        "P", prefix="k", limit=10, cursor=encode_cursor("P", "k3"), descending=False, now=5.0
    )
    assert ascending.filter["_id.p"] == "P"
    assert ascending.filter["_id.s"] == {"$gte": "k", "$lt": "l", "$gt": "k3"}
    assert ascending.filter["$or"] == [{"e": None}, {"e": {"$gt": 5.0}}]
    assert (ascending.sort_field, ascending.direction, ascending.limit) == ("_id.s", 1, 11)
    descending = plan.query_command(
        "P", prefix="k", limit=10, cursor=encode_cursor("P", "k3"), descending=True, now=5.0
    )
    assert descending.filter["_id.s"] == {"$gte": "k", "$lt": "k3"}
    assert descending.direction == -1
    bare = plan.query_command("P", prefix="", limit=1, cursor=None, descending=False, now=5.0)
    assert "_id.s" not in bare.filter


def test_page_cursor_only_when_more_documents_matched() -> None:
    docs = [{"_id": {"p": "P", "s": f"k{i}"}, "d": {}, "v": 1, "e": None} for i in range(3)]
    full = plan.page_from(docs, 2)
    assert [r.key.sort for r in full.records] == ["k0", "k1"]
    assert full.cursor == encode_cursor("P", "k1")
    last = plan.page_from(docs, 3)
    assert last.cursor is None


@pytest.mark.parametrize("limit", [0, 1001, -1, True, 2.0])
def test_query_limit_is_validated_before_io(limit: object) -> None:
    commands, outcome = run_plan(
        checked.query(
            settings(),
            "P",
            prefix="",
            limit=limit,  # type: ignore[arg-type]
            cursor=None,
            descending=False,
        ),
        [],
    )
    assert commands == []
    assert isinstance(outcome, InvalidRecord)


# --- liveness and decoding -------------------------------------------------------------------


def test_liveness_treats_expiry_at_now_as_absent() -> None:
    doc = {"_id": {"p": "P", "s": ""}, "d": {}, "v": 1, "e": 10.0}
    assert plan.is_live(doc, 9.999)
    assert not plan.is_live(doc, 10.0)
    assert plan.is_live({**doc, "e": None}, 1e12)
    assert not plan.is_live({"_id": {"p": "P", "s": ""}}, 0.0)  # an upsert's bare document
    assert not plan.is_live({**doc, "v": 0, "e": float("-inf")}, 0.0)  # a tombstone
    assert not plan.is_live(None, 0.0)


def test_decode_builds_a_record() -> None:
    doc = {"_id": {"p": "P", "s": "s"}, "d": {"n": 1}, "v": 4, "e": 12.5, "w": ObjectId()}
    assert plan.decode(doc) == Record(Key("P", "s"), {"n": 1}, 4, 12.5)


def test_expiry_date_is_utc_and_clamped() -> None:
    assert plan.expiry_date(None) is None
    assert plan.expiry_date(0.5) == datetime(1970, 1, 1, 0, 0, 0, 500000, tzinfo=UTC)
    assert plan.expiry_date(1e30) == datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)


# --- single-record plans, driven with canned replies -----------------------------------------


def token_of(command: plan.UpdateOne) -> ObjectId:
    token = command.pipeline[0]["$replaceWith"]["$switch"]["branches"][0]["case"]["$eq"][1]
    assert isinstance(token, ObjectId)
    return token


def test_create_is_one_upsert_returning_after() -> None:
    generator = checked.create(settings(), Key("P", "s"), {"a": (1, 2)}, 10)
    command = first_command(generator)
    assert isinstance(command, plan.UpdateOne)
    assert command.upsert
    assert command.return_after
    assert command.filter == {"_id": {"p": "P", "s": "s"}}
    written = {
        "_id": {"p": "P", "s": "s"},
        "d": {"a": [1, 2]},
        "v": 1,
        "e": 1010.0,
        "w": token_of(command),
    }
    with pytest.raises(StopIteration) as stop:
        generator.send(written)
    assert stop.value.value == Record(Key("P", "s"), {"a": [1, 2]}, 1, 1010.0)


def test_create_reports_the_live_document_it_found() -> None:
    live = {"_id": {"p": "P", "s": "s"}, "d": {"x": 1}, "v": 3, "e": None, "w": ObjectId()}
    commands, outcome = run_plan(checked.create(settings(), Key("P", "s"), {}, None), [live])
    assert len(commands) == 1
    assert isinstance(outcome, AlreadyExists)
    assert outcome.current == Record(Key("P", "s"), {"x": 1}, 3, None)


def test_create_reads_back_a_lost_upsert_reply_only_on_secantusdb() -> None:
    # secantusdb replies value=null to the loser of a concurrent upsert.
    live = {"_id": {"p": "P", "s": "s"}, "d": {"x": 1}, "v": 1, "e": None, "w": ObjectId()}
    commands, outcome = run_plan(
        checked.create(settings(), Key("P", "s"), {}, None),
        [None, live],
        server="secantusdb",
    )
    assert [type(c) for c in commands] == [plan.UpdateOne, plan.FindOne]
    assert isinstance(outcome, AlreadyExists)
    # MongoDB always returns an upsert's post-image: no read-back, a loud error instead.
    commands, outcome = run_plan(checked.create(settings(), Key("P", "s"), {}, None), [None])
    assert [type(c) for c in commands] == [plan.UpdateOne]
    assert type(outcome) is StorageError
    assert "without the document it wrote" in str(outcome)


def test_create_retries_once_after_a_duplicate_key_race() -> None:
    live = {"_id": {"p": "P", "s": "s"}, "d": {}, "v": 1, "e": None}
    commands, outcome = run_plan(
        checked.create(settings(), Key("P", "s"), {}, None),
        [DuplicateKeyError("E11000", 11000), live],
    )
    assert len(commands) == 2
    assert isinstance(outcome, AlreadyExists)


def test_replace_conflict_carries_current_or_none() -> None:
    live = {"_id": {"p": "P", "s": "s"}, "d": {}, "v": 2, "e": None, "w": ObjectId()}
    commands, outcome = run_plan(checked.replace(settings(), Key("P", "s"), {}, 1, None), [live])
    assert commands[0].return_after
    assert isinstance(outcome, VersionConflict)
    assert outcome.current is not None
    assert outcome.current.version == 2
    expired = {**live, "v": 1, "e": 5.0}
    _, outcome = run_plan(checked.replace(settings(), Key("P", "s"), {}, 1, None), [expired])
    assert isinstance(outcome, VersionConflict)
    assert outcome.current is None


def test_conditional_delete_reads_only_on_the_conflict_path() -> None:
    commands, outcome = run_plan(checked.delete(settings(), Key("P", "s"), 1), [{"v": 1}])
    assert outcome is True
    assert [type(c) for c in commands] == [plan.DeleteOne]
    commands, outcome = run_plan(checked.delete(settings(), Key("P", "s"), 1), [None, None])
    assert [type(c) for c in commands] == [plan.DeleteOne, plan.FindOne]
    assert isinstance(outcome, VersionConflict)


def test_unconditional_delete_removes_only_a_live_record() -> None:
    commands, outcome = run_plan(checked.delete(settings(5.0), Key("P", "s"), None), [None])
    assert outcome is False
    assert commands == [plan.DeleteOne({"_id": {"p": "P", "s": "s"}, **plan.live_filter(5.0)})]
    live = {"_id": {"p": "P", "s": "s"}, "d": {}, "v": 1, "e": None}
    assert run_plan(checked.delete(settings(), Key("P", "s"), None), [live])[1] is True


def test_increment_is_one_upsert_on_mongodb() -> None:
    generator = checked.increment(settings(), Key("P", "s"), "n", 2, 30)
    update = first_command(generator)
    assert isinstance(update, plan.UpdateOne)
    assert update.upsert
    assert update.return_after
    created = {
        "_id": {"p": "P", "s": "s"},
        "d": {"n": 2},
        "v": 1,
        "e": 1030.0,
        "w": token_of(update),
    }
    with pytest.raises(StopIteration) as stop:
        generator.send(created)
    assert stop.value.value == Record(Key("P", "s"), {"n": 2}, 1, 1030.0)
    commands, outcome = run_plan(checked.increment(settings(), Key("P", "s"), "n", 1, None), [None])
    assert len(commands) == 1
    assert type(outcome) is StorageError  # MongoDB never loses an upsert's post-image


def test_increment_on_secantusdb_inserts_when_absent_and_updates_after_losing_the_insert() -> None:
    generator = checked.increment(settings(), Key("P", "s"), "n", 2, None)
    update = first_command(generator, "secantusdb")
    assert isinstance(update, plan.UpdateOne)
    assert not update.upsert
    insert = generator.send(None)  # no document: insert the fresh counter
    assert isinstance(insert, plan.InsertOne)
    assert insert.document["d"] == {"n": 2}
    assert generator.throw(DuplicateKeyError("E11000", 11000)) == update  # lost: update it
    after = {"_id": {"p": "P", "s": "s"}, "d": {"n": 5}, "v": 2, "e": None, "w": token_of(update)}
    with pytest.raises(StopIteration) as stop:
        generator.send(after)
    assert stop.value.value == Record(Key("P", "s"), {"n": 5}, 2, None)


def live_doc(version: int = 1, **data: object) -> dict[str, object]:
    return {"_id": {"p": "P", "s": "s"}, "d": data, "v": version, "e": None, "w": ObjectId()}


def echo_token(command: plan.UpdateOne, doc: dict[str, object]) -> dict[str, object]:
    """``doc`` as the post-image of ``command``'s own write."""
    return {**doc, "w": token_of(command)}


KEY = Key("P", "s")
ONE_COMMAND_CASES = {
    "create": (lambda: checked.create(settings(), KEY, {}, None), echo_token, Record),
    "create, live": (
        lambda: checked.create(settings(), KEY, {}, None),
        None,
        AlreadyExists,
    ),
    "replace": (
        lambda: checked.replace(settings(), KEY, {}, 1, None),
        echo_token,
        Record,
    ),
    "replace, stale": (
        lambda: checked.replace(settings(), KEY, {}, 9, None),
        None,
        VersionConflict,
    ),
    "increment, first": (  # no document yet: only an upsert can reply with one
        lambda: checked.increment(settings(), KEY, "n", 1, None),
        lambda c, d: echo_token(c, live_doc(n=1)) if c.upsert else None,
        Record,
    ),
    "increment": (
        lambda: checked.increment(settings(), KEY, "n", 1, None),
        echo_token,
        Record,
    ),
    "increment, text": (
        lambda: checked.increment(settings(), KEY, "n", 1, None),
        lambda c, d: live_doc(n="x"),
        InvalidRecord,
    ),
    "delete": (lambda: checked.delete(settings(), KEY, None), None, bool),
    "delete, versioned": (lambda: checked.delete(settings(), KEY, 1), None, bool),
    "get": (lambda: checked.get(settings(), KEY), None, Record),
    "query": (
        lambda: checked.query(settings(), "P", prefix="", limit=10, cursor=None, descending=False),
        lambda c, d: [d],
        type(plan.page_from([], 1)),
    ),
}


@pytest.mark.parametrize("case", ONE_COMMAND_CASES, ids=list(ONE_COMMAND_CASES))
def test_every_single_record_operation_is_one_command_on_mongodb(case: str) -> None:
    make, reply_for, expected = ONE_COMMAND_CASES[case]
    generator = make()
    command = first_command(generator)
    reply = live_doc(n=1) if reply_for is None else reply_for(command, live_doc(n=1))
    try:
        outcome = generator.send(reply)
    except StopIteration as stop:
        outcome = stop.value
    except StorageError as exc:
        outcome = exc
    assert isinstance(outcome, expected), f"{case}: sent a second command {outcome!r}"


def test_only_create_increment_and_transact_ask_which_server() -> None:
    asking = [
        checked.create(settings(), KEY, {}, None),
        checked.increment(settings(), KEY, "n", 1, None),
        checked.transact(settings(), [Create(KEY, {})]),
    ]
    assert all(isinstance(next(p), plan.DetectServer) for p in asking)
    not_asking = [
        checked.get(settings(), KEY),
        checked.replace(settings(), KEY, {}, 1, None),
        checked.delete(settings(), KEY, 1),
        checked.query(settings(), "P", prefix="", limit=1, cursor=None, descending=False),
    ]
    assert not any(isinstance(next(p), plan.DetectServer) for p in not_asking)


def test_the_server_is_told_by_build_info() -> None:
    mongod = {"version": "8.0.4", "gitVersion": "bc35ab4305d9920d9d0491c1c9ef9b72383d31f9", "ok": 1}
    assert plan.server_from_build_info(mongod) == "mongodb"
    secantus = {"version": "8.2.11", "secantusVersion": "0.7.0b3", "ok": 1.0}
    assert plan.server_from_build_info(secantus) == "secantusdb"


def test_increment_of_a_non_number_is_invalid_record() -> None:
    unchanged = {"_id": {"p": "P", "s": "s"}, "d": {"n": "x"}, "v": 1, "e": None, "w": ObjectId()}
    _, outcome = run_plan(checked.increment(settings(), Key("P", "s"), "n", 1, None), [unchanged])
    assert isinstance(outcome, InvalidRecord)


@pytest.mark.parametrize(
    "call",
    [
        lambda s: checked.create(s, Key(""), {}, None),
        lambda s: checked.create(s, Key("P"), {"x": float("nan")}, None),
        lambda s: checked.create(s, Key("P"), {"x": "y" * 2000}, None),
        lambda s: checked.replace(s, Key("P"), {}, 0, None),
        lambda s: checked.increment(s, Key("P"), "a.b", 1, None),
        lambda s: checked.increment(s, Key("P"), "n", True, None),
        lambda s: checked.create(s, Key("P"), {}, -1),
        lambda s: checked.transact(s, []),
    ],
)
def test_bad_input_is_rejected_before_any_command(call) -> None:
    small = plan.Settings(clock=lambda: 0.0, max_item_bytes=1000)
    commands, outcome = run_plan(call(small), [])
    assert commands == []
    assert isinstance(outcome, InvalidRecord)


def transaction_replies(error: Exception) -> list[object]:
    """Each attempt: StartTransaction ok, first item fails, abort ok; then backoff sleeps."""
    replies: list[object] = []
    for attempt in range(plan.TRANSACTION_ATTEMPTS):
        if attempt:
            replies.append(None)  # Sleep
        replies += [None, error, None]  # StartTransaction, the item, AbortTransaction
    return replies


def test_transaction_write_conflicts_retry_then_name_the_item() -> None:
    conflict = OperationFailure(
        "WriteConflict", 112, {"errorLabels": ["TransientTransactionError"]}
    )
    operations = [Create(Key("P", "a"), {}), Create(Key("P", "b"), {})]
    commands, outcome = run_plan(
        checked.transact(settings(), operations), transaction_replies(conflict)
    )
    assert sum(isinstance(c, plan.StartTransaction) for c in commands) == plan.TRANSACTION_ATTEMPTS
    assert sum(isinstance(c, plan.Sleep) for c in commands) == plan.TRANSACTION_ATTEMPTS - 1
    assert isinstance(outcome, TransactionConflict)
    assert outcome.index == 0
    assert outcome.operation == operations[0]


def test_transaction_network_errors_end_as_store_unavailable() -> None:
    lost = AutoReconnect("reset")
    lost._add_error_label("TransientTransactionError")
    _, outcome = run_plan(
        checked.transact(settings(), [Create(Key("P", "a"), {})]),
        transaction_replies(lost),
    )
    assert isinstance(outcome, StoreUnavailable)


def test_transaction_items_send_one_command_each_on_mongodb() -> None:
    operations = [Create(Key("P", "a"), {}), Increment(Key("P", "b"), "n")]
    generator = checked.transact(settings(), operations)
    assert isinstance(first_command(generator), plan.StartTransaction)
    create = generator.send(None)
    increment = generator.send(echo_token(create, live_doc()))
    assert isinstance(increment, plan.UpdateOne)
    assert increment.upsert
    assert isinstance(generator.send(echo_token(increment, live_doc(n=1))), plan.CommitTransaction)
    with pytest.raises(StopIteration):
        generator.send(None)


@pytest.mark.parametrize("server", ["mongodb", "secantusdb"])
def test_a_lost_upsert_reply_in_a_transaction(server: plan.Server) -> None:
    live = live_doc()
    replies = {"mongodb": [None, None, None], "secantusdb": [None, None, live, None]}[server]
    commands, outcome = run_plan(
        checked.transact(settings(), [Create(KEY, {})]), replies, server=server
    )
    if server == "mongodb":  # never happens on MongoDB: a loud error, no read-back
        assert [type(c) for c in commands] == [
            plan.StartTransaction,
            plan.UpdateOne,
            plan.AbortTransaction,
        ]
        assert type(outcome) is StorageError
    else:
        assert plan.FindOne in [type(c) for c in commands]
        assert isinstance(outcome, TransactionConflict)


def test_a_failed_condition_aborts_without_retrying() -> None:
    live = {"_id": {"p": "P", "s": "a"}, "d": {}, "v": 4, "e": None, "w": ObjectId()}
    commands, outcome = run_plan(
        checked.transact(settings(), [Check(Key("P", "a"), 3)]), [None, live, None]
    )
    assert [type(c) for c in commands] == [
        plan.StartTransaction,
        plan.UpdateOne,
        plan.AbortTransaction,
    ]
    assert isinstance(outcome, TransactionConflict)
    assert outcome.current is not None
    assert outcome.current.version == 4


# --- error translation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [
        AutoReconnect("connection reset"),
        NetworkTimeout("timed out"),
        ServerSelectionTimeoutError("no servers"),
        ExecutionTimeout("operation exceeded time limit", 50),
        WriteConcernError("waiting for replication timed out", 64),
        OperationFailure("WriteConflict", 112),
        OperationFailure("not primary", 10107),
        OperationFailure("request rate is large", 16500),
        OperationFailure("x", 1, {"errorLabels": ["TransientTransactionError"]}),
    ],
)
def test_transient_errors_become_store_unavailable(exc: Exception) -> None:
    assert isinstance(plan.translate_error(exc), StoreUnavailable)


@pytest.mark.parametrize(
    "exc",
    [
        DocumentTooLarge("too large"),
        InvalidDocument("bad key"),
        OverflowError("MongoDB can only handle up to 8-byte ints"),
        UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"),
        OperationFailure("BSONObjectTooLarge", 10334),
    ],
)
def test_unstorable_records_become_invalid_record(exc: Exception) -> None:
    assert isinstance(plan.translate_error(exc), InvalidRecord)


def test_other_server_errors_become_the_root_error() -> None:
    translated = plan.translate_error(OperationFailure("not authorized", 13))
    assert type(translated) is StorageError


def test_guarded_chains_the_original_error() -> None:
    def failing():
        yield plan.FindOne({})

    _, outcome = run_plan(plan.guarded(failing()), [AutoReconnect("gone")])
    assert isinstance(outcome, StoreUnavailable)
    assert isinstance(outcome.__cause__, AutoReconnect)


# --- URLs ------------------------------------------------------------------------------------


def test_url_strips_stalwart_parameters_and_sets_timeouts() -> None:
    parsed = parse_url(
        "mongodb://u:p%40ss@h1:27017,h2/app?collection=orders&create=true"
        "&replicaSet=rs0&directConnection=false"
    )
    assert parsed.database == "app"
    assert parsed.collection == "orders"
    assert parsed.create is True
    assert parsed.client_url == (
        "mongodb://u:p%40ss@h1:27017,h2/app?replicaSet=rs0&directConnection=false"
    )
    assert parsed.client_options == DEFAULT_TIMEOUTS_MS


def test_url_timeouts_can_be_overridden() -> None:
    own = parse_url("mongodb://h/?serverselectiontimeoutms=100&timeout=2")
    assert "serverSelectionTimeoutMS" not in own.client_options
    assert own.client_options["socketTimeoutMS"] == 2000
    assert "timeoutMS" not in own.client_options
    timeout_only = parse_url("mongodb://h/?timeout=2")
    assert timeout_only.client_options == dict.fromkeys(DEFAULT_TIMEOUTS_MS, 2000)
    assert own.database == "stalwart"
    assert own.collection == "records"
    assert own.create is False


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://h/", "not a MongoDB URL"),
        ("mongodb://h/db?create=maybe", "create must be true or false"),
        ("mongodb://h/db?timeout=0", "timeout must be a positive number"),
        ("mongodb://h/db?timeout=x&timeoutMS=1&connectTimeoutMS=1", "timeout must be a positive"),
        ("mongodb://h/db?collection=", "invalid collection name"),
        ("mongodb://h/db?max_item_bytes=99999999999", "max_item_bytes must be an int in"),
        ("mongodb://h/db?max_item_bytes=1e6", "max_item_bytes must be an integer"),
        ("mongodb://h/db?collection=a&collection=b", "'collection' is given twice"),
        (
            "mongodb://u:secret@h/db?colection=x",
            (
                "unknown mongodb URL option(s) 'colection'; known: collection, create, "
                "max_item_bytes, server, timeout and pymongo's URI options"
            ),
        ),
        ("mongodb://u:secret@h/db?serverSelectionTimeoutMS=soon", "serverSelectionTimeoutMS"),
    ],
)
def test_bad_urls_are_configuration_errors(url: str, message: str) -> None:
    with pytest.raises(StoreConfigurationError) as caught:
        parse_url(url)
    assert message in str(caught.value)
    assert "secret" not in str(caught.value)


def test_url_passes_repeated_pymongo_options_through() -> None:
    parsed = parse_url(
        "mongodb://h/db?readPreference=secondary&readPreferenceTags=dc:ny&readPreferenceTags=dc:sf"
    )
    # As written: pymongo reads the tags before unquoting them.
    assert parsed.client_url == (
        "mongodb://h/db?readPreference=secondary&readPreferenceTags=dc:ny&readPreferenceTags=dc:sf"
    )


def test_url_chooses_the_server() -> None:
    assert parse_url("mongodb://h/db").server == "auto"
    assert parse_url("mongodb://h/db?server=mongodb").server == "mongodb"
    parsed = parse_url("mongodb://h/db?server=secantusdb&replicaSet=rs0")
    assert parsed.server == "secantusdb"
    assert parsed.client_url == "mongodb://h/db?replicaSet=rs0"
    with pytest.raises(StoreConfigurationError, match="auto, mongodb, secantusdb"):
        parse_url("mongodb://h/db?server=mongo")


def test_docstring_examples_run() -> None:
    result = doctest.testmod(plan)
    assert result.attempted > 0
    assert result.failed == 0
