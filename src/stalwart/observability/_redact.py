"""Redaction of secret values by key name and by type, through nested dicts and lists."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretBytes, SecretStr

REDACTED = "[REDACTED]"

DEFAULT_SECRET_KEYS: tuple[str, ...] = (
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "authorization",
    "api_key",
    "apikey",
    "cookie",
    "session",
    "credential",
    "private_key",
    "signature",
)

# Scalars that cannot hide a secret inside them; checked first because they are most values.
_PLAIN = (str, int, float, bool, type(None))


@dataclass(frozen=True, slots=True)
class Redactor:
    """Replace values whose key contains one of ``keys`` (case-insensitive; ``-`` counts as
    ``_``) and every ``SecretStr``/``SecretBytes``, at any depth.

    >>> Redactor()({"user": "ada", "headers": {"Authorization": "Bearer x"}})
    {'user': 'ada', 'headers': {'Authorization': '[REDACTED]'}}
    """

    keys: tuple[str, ...] = DEFAULT_SECRET_KEYS
    replacement: str = REDACTED
    _matches: Callable[[str], bool] = field(init=False, repr=False, compare=False)
    _verdicts: dict[str, bool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        pattern = re.compile("|".join(re.escape(k.lower().replace("-", "_")) for k in self.keys))
        cache: dict[str, bool] = {}

        def matches(key: str) -> bool:
            # Key names repeat endlessly in logs: memoise the regex verdict per key.
            hit = cache.get(key)
            if hit is None:
                hit = bool(self.keys) and pattern.search(key.lower().replace("-", "_")) is not None
                if len(cache) < 4096:
                    cache[key] = hit
            return hit

        object.__setattr__(self, "_matches", matches)
        object.__setattr__(self, "_verdicts", cache)

    def __call__(self, values: Mapping[str, Any]) -> dict[str, Any]:
        return self.mapping(values)

    def mapping(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """A redacted copy of ``values``."""
        out: dict[str, Any] = {}
        verdicts = self._verdicts
        for key, value in values.items():
            # The memo is read inline: this loop runs for every field of every log line.
            secret = verdicts.get(key)
            if secret is None:
                secret = isinstance(key, str) and self._matches(key)
            if secret:
                out[key] = self.replacement
            elif type(value) in _PLAIN:
                out[key] = value
            else:
                out[key] = self.value(value)
        return out

    def value(self, value: Any) -> Any:
        """A redacted copy of one value (secrets replaced, containers walked)."""
        if type(value) in _PLAIN:
            return value
        if isinstance(value, SecretStr | SecretBytes):
            return self.replacement
        if isinstance(value, Mapping):
            return self.mapping(value)
        if isinstance(value, list | tuple | set | frozenset):
            return [self.value(item) for item in value]
        return value
