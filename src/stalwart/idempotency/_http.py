# Copyright 2026 stalwart contributors
"""HTTP Idempotency-Key semantics, framework-neutral; the FastAPI and Flask adapters are shells.

Flow per request: :func:`begin_plan` (parse the key, scope it, claim it) gives either a reply to
send at once (400, 409, 422, or the replay) or a lease; after the handler, :func:`finish_plan`
stores the response or releases the claim (5xx, exceptions, streaming, oversize).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final
from urllib.parse import parse_qsl

from stalwart.idempotency._core import (
    IdempotencyPolicy,
    JSONValue,
    Lease,
    Plan,
    Replay,
    canonical_sha256,
    check_key,
    claim_plan,
    complete_plan,
    record_key,
    release_plan,
    sha256_hex,
)
from stalwart.idempotency._errors import (
    FingerprintMismatch,
    InProgress,
    InvalidIdempotencyKey,
    LeaseLost,
)
from stalwart.storage import InvalidRecord, StoreUnavailable
from stalwart.web import PROBLEM_JSON, current_request_id, problem, problem_bytes

logger = logging.getLogger("stalwart.idempotency")

# Visible ASCII except the quote, backslash, comma and semicolon.
_BARE_TOKEN: Final = re.compile(r"[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*")
REPLAYED_HEADER: Final = "Idempotent-Replayed"
DEFAULT_REPLAY_HEADERS: Final = (
    "content-type",
    "content-language",
    "content-location",
    "location",
    "etag",
    "last-modified",
    "cache-control",
)


def parse_idempotency_key(value: str) -> str:
    """Parse an ``Idempotency-Key`` header: a structured-field string or a bare token.

    >>> parse_idempotency_key('"8e03978e-40d5"'), parse_idempotency_key("8e03978e-40d5")
    ('8e03978e-40d5', '8e03978e-40d5')
    >>> parse_idempotency_key('""')
    Traceback (most recent call last):
    stalwart.idempotency._errors.InvalidIdempotencyKey: the Idempotency-Key is empty
    """
    text = value.strip(" \t")
    if text.startswith('"'):
        key = _parse_sf_string(text)
    else:
        # Many clients send bare UUIDs, which are not RFC 8941 tokens (they may start with a
        # digit); accept any visible ASCII without quotes, backslashes or separators.
        if _BARE_TOKEN.fullmatch(text) is None:
            raise InvalidIdempotencyKey(
                "the Idempotency-Key must be a quoted string or a token of visible ASCII"
            )
        key = text
    return check_key(key, "the Idempotency-Key")


def _parse_sf_string(text: str) -> str:
    """RFC 8941 §4.2.5 sf-string: printable ASCII, only ``\\"`` and ``\\\\`` escapes."""
    chars: list[str] = []
    index = 1
    while index < len(text):
        char = text[index]
        if char == "\\":
            if index + 1 >= len(text) or text[index + 1] not in '"\\':
                raise InvalidIdempotencyKey("bad escape in the Idempotency-Key string")
            chars.append(text[index + 1])
            index += 2
            continue
        if char == '"':
            if index != len(text) - 1:
                raise InvalidIdempotencyKey("unexpected characters after the closing quote")
            return "".join(chars)
        if not 0x20 <= ord(char) <= 0x7E:
            raise InvalidIdempotencyKey("the Idempotency-Key string must be printable ASCII")
        chars.append(char)
        index += 1
    raise InvalidIdempotencyKey("the Idempotency-Key string has no closing quote")


@dataclass(frozen=True, slots=True)
class HttpPolicy:
    """How the HTTP adapters apply idempotency.

    >>> HttpPolicy(key_required=True).methods == frozenset({"POST", "PATCH"})
    True
    """

    namespace: str = "http"
    """First part of every scope: separate apps sharing one store with different values."""
    methods: frozenset[str] = frozenset({"POST", "PATCH"})
    """Methods made idempotent by default (a route may opt in or out)."""
    key_required: bool = False
    """Reject requests without the header (400); per route overridable."""
    header: str = "Idempotency-Key"
    fingerprint_headers: tuple[str, ...] = ()
    """Request headers that are part of the payload fingerprint (besides method/path/query/body)."""
    replay_headers: tuple[str, ...] = DEFAULT_REPLAY_HEADERS
    """Response headers stored and replayed; all others (Set-Cookie!) are dropped."""
    max_response_bytes: int = 256 * 1024
    """Larger responses are sent but not stored (the claim is released)."""
    release_on_server_error: bool = True
    """Release the claim after a 5xx response so a retry runs again; ``False`` stores it."""
    lease_retry_after: bool = True
    """Send ``Retry-After`` (seconds until the running lease expires) with 409s."""
    problem_type: str = "about:blank"
    """``type`` member of the problem documents this layer sends."""

    def header_names(self) -> tuple[str, ...]:
        """Lower-cased request headers the layer reads."""
        return (
            self.header.lower(),
            "content-type",
            *(name.lower() for name in self.fingerprint_headers),
        )


@dataclass(frozen=True, slots=True)
class RouteOptions:
    """Per-route settings set with :func:`idempotency_options`."""

    enabled: bool = True
    key_required: bool | None = None


ROUTE_OPTIONS_ATTRIBUTE: Final = "__stalwart_idempotency__"


def idempotency_options[F: Callable[..., Any]](
    *, enabled: bool = True, key_required: bool | None = None
) -> Callable[[F], F]:
    """Opt a view in (any method) or out of idempotency, or make its key required.

    Put it under the framework's route decorator (closest to the function).

    >>> @idempotency_options(enabled=False)
    ... def health() -> str: return "ok"
    >>> health.__stalwart_idempotency__.enabled
    False
    """
    options = RouteOptions(enabled, key_required)

    def mark(view: F) -> F:
        setattr(view, ROUTE_OPTIONS_ATTRIBUTE, options)
        return view

    return mark


def route_settings(
    policy: HttpPolicy, method: str, endpoint: Callable[..., Any] | None
) -> tuple[bool, bool]:
    """(idempotent?, key required?) for one method of one view."""
    options = getattr(endpoint, ROUTE_OPTIONS_ATTRIBUTE, None)
    if isinstance(options, RouteOptions):
        required = policy.key_required if options.key_required is None else options.key_required
        return options.enabled, options.enabled and required
    return method.upper() in policy.methods, policy.key_required


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """What the layer needs to know about a request (adapters fill it in)."""

    method: str
    route: str
    """The route template (``/orders/{order_id}``), not the concrete path."""
    path: str
    query: str
    body: bytes
    headers: Mapping[str, str]
    """Lower-cased names of (at least) :meth:`HttpPolicy.header_names`."""
    principal: str | None = None


@dataclass(frozen=True, slots=True)
class HttpReply:
    """A response to send (a replay or a problem) or to store."""

    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""

    def to_json(self) -> JSONValue:
        """The stored form: the body as text when it is UTF-8, else base64."""
        try:
            body, encoding = self.body.decode(), "utf-8"
        except UnicodeDecodeError:
            body, encoding = base64.b64encode(self.body).decode(), "base64"
        headers = [list(pair) for pair in self.headers]
        return {"status": self.status, "headers": headers, "body": body, "encoding": encoding}

    @classmethod
    def from_json(cls, stored: Any) -> HttpReply:
        """Inverse of :meth:`to_json`."""
        body: str = stored["body"]
        raw = base64.b64decode(body) if stored.get("encoding") == "base64" else body.encode()
        headers = tuple((str(name), str(value)) for name, value in stored["headers"])
        return cls(int(stored["status"]), headers, raw)


@dataclass(frozen=True, slots=True)
class Proceed:
    """The request owns the key: run the handler, then call :func:`finish_plan`."""

    lease: Lease


type Begin = Proceed | HttpReply | None
"""``None``: no ``Idempotency-Key`` and none required, so run the handler unguarded."""


def _body_digest(body: bytes, content_type: str) -> str:
    if body and "json" in content_type:
        # Not JSON after all, NaN, a lone surrogate ("\ud800") or nested too deeply to parse
        # or encode: the raw bytes' digest.
        with contextlib.suppress(ValueError, RecursionError):
            return canonical_sha256(json.loads(body))
    return sha256_hex(body)


def request_fingerprint(policy: HttpPolicy, request: HttpRequest) -> str:
    """SHA-256 over method, path, sorted query, canonical body and chosen headers.

    JSON bodies are compared after parsing, so key order and whitespace do not matter.
    """
    body_digest = _body_digest(request.body, request.headers.get("content-type", ""))
    query = sorted(parse_qsl(request.query, keep_blank_values=True)) if request.query else []
    headers = [
        [name.lower(), request.headers.get(name.lower(), "")] for name in policy.fingerprint_headers
    ]
    return canonical_sha256([request.method.upper(), request.path, query, body_digest, headers])


def problem_reply(
    policy: HttpPolicy,
    status: int,
    code: str,
    detail: str,
    extra_headers: tuple[tuple[str, str], ...] = (),
) -> HttpReply:
    """An RFC 9457 reply, with the request id when the web kit (or any request context)
    bound one."""
    document = problem(status, type_=policy.problem_type, detail=detail, code=code)
    request_id = current_request_id()
    if request_id is not None:
        document["request_id"] = request_id
    return HttpReply(
        status, (("content-type", PROBLEM_JSON), *extra_headers), problem_bytes(document)
    )


def begin_plan(  # noqa: PLR0911 - one early return per HTTP outcome reads best
    policy: HttpPolicy, core: IdempotencyPolicy, request: HttpRequest, *, required: bool
) -> Plan[Begin]:
    """Parse and scope the key, then claim it (one store round trip)."""
    raw = request.headers.get(policy.header.lower())
    if raw is None:
        if required:
            return problem_reply(
                policy,
                400,
                "idempotency-key-missing",
                f"this endpoint requires an {policy.header} header",
            )
        return None
    try:
        client_key = parse_idempotency_key(raw)
    except InvalidIdempotencyKey as exc:
        return problem_reply(policy, 400, "idempotency-key-invalid", str(exc))
    key = record_key(
        core,
        policy.namespace,
        request.principal or "",
        request.method.upper(),
        request.route,
        client_key,
    )
    try:
        claimed = yield from claim_plan(core, key, request_fingerprint(policy, request))
    except InProgress as exc:
        retry = (("retry-after", str(int(exc.retry_after))),) if policy.lease_retry_after else ()
        return problem_reply(
            policy,
            409,
            "idempotency-in-progress",
            "a request with this Idempotency-Key is still being processed",
            retry,
        )
    except FingerprintMismatch:
        return problem_reply(
            policy,
            422,
            "idempotency-key-reused",
            "this Idempotency-Key was used with a different request payload",
        )
    except StoreUnavailable as exc:
        # Without the store we cannot promise at-most-once: refuse rather than run unguarded.
        logger.warning("idempotency store unavailable for %s: %s", key.partition, exc)
        return problem_reply(
            policy,
            503,
            "idempotency-store-unavailable",
            "the idempotency store is unavailable; retry the request with the same key",
            (("retry-after", "1"),),
        )
    if isinstance(claimed, Replay):
        stored = HttpReply.from_json(claimed.result)
        return HttpReply(stored.status, (*stored.headers, (REPLAYED_HEADER, "true")), stored.body)
    return Proceed(claimed)


class Settlement(StrEnum):
    """What happens to a claim once the handler is done."""

    STORE = "store"
    RELEASE_ERROR = "release: the handler raised"
    RELEASE_SERVER_ERROR = "release: 5xx response"
    RELEASE_STREAMING = "release: streaming responses are not stored"
    RELEASE_OVERSIZE = "release: response above max_response_bytes"


def settle(policy: HttpPolicy, reply: HttpReply | None, *, streamed: bool) -> Settlement:
    """Decide whether a handler's outcome is stored."""
    if reply is None:
        return Settlement.RELEASE_ERROR
    if reply.status >= 500 and policy.release_on_server_error:
        return Settlement.RELEASE_SERVER_ERROR
    if streamed:
        return Settlement.RELEASE_STREAMING
    if len(reply.body) > policy.max_response_bytes:
        return Settlement.RELEASE_OVERSIZE
    return Settlement.STORE


@functools.cache
def _allowed_headers(names: tuple[str, ...]) -> frozenset[str]:
    return frozenset(name.lower() for name in names)


def storable(policy: HttpPolicy, reply: HttpReply) -> HttpReply:
    """Keep only the allow-listed headers."""
    allowed = _allowed_headers(policy.replay_headers)
    return HttpReply(
        reply.status, tuple((n, v) for n, v in reply.headers if n.lower() in allowed), reply.body
    )


def finish_plan(
    policy: HttpPolicy,
    core: IdempotencyPolicy,
    lease: Lease,
    reply: HttpReply | None,
    *,
    streamed: bool = False,
) -> Plan[Settlement]:
    """Store the handler's response or release the claim. Never raises LeaseLost: the client
    gets the response it produced either way (the conflict is logged by the core)."""
    outcome = settle(policy, reply, streamed=streamed)
    try:
        if outcome is Settlement.STORE:
            assert reply is not None
            try:
                yield from complete_plan(core, lease, storable(policy, reply).to_json())
            except InvalidRecord as exc:  # e.g. above the engine's item limit
                logger.warning(
                    "idempotent response for %s not stored: %s", lease.key.partition, exc
                )
                outcome = Settlement.RELEASE_OVERSIZE
                yield from release_plan(lease)
        else:
            if outcome in (Settlement.RELEASE_STREAMING, Settlement.RELEASE_OVERSIZE):
                logger.warning(
                    "idempotent response for %s not stored (%s)", lease.key.partition, outcome.value
                )
            yield from release_plan(lease)
    except LeaseLost:
        pass  # logged by the core; the client still gets the response it produced
    except StoreUnavailable:
        # The handler ran but its outcome could not be recorded: the claim stays in progress
        # until its lease expires, after which a retry runs the handler again.
        logger.exception(
            "idempotency outcome for %s not recorded (%s)", lease.key.partition, outcome.value
        )
    return outcome
