"""A pydantic-settings base: init kwargs > environment > ``.env.local`` > ``.env`` > AWS
Secrets Manager > defaults.

Local development reads ``.env`` (and an uncommitted ``.env.local`` that overrides it);
production sets the id of one JSON secret (``SETTINGS_SECRET_ID`` by default) whose keys map
to fields, read once at start-up through pydantic-settings' own Secrets Manager source with
our timeout and retry policy.
"""

import os
from typing import TYPE_CHECKING, ClassVar

from pydantic_settings import (
    AWSSecretsManagerSettingsSource,
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from stalwart.config._aws import SecretPolicy, fetch_secret, secretsmanager_client
from stalwart.config._errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from mypy_boto3_secretsmanager import SecretsManagerClient


class _SecretsManagerSource(AWSSecretsManagerSettingsSource):
    """pydantic-settings' source, but every call goes through :func:`fetch_secret`."""

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        secret_id: str,
        client: "SecretsManagerClient",
        policy: SecretPolicy,
    ) -> None:
        self._stalwart_client = client
        self._stalwart_policy = policy
        super().__init__(
            settings_cls,
            secret_id,
            region_name=client.meta.region_name,
            endpoint_url=client.meta.endpoint_url,
            case_sensitive=False,
            env_prefix="",
            env_nested_delimiter="__",
        )

    def _load_env_vars(self) -> "Mapping[str, str | None]":
        import json  # noqa: PLC0415 - only needed on this path

        fetched = fetch_secret(self._stalwart_client, self._secret_id, self._stalwart_policy)
        try:
            values = json.loads(fetched.value)
        except json.JSONDecodeError as exc:
            msg = f"settings secret {self._secret_id!r} is not JSON"
            raise ConfigError(msg) from exc
        if not isinstance(values, dict):
            raise ConfigError(f"settings secret {self._secret_id!r} is not a JSON object")
        # Nested objects are passed as JSON text, which pydantic parses into the field's type.
        return {
            str(k).lower(): v if isinstance(v, str) or v is None else json.dumps(v)
            for k, v in values.items()
        }


class Settings(BaseSettings):
    """Base class for an application's settings; declare fields, type secrets ``SecretStr``.

    Class attributes tune the Secrets Manager source: ``secrets_manager_secret_id`` (or the
    environment variable named by ``secrets_manager_secret_id_env``), ``secrets_policy``, and
    ``secrets_manager_endpoint_url`` (else boto3's ``AWS_ENDPOINT_URL_SECRETS_MANAGER``).

    >>> from pydantic import SecretStr
    >>> class AppSettings(Settings):
    ...     database_url: str = "sqlite:///app.db"
    ...     api_token: SecretStr = SecretStr("dev-token")
    >>> AppSettings(_env_file=None).api_token
    SecretStr('**********')
    """

    model_config = SettingsConfigDict(
        env_file=(".env", ".env.local"),
        env_file_encoding="utf-8",
        env_nested_delimiter="__",
        extra="ignore",
    )

    secrets_manager_secret_id: ClassVar[str | None] = None
    # The name of an environment variable, not a secret.
    secrets_manager_secret_id_env: ClassVar[str] = "SETTINGS_SECRET_ID"  # noqa: S105
    secrets_manager_endpoint_url: ClassVar[str | None] = None
    secrets_manager_region: ClassVar[str | None] = None
    secrets_policy: ClassVar[SecretPolicy] = SecretPolicy()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings, dotenv_settings]
        secret_id = cls.secrets_manager_secret_id or os.environ.get(
            cls.secrets_manager_secret_id_env
        )
        if secret_id:
            client = secretsmanager_client(
                region_name=cls.secrets_manager_region,
                endpoint_url=cls.secrets_manager_endpoint_url,
                timeout_s=cls.secrets_policy.timeout_s,
            )
            sources.append(
                _SecretsManagerSource(settings_cls, secret_id, client, cls.secrets_policy)
            )
        sources.append(file_secret_settings)
        return tuple(sources)


def settings_sources(settings_cls: type[Settings]) -> list[str]:
    """Names of the sources ``settings_cls`` reads, highest priority first (for diagnostics).

    >>> settings_sources(Settings)[:3]
    ['init', 'environment', 'dotenv']
    """
    names = ["init", "environment", "dotenv"]
    if settings_cls.secrets_manager_secret_id or os.environ.get(
        settings_cls.secrets_manager_secret_id_env
    ):
        names.append("aws-secrets-manager")
    names.append("secrets-dir")
    return names
