"""Webhooks: the outbox events of transfers, their delivery to tenants' endpoints, and the
signature a receiver verifies (:func:`verify_signature`). See docs/ledger.md#webhooks."""

from ledger.webhooks.signature import (
    SIGNATURE_HEADER,
    InvalidSignature,
    sign,
    signature_header,
    verify_signature,
)

__all__ = ["SIGNATURE_HEADER", "InvalidSignature", "sign", "signature_header", "verify_signature"]
