# Copyright 2026 stalwart contributors
"""Idempotency: run work once per key on any storage engine; replay the result after.

See ``docs/idempotency.md``. The HTTP adapters live in ``stalwart.idempotency.fastapi``
(extra ``fastapi``) and ``stalwart.idempotency.flask`` (extra ``flask``).
"""

from stalwart.idempotency._core import IdempotencyPolicy, Lease, Replay, Status
from stalwart.idempotency._errors import (
    FingerprintMismatch,
    IdempotencyError,
    InProgress,
    InvalidIdempotencyKey,
    LeaseLost,
    ResultNotStored,
)
from stalwart.idempotency._function import Codec, IdempotentDecorator, JsonCodec, idempotent
from stalwart.idempotency._http import HttpPolicy, idempotency_options, parse_idempotency_key
from stalwart.idempotency._layer import AsyncIdempotency, Idempotency

__all__ = [
    "AsyncIdempotency",
    "Codec",
    "FingerprintMismatch",
    "HttpPolicy",
    "Idempotency",
    "IdempotencyError",
    "IdempotencyPolicy",
    "IdempotentDecorator",
    "InProgress",
    "InvalidIdempotencyKey",
    "JsonCodec",
    "Lease",
    "LeaseLost",
    "Replay",
    "ResultNotStored",
    "Status",
    "idempotency_options",
    "idempotent",
    "parse_idempotency_key",
]
