# Copyright 2026 stalwart contributors
"""The conditional-request core: ETags, header parsing (RFC 9110 §13.1), evaluation; and the
OpenAPI declarations the FastAPI shell adds."""

from __future__ import annotations

import subprocess
import sys

import pytest

from stalwart.storage import (
    Check,
    Create,
    Delete,
    Key,
    Record,
    Replace,
    TransactionConflict,
    VersionConflict,
    open_async_store,
)
from stalwart.web import (
    EntityTag,
    Health,
    HttpProblem,
    etag,
    evaluate_if_match,
    parse_etags,
    read_if_none_match,
    record_etag,
)

KEY = Key("accounts", "acc-1")


def test_etag_is_strong_opaque_and_distinct():
    tags = {etag(KEY, v) for v in range(1, 50)} | {etag(Key("accounts", "acc-2"), 1)}
    assert len(tags) == 50
    for tag in tags:
        assert tag.startswith('"')
        assert tag.endswith('"')
        assert "acc" not in tag
    assert record_etag(Record(KEY, {"x": 1}, 7)) == etag(KEY, 7)
    # Partition and sort are not confused by concatenation.
    assert etag(Key("ab", "c"), 1) != etag(Key("a", "bc"), 1)


def test_etag_is_stable_across_processes():
    code = "from stalwart.storage import Key; from stalwart.web import etag; "
    code += "print(etag(Key('accounts', 'acc-1'), 3))"
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert other == etag(KEY, 3) == '"3.oD3Kpka0LifRSQ5t"'


@pytest.mark.parametrize(
    ("header", "parsed"),
    [
        ("*", "*"),
        (" \t* ", "*"),
        ("", ()),
        (" , ,", ()),
        ('"a"', (EntityTag("a"),)),
        ('W/"a"', (EntityTag("a", weak=True),)),
        ('""', (EntityTag(""),)),
        ('"a",W/"b" ,\t"c"', (EntityTag("a"), EntityTag("b", weak=True), EntityTag("c"))),
        ('"a,b", "c"', (EntityTag("a,b"), EntityTag("c"))),
        ('"caf\xe9"', (EntityTag("caf\xe9"),)),
    ],
)
def test_parse_valid(header, parsed):
    assert parse_etags(header) == parsed


@pytest.mark.parametrize(
    "header",
    [
        "a",
        "'a'",
        '"a',
        'a"',
        '"a" "b"',
        '"a"b',
        'w/"a"',
        'W/ "a"',
        '*, "a"',
        "**",
        '"a b"',
        '"a"x,',
    ],
)
def test_parse_malformed_is_400(header):
    with pytest.raises(HttpProblem) as caught:
        parse_etags(header, "If-Match")
    assert (caught.value.status, caught.value.code) == (400, "invalid-precondition")
    with pytest.raises(HttpProblem):
        read_if_none_match(header)


def test_if_match_missing_weak_foreign():
    with pytest.raises(HttpProblem) as missing:
        evaluate_if_match(None, KEY)
    assert (missing.value.status, missing.value.code) == (428, "precondition-required")
    huge = f'"{"9" * 5000}.x"'  # a version int() would refuse to parse: 412, not a 500
    foreign = etag(Key("accounts", "acc-2"), 1)
    for header in (f"W/{etag(KEY, 1)}", foreign, '"1.x"', '"01.x"', '"0.x"', "", huge):
        with pytest.raises(HttpProblem) as failed:
            evaluate_if_match(header, KEY)
        assert (failed.value.status, failed.value.code) == (412, "precondition-failed")


def test_if_match_versions_and_resolution():
    single = evaluate_if_match(f'W/"junk", {etag(KEY, 4)}', KEY)
    assert single.expected_version == 4
    assert single.require(Record(KEY, {}, 4)).version == 4
    with pytest.raises(HttpProblem):
        single.require(Record(KEY, {}, 5))  # stale: fails before any write
    several = evaluate_if_match(f"{etag(KEY, 2)}, {etag(KEY, 5)}", KEY)
    assert several.expected_version is None
    assert several.require(Record(KEY, {}, 5)).version == 5
    with pytest.raises(HttpProblem):
        several.require(Record(KEY, {}, 3))
    anything = evaluate_if_match("*", KEY)
    assert anything.expected_version is None
    assert anything.require(Record(KEY, {}, 9)).version == 9
    with pytest.raises(HttpProblem) as absent:
        anything.require(None)
    assert absent.value.status == 412


def test_a_version_conflict_fails_only_its_own_precondition():
    precondition = evaluate_if_match(etag(KEY, 1), KEY)
    mine = precondition.failed(VersionConflict(KEY, 1, None))
    assert mine is not None
    assert mine.status == 412
    assert precondition.failed(VersionConflict(Key("other"), 1, None)) is None
    assert precondition.failed(ValueError()) is None


def test_a_transaction_conflict_on_its_record_fails_the_precondition():
    precondition = evaluate_if_match(etag(KEY, 1), KEY)
    for operation in (Replace(KEY, {}, 1), Delete(KEY, 1), Check(KEY, 1)):
        failed = precondition.failed(TransactionConflict(0, operation, "version mismatch"))
        assert failed is not None
        assert failed.status == 412
    for operation in (Replace(Key("other"), {}, 1), Delete(KEY), Create(KEY, {}), None):
        assert precondition.failed(TransactionConflict(1, operation, "exists")) is None


def test_if_none_match():
    record = Record(KEY, {}, 2)
    assert read_if_none_match(etag(KEY, 2)).matches(record)
    assert read_if_none_match(f'"x", W/{etag(KEY, 2)}').matches(record)
    assert read_if_none_match("*").matches(record)
    assert not read_if_none_match("*").matches(None)
    assert not read_if_none_match(etag(KEY, 1)).matches(record)
    assert not read_if_none_match("").matches(record)
    assert not read_if_none_match(None).matches(record)


def test_openapi_declares_responses_and_headers():
    from unit.web.resource_apps import make_fastapi  # noqa: PLC0415 - needs FastAPI

    app, _ = make_fastapi(open_async_store("sqlite:///:memory:?table=t"), Health())
    paths = app.openapi()["paths"]
    item = paths["/items/{item_id}"]
    get_params = {p["name"]: p for p in item["get"]["parameters"] if p["in"] == "header"}
    assert set(get_params) == {"If-None-Match"}
    assert {"200", "304", "400"} <= set(item["get"]["responses"])
    assert "ETag" in item["get"]["responses"]["304"]["headers"]
    assert "content" not in item["get"]["responses"]["304"]
    assert "ETag" in item["get"]["responses"]["200"]["headers"]
    for method in ("put", "patch", "delete"):
        params = {p["name"] for p in item[method]["parameters"] if p["in"] == "header"}
        assert params == {"If-Match"}, method
        responses = item[method]["responses"]
        assert {"400", "412", "428"} <= set(responses), method
        examples = responses["412"]["content"]["application/problem+json"]["examples"]
        assert examples["precondition-failed"]["value"]["status"] == 412
        required = responses["428"]["content"]["application/problem+json"]["examples"]
        assert required["precondition-required"]["value"]["code"] == "precondition-required"
    assert "ETag" in item["put"]["responses"]["200"]["headers"]
    assert "headers" not in item["delete"]["responses"]["204"]  # nothing left to tag
    ready = paths["/readyz"]["get"]["responses"]
    assert {"200", "503"} <= set(ready)
    assert ready["503"]["content"]["application/json"]["schema"]["required"] == [
        "status",
        "checks",
    ]
    assert "200" in paths["/livez"]["get"]["responses"]


def test_conflicts_from_a_real_store_become_412(tmp_path):
    from stalwart.storage import open_store  # noqa: PLC0415

    with open_store(f"sqlite:///{tmp_path / 'c.db'}?table=t") as store:
        store.create(KEY, {"n": 0})
        store.create(Key("other"), {"n": 0})
        precondition = evaluate_if_match(etag(KEY, 1), KEY)
        store.replace(KEY, {"n": 1}, expected_version=1)  # someone else wrote first
        for write in (
            lambda: store.replace(KEY, {"n": 2}, expected_version=1),
            lambda: store.delete(KEY, expected_version=1),
            lambda: store.transact([Replace(KEY, {"n": 2}, 1), Check(Key("other"), 1)]),
        ):
            with pytest.raises(HttpProblem) as caught, precondition.conflicts_as_412():
                write()
            assert caught.value.status == 412
        with pytest.raises(TransactionConflict), precondition.conflicts_as_412():
            store.transact([Replace(KEY, {"n": 2}, 2), Check(Key("other"), 5)])
        with pytest.raises(VersionConflict), precondition.conflicts_as_412():
            store.replace(Key("other"), {}, expected_version=5)
        assert store.get(KEY).data == {"n": 1}
