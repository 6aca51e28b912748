"""The ``Ledger-Signature`` header (Stripe's scheme): ``t=<unix seconds>,v1=<hex>`` where the
hex is HMAC-SHA256 of ``f"{t}.{body}"`` under the endpoint's secret.

>>> header = signature_header("whsec_test", b'{"id": "evt_1"}', timestamp=1_700_000_000)
>>> header[:13]
't=1700000000,'
>>> verify_signature("whsec_test", header, b'{"id": "evt_1"}', now=1_700_000_100)
1700000000
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Final

SIGNATURE_HEADER: Final = "Ledger-Signature"
DEFAULT_TOLERANCE_S: Final = 300


class InvalidSignature(ValueError):
    """The header is malformed, stale, or no ``v1`` signature matches the body."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``f"{timestamp}.{body}"`` under ``secret``."""
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_header(secret: str, body: bytes, *, timestamp: int | None = None) -> str:
    """The ``Ledger-Signature`` value for ``body`` sent now (or at ``timestamp``)."""
    at = int(time.time()) if timestamp is None else timestamp
    return f"t={at},v1={sign(secret, at, body)}"


def verify_signature(
    secret: str,
    header: str,
    body: bytes,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    *,
    now: float | None = None,
) -> int:
    """Check a delivery: return its timestamp, or raise :class:`InvalidSignature` when the
    header is malformed, its timestamp is more than ``tolerance_s`` away from now (a replayed
    delivery), or no ``v1`` entry matches (compared in constant time). ``body`` must be the
    raw bytes received, before any JSON parsing."""
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        raise InvalidSignature(f"{SIGNATURE_HEADER} needs t=<unix seconds> and v1=<hex>")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        raise InvalidSignature(f"the signature's timestamp is more than {tolerance_s} s old")
    expected = sign(secret, timestamp, body)
    # Every candidate is compared (no early exit) so timing says nothing about which matched.
    matched = [hmac.compare_digest(expected, candidate) for candidate in candidates]
    if not any(matched):
        raise InvalidSignature("no signature matches the body")
    return timestamp
