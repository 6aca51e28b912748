from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import uvicorn
from flask import Flask
from pydantic import SecretStr
from werkzeug.serving import make_server

from stalwart.observability import (
    REDACTED,
    bind,
    bound,
    capture_logs,
    clear_context,
    get_context,
    get_logger,
    request_context,
    unbind,
)

RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
REQUIRED = ("timestamp", "level", "message", "logger", "service", "correlation_id")


def test_line_has_required_fields(json_logs):
    configure, lines = json_logs
    configure("orders")
    with request_context("req-1"):
        get_logger("orders.api").info("order placed", order_id=7)
    (line,) = lines()
    for field in REQUIRED:
        assert field in line
    assert RFC3339_MS.match(line["timestamp"])
    stamp = datetime.strptime(line["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert abs(datetime.now(UTC) - stamp) < timedelta(seconds=5)
    assert line["level"] == "INFO"
    assert line["message"] == "order placed"
    assert line["logger"] == "orders.api"
    assert line["service"] == "orders"
    assert line["correlation_id"] == "req-1"
    assert line["order_id"] == 7
    assert "trace_id" not in line  # no active span


def test_correlation_id_is_null_outside_a_request(json_logs):
    configure, lines = json_logs
    configure()
    get_logger().warning("background")
    assert lines()[0]["correlation_id"] is None


def test_request_context_generates_a_correlation_id(json_logs):
    configure, lines = json_logs
    configure()
    with request_context() as cid:
        get_logger().info("x")
    assert re.fullmatch(r"[0-9a-f-]{36}", cid)
    assert lines()[0]["correlation_id"] == cid


def test_foreign_stdlib_records_get_the_same_fields(json_logs):
    configure, lines = json_logs
    configure("svc")
    with bound(correlation_id="c-9", tenant="acme"):
        logging.getLogger("botocore.credentials").warning(
            "found %d keys", 2, extra={"region": "eu-west-1"}
        )
    (line,) = lines()
    assert line["message"] == "found 2 keys"
    assert line["logger"] == "botocore.credentials"
    assert line["level"] == "WARNING"
    assert line["service"] == "svc"
    assert line["correlation_id"] == "c-9"
    assert line["tenant"] == "acme"
    assert line["region"] == "eu-west-1"
    assert RFC3339_MS.match(line["timestamp"])


def test_positional_args_are_formatted(json_logs):
    configure, lines = json_logs
    configure()
    get_logger().info("%s bought %d", "ada", 3)
    assert lines()[0]["message"] == "ada bought 3"


def test_exception_has_type_message_and_stack(json_logs):
    configure, lines = json_logs
    configure()
    log = get_logger("jobs")

    def fail() -> None:
        raise KeyError("missing-sku")

    try:
        fail()
    except KeyError:
        log.exception("job failed")
    try:
        fail()
    except KeyError:
        logging.getLogger("foreign").exception("foreign failed")
    ours, foreign = lines()
    for line in (ours, foreign):
        assert line["level"] == "ERROR"
        assert line["exception"]["type"] == "KeyError"
        assert line["exception"]["message"] == "'missing-sku'"
        assert "Traceback (most recent call last)" in line["exception"]["stack"]
        assert "in fail" in line["exception"]["stack"]


def test_exception_instance_and_qualified_type(json_logs):
    configure, lines = json_logs
    configure()

    class LocalError(Exception):
        pass

    get_logger().error("custom", exc_info=LocalError("x"))
    get_logger().error("builtin", exc_info=RuntimeError("y"))
    custom, builtin = lines()
    assert custom["exception"]["type"] == f"{__name__}.{LocalError.__qualname__}"
    assert custom["exception"]["message"] == "x"
    assert builtin["exception"]["type"] == "RuntimeError"


def test_redaction_by_key_name_and_secretstr_at_any_depth(json_logs):
    configure, lines = json_logs
    configure()
    get_logger().info(
        "login",
        user="ada",
        password="hunter2",
        headers={"Authorization": "Bearer abc", "X-Api-Key": "k-1", "Accept": "json"},
        attempts=[{"access_token": "t-1", "ok": True}, ("refresh_token", "t-2")],
        config={"db": {"dsn": SecretStr("postgres://u:p@h/db"), "pool": 5}},
        cookie_jar=[SecretStr("cookie-value-zz")],
    )
    (line,) = lines()
    raw = str(line)
    for secret in ("hunter2", "Bearer abc", "k-1", "t-1", "postgres://", "cookie-value-zz"):
        assert secret not in raw, secret
    assert line["user"] == "ada"
    assert line["password"] == REDACTED
    assert line["headers"] == {
        "Authorization": REDACTED,
        "X-Api-Key": REDACTED,
        "Accept": "json",
    }
    assert line["attempts"][0] == {"access_token": REDACTED, "ok": True}
    assert line["config"]["db"] == {"dsn": REDACTED, "pool": 5}
    assert line["cookie_jar"] == REDACTED


def test_secretstr_values_are_redacted_under_innocent_keys(json_logs):
    configure, lines = json_logs
    configure()
    get_logger().info("x", value=SecretStr("s3cr3t"), items=[1, SecretStr("s3cr3t")])
    (line,) = lines()
    assert "s3cr3t" not in str(line)
    assert line["value"] == REDACTED
    assert line["items"] == [1, REDACTED]


def test_redaction_of_bound_context_and_foreign_extras(json_logs):
    configure, lines = json_logs
    configure()
    with bound(session_id="s-1"):
        logging.getLogger("x").warning("y", extra={"db_password": "pw"})
    (line,) = lines()
    assert line["session_id"] == REDACTED
    assert line["db_password"] == REDACTED


def test_redaction_keys_are_configurable(json_logs):
    configure, lines = json_logs
    configure(redact_keys=("iban",))
    get_logger().info("pay", iban="DE0012", password="visible-now")
    (line,) = lines()
    assert line["iban"] == REDACTED
    assert line["password"] == "visible-now"


def test_levels_per_logger(json_logs):
    configure, lines = json_logs
    configure(level="INFO", levels={"noisy": "ERROR", "chatty": "DEBUG"})
    get_logger("noisy.child").warning("dropped")
    logging.getLogger("noisy").warning("dropped too")
    get_logger("noisy").error("kept")
    get_logger("chatty").debug("debug kept")
    get_logger("other").debug("dropped at INFO")
    assert [line["message"] for line in lines()] == ["kept", "debug kept"]


def test_debug_sampling_per_request(json_logs):
    configure, lines = json_logs
    configure(level="INFO")
    log = get_logger("app")
    with request_context("sampled", debug_sample_rate=1.0):
        log.debug("detail")
    with request_context("not-sampled", debug_sample_rate=0.0):
        log.debug("hidden")
    log.debug("hidden outside")
    assert [(x["message"], x["level"]) for x in lines()] == [("detail", "DEBUG")]


def test_debug_sampling_rate_is_a_fraction_of_requests(json_logs):
    configure, lines = json_logs
    configure(level="INFO")
    log = get_logger("app")
    for i in range(2000):
        with request_context(f"r{i}", debug_sample_rate=0.25):
            log.debug("a")
            log.debug("b")
    sampled = {line["correlation_id"] for line in lines()}
    assert 350 < len(sampled) < 650
    assert len(lines()) == 2 * len(sampled)  # whole requests, never half of one


def test_bind_unbind_bound(json_logs):
    configure, lines = json_logs
    configure()
    log = get_logger()
    bind(a=1, b=2)
    unbind("a", "missing")
    with bound(c=3):
        log.info("inside")
        assert get_context() == {"b": 2, "c": 3}
    log.info("after")
    clear_context()
    log.info("cleared")
    inside, after, cleared = lines()
    assert (inside.get("a"), inside["b"], inside["c"]) == (None, 2, 3)
    assert after["b"] == 2
    assert "c" not in after
    assert "b" not in cleared


def test_logger_bound_values_and_call_values(json_logs):
    configure, lines = json_logs
    configure()
    log = get_logger("api", component="checkout").bind(step=1)
    with bound(step=0, tenant="t"):
        log.info("x", extra_field=True)
    (line,) = lines()
    assert line["component"] == "checkout"
    assert line["step"] == 1  # the logger's own binding wins over the request context
    assert line["tenant"] == "t"
    assert line["extra_field"] is True


def test_no_context_bleed_between_threads(json_logs):
    configure, lines = json_logs
    configure()
    log = get_logger("worker")
    barrier = threading.Barrier(8)

    def work(n: int) -> None:
        barrier.wait()
        with request_context(f"thread-{n}", worker=n):
            for i in range(50):
                bind(step=i)
                log.info("step", expected=n)

    for _ in range(3):
        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    got = lines()
    assert len(got) == 3 * 8 * 50
    for line in got:
        assert line["worker"] == line["expected"]
        assert line["correlation_id"] == f"thread-{line['expected']}"
    assert get_context() == {}


async def test_no_context_bleed_between_asyncio_tasks(json_logs):
    configure, lines = json_logs
    configure()
    log = get_logger("handler")
    bind(app="parent")

    async def handle(n: int) -> None:
        with request_context(f"task-{n}", task=n):
            for i in range(20):
                bind(step=i)
                await asyncio.sleep(0)  # interleave with every other task
                log.info("step", expected=n)

    for _ in range(3):
        await asyncio.gather(*(handle(n) for n in range(30)))
    got = lines()
    assert len(got) == 3 * 30 * 20
    for line in got:
        assert line["task"] == line["expected"]
        assert line["correlation_id"] == f"task-{line['expected']}"
        assert line["app"] == "parent"
    assert get_context() == {"app": "parent"}  # tasks never wrote into the parent's context


def test_take_over_routes_uvicorn_loggers_to_the_json_handler(json_logs):
    configure, lines = json_logs
    access = logging.getLogger("uvicorn.access")
    own = logging.StreamHandler()
    access.addHandler(own)
    access.propagate = False
    # A uvicorn server started earlier in the session (log_level="warning") leaves its level set.
    level = access.level
    access.setLevel(logging.NOTSET)
    try:
        configure()
        assert own not in access.handlers
        assert access.propagate is True
        access.info('127.0.0.1 - "GET / HTTP/1.1" 200')
        (line,) = lines()
        assert line["logger"] == "uvicorn.access"
    finally:
        access.removeHandler(own)
        access.setLevel(level)


def test_configure_replaces_root_handlers(json_logs):
    configure, lines = json_logs
    configure()
    configure()
    get_logger().info("once")
    assert len(lines()) == 1


def test_capture_logs_renders_like_production(json_logs):
    configure, _ = json_logs
    configure("cap")
    with capture_logs() as captured:
        get_logger("x").info("hello", token="t")
    assert captured[0]["service"] == "cap"
    assert captured[0]["token"] == REDACTED


def test_unserialisable_values_do_not_break_a_line(json_logs):
    configure, lines = json_logs
    configure()
    get_logger().info("odd", when=datetime(2026, 1, 2, tzinfo=UTC), obj=object())
    line = lines()[0]
    assert line["when"].startswith("2026-01-02")
    assert "object" in line["obj"]


async def test_async_logging_methods_keep_the_request_context(json_logs):
    configure, lines = json_logs
    configure()
    with request_context("async-1"):
        await get_logger("a").ainfo("from a thread", n=1)
    (line,) = lines()
    assert (line["message"], line["correlation_id"], line["n"]) == ("from a thread", "async-1", 1)


def test_correlation_id_bound_on_the_logger_wins(json_logs):
    configure, lines = json_logs
    configure()
    with request_context("from-request"):
        get_logger().bind(correlation_id="from-logger").info("x")
        get_logger().info("y")
    assert [line["correlation_id"] for line in lines()] == ["from-logger", "from-request"]


def test_extra_processors_enrich_every_line(json_logs):
    configure, lines = json_logs

    def add_region(logger, method_name, event):
        event["region"] = "eu-west-1"
        event["seen_by"] = f"{logger.name}:{method_name}"
        event["api_token"] = "added-late"  # redaction runs after the processors
        return event

    configure(processors=[add_region])
    get_logger("ours").info("a")
    logging.getLogger("theirs").warning("b")
    ours, theirs = lines()
    assert (ours["region"], ours["seen_by"]) == ("eu-west-1", "ours:info")
    assert (theirs["region"], theirs["seen_by"]) == ("eu-west-1", "theirs:warning")
    assert ours["api_token"] == REDACTED


def test_a_processor_must_return_a_dict(json_logs):
    configure, _ = json_logs
    configure(processors=[lambda _logger, _method, _event: "not a dict"])
    with pytest.raises(TypeError, match="must return a dict"):
        get_logger().info("x")


@contextmanager
def logger_level(name: str, level: int) -> Iterator[None]:
    """Another test's server may have left this logger's level set; pin it for the block."""
    logger = logging.getLogger(name)
    saved = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(saved)


async def hello_asgi(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hi"})


def test_uvicorn_color_message_is_not_a_field(json_logs):
    # A real uvicorn server logs "Started server process [%d]" with extra={"color_message": ...},
    # the same text with ANSI colours for its own formatter; a JSON line must not carry it.
    configure, lines = json_logs
    configure()
    config = uvicorn.Config(hello_asgi, host="127.0.0.1", port=0, log_config=None, lifespan="off")
    server = uvicorn.Server(config)
    with logger_level("uvicorn.error", logging.INFO):
        thread = threading.Thread(target=server.run)
        thread.start()
        try:
            deadline = time.monotonic() + 10
            while not server.started and thread.is_alive() and time.monotonic() < deadline:
                time.sleep(0.01)
            assert server.started
        finally:
            server.should_exit = True
            thread.join(10)
    started = [x for x in lines() if x["message"].startswith("Started server process")]
    assert started, lines()
    for line in lines():
        assert "color_message" not in line
        assert "\x1b" not in json.dumps(line)


def test_werkzeug_ansi_colours_are_stripped_from_messages(json_logs):
    # werkzeug colours the request line of its log ("GET /missing HTTP/1.1" in yellow for a 404).
    configure, lines = json_logs
    configure()
    server = make_server("127.0.0.1", 0, Flask(__name__))
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        with logger_level("werkzeug", logging.INFO):
            response = httpx.get(f"http://127.0.0.1:{server.port}/missing", timeout=10)
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()
    assert response.status_code == 404
    (line,) = [x for x in lines() if x["logger"] == "werkzeug"]
    assert '"GET /missing HTTP/1.1" 404' in line["message"]
    assert "\x1b" not in line["message"]


def test_ansi_escapes_are_stripped_from_foreign_messages_only(json_logs):
    configure, lines = json_logs
    configure()
    logging.getLogger("lib").info("\x1b[1m\x1b[31m%s\x1b[0m failed", "GET /x")
    get_logger("app").info("kept as logged: \x1b[1m")
    assert [x["message"] for x in lines()] == ["GET /x failed", "kept as logged: \x1b[1m"]
