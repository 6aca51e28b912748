"""Settings (.env locally, AWS Secrets Manager in production) and a rotating-secret cache.

>>> from stalwart.config import Settings, SecretFetcher, SecretPolicy
"""

from stalwart.config._aws import FetchedSecret, SecretPolicy, fetch_secret, secretsmanager_client
from stalwart.config._errors import ConfigError, SecretError, SecretNotFound, SecretUnavailable
from stalwart.config._secrets import SecretFetcher
from stalwart.config._settings import Settings, settings_sources

__all__ = [
    "ConfigError",
    "FetchedSecret",
    "SecretError",
    "SecretFetcher",
    "SecretNotFound",
    "SecretPolicy",
    "SecretUnavailable",
    "Settings",
    "fetch_secret",
    "secretsmanager_client",
    "settings_sources",
]
