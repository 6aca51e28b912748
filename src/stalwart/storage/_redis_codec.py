# Copyright 2026 stalwart contributors
"""Pure (sans-I/O) half of the Redis engine: key layout, script calls, replies and errors.

Each operation is turned into a :class:`Call` (which script, which keys and arguments, and how to
decode the reply). :class:`RedisEngine` plans every operation as one round trip
(:func:`single`: yield the call, decode its reply); the executors in ``redis`` only send calls.
The shared store classes (``_engine``) have checked keys, queries and transaction shapes before
a call is built.
"""

from __future__ import annotations

import json
import math
import os
import ssl
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import SplitResult, urlencode, urlsplit

from redis import exceptions as redis_errors

from stalwart.storage._contract import (
    AlreadyExists,
    Check,
    Create,
    Delete,
    Increment,
    InvalidRecord,
    JSONObject,
    Key,
    Operation,
    Page,
    Record,
    Replace,
    StorageError,
    StoreConfigurationError,
    StoreUnavailable,
    TransactionConflict,
    VersionConflict,
    encode_data,
    expiry_from_ttl,
    stored_copy,
    validate_amount,
    validate_field,
    validate_version,
)
from stalwart.storage._query import decode_cursor, encode_cursor
from stalwart.storage._redis_scripts import INVALID_CODE
from stalwart.storage._url import flag, one_of, positive_number, url_options, whole_number

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from stalwart.storage._engine import Plan

MAX_ITEM_BYTES: Final = 512 * 1024
"""Largest JSON encoding of one record's data (bytes); larger data raises InvalidRecord."""

MAX_TRANSACTION_ITEMS: Final = 100
"""Largest number of operations in one transact() call (one Lua script)."""


EXPIRY_GRACE_MS: Final = 1000
"""Redis removes a record this long after its logical expiry (liveness is checked against the
store's clock; the grace keeps clients whose clocks lag a little from seeing it vanish early)."""


class ScriptName(StrEnum):
    """The engine's Lua scripts, one per operation."""

    CREATE = "create"
    REPLACE = "replace"
    DELETE = "delete"
    INCREMENT = "increment"
    QUERY = "query"
    TRANSACT = "transact"


type Arg = bytes | str
type Reply = Any
"""A raw redis-py reply: nested lists of bytes (or str with ``decode_responses=True``)."""


@dataclass(slots=True)  # not frozen: built for every operation, and frozen costs ~3x to build
class Call[T]:
    """One round trip and its decoder: a script, or for ``None`` an ``HMGET keys[0] *args``."""

    script: ScriptName | None
    keys: tuple[Arg, ...]
    args: tuple[Arg, ...]
    decode: Callable[[Reply], T]


def decode_reply[T](call: Call[T], reply: Reply) -> T:
    """Decode a reply; a malformed one (a foreign value at our key) is a :class:`StorageError`."""
    try:
        return call.decode(reply)
    except (ValueError, TypeError, IndexError, AttributeError) as exc:
        raise StorageError(
            f"unexpected reply from Redis ({exc}); is a key of this store "
            "written by something else?"
        ) from exc


def single[T](call: Call[T]) -> Plan[Call[Any], T]:
    """The plan of every Redis operation: one round trip, ``call``, and its decoded reply."""
    return decode_reply(call, (yield call))


# ---------------------------------------------------------------------------------------------
# Key layout
# ---------------------------------------------------------------------------------------------


def partition_key(prefix: str, partition: str) -> str:
    """The Redis Cluster hash tag shared by every key of one partition.

    ``{`` ``}`` ``:`` and ``%`` are percent-escaped so that the tag always ends where it should
    and two (prefix, partition) pairs never share one. Other modules may append their own
    suffixes; the store uses ``i`` (the index), ``r:<sort key>`` (records) and ``w:<token>``
    (replay markers, see ``_redis_scripts``).

    >>> partition_key("app", "acct:{1}")
    '{app:acct%3A%7B1%7D}'
    """
    return Layout(prefix).tag(partition)


def _escape(text: str) -> str:
    # Chained str.replace, not str.translate: translate's multi-character mapping takes a
    # per-character slow path (~30 us for an idempotency partition, twice per operation).
    # "%" goes first so the escapes added after it are not escaped again.
    return text.replace("%", "%25").replace("{", "%7B").replace("}", "%7D").replace(":", "%3A")


def utf8(text: str) -> bytes:
    """Encode ``text`` for Redis; a lone surrogate (not storable as UTF-8) is InvalidRecord."""
    try:
        return text.encode()
    except UnicodeEncodeError as exc:
        raise InvalidRecord(f"text is not valid Unicode (lone surrogate?): {exc}") from exc


@dataclass(frozen=True, slots=True)
class Layout:
    """Key names of one store (one prefix)."""

    prefix: str
    _head: str = field(init=False, repr=False, compare=False)
    """``{<escaped prefix>:``, escaped once instead of on every operation."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "_head", "{" + _escape(self.prefix) + ":")

    def tag(self, partition: str) -> str:
        """:func:`partition_key` of this store's prefix."""
        return self._head + _escape(partition) + "}"

    def record_base(self, partition: str) -> bytes:
        return utf8(self.tag(partition) + "r:")

    def record_key(self, key: Key) -> bytes:
        return self.record_base(key.partition) + utf8(key.sort)

    def index_key(self, partition: str) -> bytes:
        return utf8(self.tag(partition) + "i")

    def keys(self, key: Key) -> tuple[bytes, bytes]:
        """``(record key, index key)`` of ``key``, escaping its partition once."""
        tag = utf8(self.tag(key.partition))
        return tag + b"r:" + utf8(key.sort), tag + b"i"

    def write_keys(self, key: Key, *, remember: bool) -> tuple[bytes, ...]:
        """:meth:`keys`, plus a fresh replay marker in the partition's slot if ``remember``."""
        record, index = self.keys(key)
        if remember:
            return record, index, index[:-1] + replay_marker()  # index[:-1]: the tag
        return record, index


# ---------------------------------------------------------------------------------------------
# Argument encoding
# ---------------------------------------------------------------------------------------------


def replay_marker() -> bytes:
    """``w:<random token>``: the key suffix under which one call's outcome is remembered for a
    resend of the same call (see ``_redis_scripts``)."""
    return b"w:" + os.urandom(8).hex().encode()  # secrets.token_hex(8) without its call layers


def _float_text(value: float) -> str:
    return repr(float(value))


def _expiry_args(ttl: float | None, now: float) -> tuple[float | None, str, str]:
    """``(expires_at, expires_at text, PEXPIRE milliseconds text)`` for an optional ttl."""
    expires_at = expiry_from_ttl(ttl, now)
    if expires_at is None:
        return None, "", ""
    millis = max(1, math.ceil((expires_at - now) * 1000)) + EXPIRY_GRACE_MS
    return expires_at, repr(expires_at), str(millis)


def _data_text(data: JSONObject) -> str:
    try:
        return encode_data(data, max_bytes=MAX_ITEM_BYTES)
    except UnicodeEncodeError as exc:
        # encode_data measures bytes outside its own try: lone surrogates surface here.
        raise InvalidRecord(f"data is not valid Unicode (lone surrogate?): {exc}") from exc


def _json_number(by: float) -> str:
    return json.dumps(validate_amount(by))


def _field_token(field: str) -> str:
    return json.dumps(validate_field(field), ensure_ascii=False)


# ---------------------------------------------------------------------------------------------
# Reply decoding
# ---------------------------------------------------------------------------------------------


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _record(key: Key, data: bytes | str, version: bytes | str, expires: bytes | str) -> Record:
    return Record(key=key, data=json.loads(data), version=int(version), expires_at=_expiry(expires))


def _expiry(expires: bytes | str) -> float | None:
    expires_text = _text(expires)
    return float(expires_text) if expires_text else None


def _current(key: Key, reply: Sequence[Any], start: int = 1) -> Record | None:
    if len(reply) < start + 3:
        return None
    return _record(key, reply[start], reply[start + 1], reply[start + 2])


# ---------------------------------------------------------------------------------------------
# Single-record calls
# ---------------------------------------------------------------------------------------------


def get_call(layout: Layout, key: Key, now: float) -> Call[Record | None]:
    """``HMGET`` of the record's fields; expiry is judged against ``now`` here."""

    def decode(reply: Reply) -> Record | None:
        data, version, expires = reply
        if version is None:
            return None
        record = _record(key, data, version, expires)
        if record.expires_at is not None and record.expires_at <= now:
            return None
        return record

    return Call(None, (layout.record_key(key),), ("d", "v", "e"), decode)


def create_call(
    layout: Layout,
    key: Key,
    data: JSONObject,
    *,
    ttl: float | None,
    now: float,
    remember: bool = True,
) -> Call[Record]:
    """``remember``: the client may resend the call, so its outcome is remembered (on every
    write call; see ``_redis_scripts``)."""
    text = _data_text(data)
    expires_at, expires, millis = _expiry_args(ttl, now)
    record = Record(key, stored_copy(data, text), 1, expires_at)

    def decode(reply: Reply) -> Record:
        if _text(reply[0]) != "ok":
            raise AlreadyExists(key, _current(key, reply))
        return record

    return Call(
        ScriptName.CREATE,
        layout.write_keys(key, remember=remember),
        (_float_text(now), text, expires, millis, utf8(key.sort)),
        decode,
    )


def replace_call(
    layout: Layout,
    key: Key,
    data: JSONObject,
    *,
    expected_version: int,
    ttl: float | None,
    now: float,
    remember: bool = True,
) -> Call[Record]:
    validate_version(expected_version)
    text = _data_text(data)
    expires_at, expires, millis = _expiry_args(ttl, now)
    record = Record(key, stored_copy(data, text), expected_version + 1, expires_at)

    def decode(reply: Reply) -> Record:
        if _text(reply[0]) != "ok":
            raise VersionConflict(key, expected_version, _current(key, reply))
        return record

    return Call(
        ScriptName.REPLACE,
        layout.write_keys(key, remember=remember),
        (
            _float_text(now),
            text,
            expires,
            millis,
            utf8(key.sort),
            str(expected_version),
            str(expected_version + 1),
        ),
        decode,
    )


def delete_call(
    layout: Layout, key: Key, *, expected_version: int | None, now: float, remember: bool = True
) -> Call[bool]:
    if expected_version is not None:
        validate_version(expected_version)

    def decode(reply: Reply) -> bool:
        status = _text(reply[0])
        if status == "conflict":
            raise VersionConflict(key, expected_version, _current(key, reply))
        return status == "ok"

    return Call(
        ScriptName.DELETE,
        layout.write_keys(key, remember=remember),
        (
            _float_text(now),
            utf8(key.sort),
            "" if expected_version is None else str(expected_version),
        ),
        decode,
    )


def increment_call(
    layout: Layout,
    key: Key,
    field: str,
    by: float,
    *,
    ttl: float | None,
    now: float,
    remember: bool = True,
) -> Call[Record]:
    field_token = _field_token(field)
    amount = _json_number(by)
    created = _data_text({field: validate_amount(by)})
    _, expires, millis = _expiry_args(ttl, now)

    def decode(reply: Reply) -> Record:
        record = _current(key, reply)
        assert record is not None, "the increment script always returns the record"
        return record

    return Call(
        ScriptName.INCREMENT,
        layout.write_keys(key, remember=remember),
        (
            _float_text(now),
            utf8(key.sort),
            utf8(field_token),
            amount,
            created,
            expires,
            millis,
        ),
        decode,
    )


# ---------------------------------------------------------------------------------------------
# Query
# ---------------------------------------------------------------------------------------------


def query_bounds(prefix: bytes, after: bytes | None, *, descending: bool) -> tuple[bytes, bytes]:
    """``(first, second)`` ZRANGEBYLEX bounds (ZREVRANGEBYLEX order when descending).

    Every UTF-8 string that starts with ``prefix`` sorts before ``prefix + b"\\xff"`` because
    0xFF never occurs in UTF-8, which makes that an exclusive upper bound.

    >>> query_bounds(b"a", None, descending=False)
    (b'[a', b'(a\\xff')
    >>> query_bounds(b"", b"k", descending=True)
    (b'(k', b'-')
    """
    lower = b"[" + prefix if prefix else b"-"
    upper_text = prefix + b"\xff"
    upper = b"(" + upper_text if prefix else b"+"
    if descending:
        if after is not None and (not prefix or after < upper_text):
            upper = b"(" + after
        return upper, lower
    if after is not None and after >= prefix:
        lower = b"(" + after
    return lower, upper


# ---------------------------------------------------------------------------------------------
# Transactions
# ---------------------------------------------------------------------------------------------

_REASONS: Final = {
    "exists": "a live record already exists",
    "absent": "no live record",
}


def _item_args(operation: Operation, now: float) -> tuple[str, ...]:
    """The nine per-item arguments of the transact script (see ``_redis_scripts``)."""
    match operation:
        case Create(data=data, ttl=ttl):
            _, expires, millis = _expiry_args(ttl, now)
            return ("C", "", "", _data_text(data), expires, millis, "", "")
        case Replace(data=data, expected_version=expected, ttl=ttl):
            validate_version(expected)
            _, expires, millis = _expiry_args(ttl, now)
            return (
                "R",
                str(expected),
                str(expected + 1),
                _data_text(data),
                expires,
                millis,
                "",
                "",
            )
        case Delete(expected_version=expected) | Check(expected_version=expected):
            if expected is not None:
                validate_version(expected)
            kind = "D" if isinstance(operation, Delete) else "K"
            return (kind, "" if expected is None else str(expected), "", "", "", "", "", "")
        case Increment(field=field, by=by, ttl=ttl):
            _, expires, millis = _expiry_args(ttl, now)
            created = _data_text({field: validate_amount(by)})
            return ("I", "", "", created, expires, millis, _field_token(field), _json_number(by))
    raise InvalidRecord(f"unknown transaction operation {operation!r}")  # pragma: no cover


def _item_result(
    operation: Operation, sent: Arg, data: Reply, version: Reply, expires: Reply
) -> Record | None:
    """The record an item produced; Create/Replace data is what was sent, not echoed back
    (a copy of the operation's data, as ``create`` and ``replace`` return)."""
    match operation:
        case Create(data=written) | Replace(data=written):
            return Record(
                operation.key, stored_copy(written, _text(sent)), int(version), _expiry(expires)
            )
        case Increment():
            return _record(operation.key, data, version, expires)
    return None


def transact_call(
    layout: Layout,
    ops: Sequence[Operation],
    *,
    now: float,
    single_slot: bool,
    remember: bool = True,
) -> Call[list[Record | None]]:
    if single_slot and len({op.key.partition for op in ops}) > 1:
        raise InvalidRecord(
            "in cluster mode every key of a transaction must be in one "
            "partition (one hash slot); got "
            f"{sorted({op.key.partition for op in ops})}"
        )
    keys: list[Arg] = []
    args: list[Arg] = [_float_text(now), str(len(ops))]
    sent: list[Arg] = []
    for operation in ops:
        keys += layout.keys(operation.key)
        kind, *rest = _item_args(operation, now)
        args += [kind, utf8(operation.key.sort), *rest]
        sent.append(rest[2])
    if remember:  # in the first item's slot: in cluster mode every item shares it
        keys.append(utf8(layout.tag(ops[0].key.partition)) + replay_marker())

    def decode(reply: Reply) -> list[Record | None]:
        if _text(reply[0]) == "conflict":
            index = int(reply[1])
            operation = ops[index]
            reason = _text(reply[2])
            current = _current(operation.key, reply, start=3)
            if reason == "version":
                expected = getattr(operation, "expected_version", None)
                found = "absent" if current is None else current.version
                message = f"expected version {expected}, found {found}"
            else:
                message = _REASONS.get(reason, reason)
            raise TransactionConflict(index, operation, message, current)
        return [
            _item_result(operation, sent[i], reply[1 + 3 * i], reply[2 + 3 * i], reply[3 + 3 * i])
            for i, operation in enumerate(ops)
        ]

    return Call(ScriptName.TRANSACT, tuple(keys), tuple(args), decode)


# ---------------------------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RedisEngine:
    """The Redis engine's plans (see ``_engine.Engine``): each operation is one :class:`Call`.

    ``remember``: the client may resend a call after losing its reply, so every write call
    carries a replay marker (see ``_redis_scripts``). ``cluster``: a transaction must stay in
    one partition (one hash slot).
    """

    layout: Layout
    remember: bool
    cluster: bool

    @property
    def max_item_bytes(self) -> int:
        return MAX_ITEM_BYTES

    @property
    def max_transaction_items(self) -> int:
        return MAX_TRANSACTION_ITEMS

    def get(self, key: Key, now: float) -> Plan[Call[Any], Record | None]:
        return single(get_call(self.layout, key, now))

    def create(
        self, key: Key, data: JSONObject, ttl: float | None, now: float
    ) -> Plan[Call[Any], Record]:
        return single(create_call(self.layout, key, data, ttl=ttl, now=now, remember=self.remember))

    def replace(
        self, key: Key, data: JSONObject, expected_version: int, ttl: float | None, now: float
    ) -> Plan[Call[Any], Record]:
        call = replace_call(
            self.layout,
            key,
            data,
            expected_version=expected_version,
            ttl=ttl,
            now=now,
            remember=self.remember,
        )
        return single(call)

    def delete(self, key: Key, expected_version: int | None, now: float) -> Plan[Call[Any], bool]:
        call = delete_call(
            self.layout, key, expected_version=expected_version, now=now, remember=self.remember
        )
        return single(call)

    def increment(
        self, key: Key, field: str, by: float, ttl: float | None, now: float
    ) -> Plan[Call[Any], Record]:
        call = increment_call(self.layout, key, field, by, ttl=ttl, now=now, remember=self.remember)
        return single(call)

    def query(
        self,
        partition: str,
        *,
        prefix: str,
        limit: int,
        cursor: str | None,
        descending: bool,
        now: float,
    ) -> Plan[Call[Any], Page]:
        """The query script over the partition's sorted-set index, by ``ZRANGEBYLEX``."""
        after = None if cursor is None else utf8(decode_cursor(cursor, partition))
        first, second = query_bounds(utf8(prefix), after, descending=descending)

        def decode(reply: Reply) -> Page:
            records = [
                _record(
                    Key(partition, _text(reply[at])), reply[at + 1], reply[at + 2], reply[at + 3]
                )
                for at in range(1, len(reply), 4)
            ]
            more = _text(reply[0]) == "1" and records
            return Page(records, encode_cursor(partition, records[-1].key.sort) if more else None)

        call = Call(
            ScriptName.QUERY,
            (self.layout.index_key(partition),),
            (
                _float_text(now),
                self.layout.record_base(partition),
                first,
                second,
                str(limit),
                "1" if descending else "0",
            ),
            decode,
        )
        return single(call)

    def transact(
        self, operations: Sequence[Operation], now: float
    ) -> Plan[Call[Any], list[Record | None]]:
        call = transact_call(
            self.layout, operations, now=now, single_slot=self.cluster, remember=self.remember
        )
        return single(call)


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------

_TRANSIENT_CODES: Final = (
    "BUSY",
    "OOM",
    "TRYAGAIN",
    "CLUSTERDOWN",
    "MASTERDOWN",
    "LOADING",
    "READONLY",
    "NOREPLICAS",
    "MOVED",
    "ASK",
)


def _credentials_problem(exc: BaseException, message: str) -> str | None:
    """What is wrong when Redis refused the client (or the client refused Redis' certificate):
    configuration, not an outage -- retrying cannot help."""
    # redis-py strips the error code from its exception messages; the store's own transport
    # keeps it (NOAUTH ..., WRONGPASS ...).
    if message.startswith("NOAUTH") or (
        isinstance(exc, redis_errors.AuthenticationError) and "required" in message
    ):
        return "Redis requires a password: put it in the URL (redis://:password@host) or client"
    if message.startswith("WRONGPASS") or isinstance(exc, redis_errors.AuthenticationError):
        return "Redis rejected the username/password: check the URL's or client's credentials"
    if message.startswith("NOPERM") or isinstance(
        exc, redis_errors.AuthorizationError | redis_errors.NoPermissionError
    ):
        return "the Redis user lacks a permission (ACL) the store needs"
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, ssl.SSLCertVerificationError):
        return (
            "the Redis server's TLS certificate is not trusted: "
            f"{cause.verify_message or cause}; check ssl_ca_certs and ssl_check_hostname"
        )
    return None


def translate_error(exc: BaseException) -> StorageError:
    """Map a redis-py exception to the storage error tree (raise the result ``from exc``).

    >>> type(translate_error(redis_errors.TimeoutError("read timed out"))).__name__
    'StoreUnavailable'
    """
    message = str(exc)
    refusal = _credentials_problem(exc, message)
    if refusal is not None:
        return StoreConfigurationError(f"{refusal} ({type(exc).__name__}: {message})")
    if isinstance(exc, redis_errors.ConnectionError | redis_errors.TimeoutError):
        return StoreUnavailable(f"Redis unavailable: {message}")
    if isinstance(exc, redis_errors.ResponseError):
        if message.startswith(INVALID_CODE):
            return InvalidRecord(message.removeprefix(INVALID_CODE).strip())
        if isinstance(
            exc,
            redis_errors.OutOfMemoryError
            | redis_errors.ReadOnlyError
            | redis_errors.ClusterDownError
            | redis_errors.TryAgainError
            | redis_errors.AskError,
        ) or message.startswith(_TRANSIENT_CODES):
            return StoreUnavailable(f"Redis cannot serve the request now: {message}")
        if message.startswith("WRONGTYPE"):
            return StorageError(f"a key of this store holds a foreign value: {message}")
    return StorageError(f"Redis error: {type(exc).__name__}: {message}")


# ---------------------------------------------------------------------------------------------
# URLs
# ---------------------------------------------------------------------------------------------

DEFAULT_PREFIX: Final = "stalwart"
DEFAULT_CONNECT_TIMEOUT_S: Final = 2.0
DEFAULT_SOCKET_TIMEOUT_S: Final = 5.0
DEFAULT_HEALTH_CHECK_INTERVAL_S: Final = 30
MAX_CLIENT_RETRIES: Final = 5
type Transport = Literal["auto", "stalwart", "redis-py"]
"""Which transport carries a Redis store's commands (see ``docs/storage/redis.md``)."""
TRANSPORTS: Final[tuple[Transport, ...]] = ("auto", "stalwart", "redis-py")


def _nonempty(name: str, value: str) -> str:
    if not value:
        raise StoreConfigurationError(f"URL option {name} must not be empty")
    return value


def _choice(*choices: str) -> Callable[[str, str], str]:
    return lambda name, value: one_of(name, value, choices)


_STORE_PARAMS: Final[dict[str, tuple[str, Callable[[str, str], Any]]]] = {
    "prefix": ("prefix", _nonempty),
    "socket_connect_timeout": ("socket_connect_timeout", positive_number),
    "socket_timeout": ("socket_timeout", positive_number),
    "timeout": ("socket_timeout", positive_number),
    "health_check_interval": (
        "health_check_interval",
        lambda name, value: whole_number(name, value, low=0, high=3600),
    ),
    "retries": (
        "retries",
        lambda name, value: whole_number(name, value, low=0, high=MAX_CLIENT_RETRIES),
    ),
    "cluster": ("cluster", flag),
    "transport": ("transport", _choice(*TRANSPORTS)),
}

# redis-py parameters passed through to its URL parser, each checked here first so a wrong
# value is a configuration error now rather than a failed connection later.
_PASSTHROUGH_PARAMS: Final[dict[str, Callable[[str, str], Any]]] = {
    "db": lambda name, value: whole_number(name, value, low=0),
    "max_connections": whole_number,
    "socket_keepalive": flag,
    "client_name": _nonempty,
    "protocol": _choice("2", "3"),
    "ssl_cert_reqs": _choice("none", "optional", "required"),
    "ssl_ca_certs": _nonempty,
    "ssl_certfile": _nonempty,
    "ssl_keyfile": _nonempty,
    "ssl_check_hostname": flag,
}
_TLS_ONLY: Final = frozenset(name for name in _PASSTHROUGH_PARAMS if name.startswith("ssl_"))
_SCHEMES: Final = ("redis", "rediss", "unix")


@dataclass(frozen=True, slots=True)
class UrlOptions:
    """What a ``redis://``, ``rediss://`` or ``unix://`` store URL says beyond redis-py's URL."""

    client_url: str
    """The URL handed to redis-py (our parameters removed)."""
    prefix: str = DEFAULT_PREFIX
    socket_connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S
    socket_timeout: float = DEFAULT_SOCKET_TIMEOUT_S
    health_check_interval: int = DEFAULT_HEALTH_CHECK_INTERVAL_S
    retries: int = 0
    cluster: bool = False
    transport: Transport = "auto"
    """``auto``: the store's own transport unless a setting needs redis-py; ``stalwart``: the
    own transport or a StoreConfigurationError; ``redis-py``: redis-py for every command."""


def _check_address(scheme: str, parts: SplitResult) -> None:
    """Reject what redis-py would misread: a non-numeric port, a database that is no number
    (redis-py silently uses 0), a Unix URL without a socket path."""
    try:
        parts.port  # noqa: B018 - parsing it is the check
        hostname = parts.hostname
    except ValueError as exc:
        raise StoreConfigurationError(f"malformed Redis URL: {exc}") from exc
    if scheme == "unix":
        if not parts.path or parts.path == "/":
            msg = "a unix:// Redis URL needs a socket path (unix:///path/to/redis.sock)"
            raise StoreConfigurationError(msg)
        return
    if parts.netloc and not hostname:
        raise StoreConfigurationError("malformed Redis URL: no host")
    database = parts.path.removeprefix("/")
    if database and not database.isdigit():
        msg = f"the path of a Redis URL is the database number (/0 to /N), got {parts.path!r}"
        raise StoreConfigurationError(msg)


def parse_store_url(url: str) -> UrlOptions:
    """Split a store URL into redis-py's URL and the store's own options.

    Store parameters: ``prefix`` (default ``stalwart``), ``socket_connect_timeout`` (2 s),
    ``socket_timeout`` or its alias ``timeout`` (5 s), ``health_check_interval`` (30 s),
    ``retries`` (redis-py's own retries, 0-5, default 0), ``cluster`` (false) and ``transport``
    (``auto``, ``stalwart`` or ``redis-py``). A few redis-py parameters pass through (``db``,
    ``max_connections``, ``client_name``, ``protocol``, ``socket_keepalive``, ``ssl_*`` with
    ``rediss://``); anything else is rejected so a typo cannot go unnoticed. Every mistake
    raises :class:`~stalwart.storage.StoreConfigurationError`.

    >>> options = parse_store_url("redis://localhost:6379/2?prefix=app&timeout=1")
    >>> options.client_url, options.prefix, options.socket_timeout
    ('redis://localhost:6379/2', 'app', 1.0)
    """
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise StoreConfigurationError(f"malformed Redis URL: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        msg = f"not a Redis URL (redis://, rediss:// or unix://): scheme {parts.scheme!r}"
        raise StoreConfigurationError(msg)
    _check_address(scheme, parts)
    options: dict[str, Any] = {}
    passthrough: list[tuple[str, str]] = []
    known = {*_STORE_PARAMS, *_PASSTHROUGH_PARAMS}
    for name, value in url_options(url, known, engine="Redis").items():
        if name in _STORE_PARAMS:
            option, parse = _STORE_PARAMS[name]
            options[option] = parse(name, value)
            continue
        checked = _PASSTHROUGH_PARAMS[name](name, value)
        if name in _TLS_ONLY and scheme != "rediss":
            raise StoreConfigurationError(f"URL option {name} needs a rediss:// (TLS) URL")
        if name == "socket_keepalive" and scheme == "unix":
            raise StoreConfigurationError("socket_keepalive applies to TCP, not unix://")
        passthrough.append((name, checked if isinstance(checked, str) else value))
    # Not urlunsplit(): it turns "unix:///path" into "unix:/path", which redis-py refuses.
    base = url.partition("#")[0].partition("?")[0]
    client_url = f"{base}?{urlencode(passthrough)}" if passthrough else base
    return UrlOptions(client_url=client_url, **options)
