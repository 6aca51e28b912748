# Copyright 2026 stalwart contributors
"""JSON encoding without per-call set-up, shared by the storage codecs and idempotency keys."""

from __future__ import annotations

import json
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable


def acyclic_encoder(encoder: json.JSONEncoder) -> Callable[[Any], str]:
    """``encoder.encode`` without the C encoder it builds on every call (about a microsecond).

    The C encoder is built once, without a markers dict: it cannot detect reference cycles (a
    cyclic value recurses until ``RecursionError``) and keeps no state, so threads can share it.
    The arguments are exactly those ``JSONEncoder.iterencode`` passes (``ensure_ascii=False``
    encoders only). Without the C accelerator, ``encoder.encode`` itself.

    >>> compact = acyclic_encoder(json.JSONEncoder(separators=(",", ":"), ensure_ascii=False))
    >>> compact({"a": [1, "é"]})
    '{"a":[1,"é"]}'
    """
    indent: object = encoder.indent  # typeshed omits its None default
    if c_make_encoder is None or encoder.ensure_ascii or indent is not None:
        return encoder.encode
    once = c_make_encoder(
        None,
        encoder.default,
        encode_basestring,
        None,
        encoder.key_separator,
        encoder.item_separator,
        encoder.sort_keys,
        encoder.skipkeys,
        encoder.allow_nan,
    )

    def encode(value: Any) -> str:
        return "".join(once(value, 0))

    return encode
