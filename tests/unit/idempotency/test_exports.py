# Copyright 2026 stalwart contributors
"""The public surface of stalwart.idempotency and stalwart.web is curated and importable."""

from __future__ import annotations

import stalwart.idempotency
import stalwart.idempotency.fastapi
import stalwart.idempotency.flask
import stalwart.web


def test_idempotency_exports() -> None:
    assert set(stalwart.idempotency.__all__) == {
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
    }
    for module in (
        stalwart.idempotency,
        stalwart.idempotency.fastapi,
        stalwart.idempotency.flask,
        stalwart.web,
    ):
        for name in module.__all__:
            assert getattr(module, name) is not None, (module.__name__, name)
