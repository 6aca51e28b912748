"""Errors of the config package.

ConfigError
└── SecretError             a secret could not be read
    ├── SecretNotFound      Secrets Manager has no such secret (or stage)
    └── SecretUnavailable   Secrets Manager failed or timed out on every attempt
"""

from __future__ import annotations


class ConfigError(Exception):
    """Root of every error raised by ``stalwart.config``."""


class SecretError(ConfigError):
    """A secret could not be read; the message names it (never its value)."""


class SecretNotFound(SecretError):  # noqa: N818 - reads as a state, like KeyError's cousins
    """Secrets Manager has no such secret, version or stage."""


class SecretUnavailable(SecretError):  # noqa: N818 - transient: a retry later may succeed
    """Secrets Manager failed, throttled or timed out on every attempt."""
