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


class SecretNotFound(SecretError):
    """Secrets Manager has no such secret, version or stage."""


class SecretUnavailable(SecretError):
    """Secrets Manager failed, throttled or timed out on every attempt."""
