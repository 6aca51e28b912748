from __future__ import annotations

import json
import uuid
from typing import ClassVar

import boto3
import pytest
from botocore.config import Config
from pydantic import BaseModel, SecretStr

from stalwart.config import SecretNotFound, SecretPolicy, Settings, settings_sources


class Database(BaseModel):
    host: str = "localhost"
    port: int = 5432


class AppSettings(Settings):
    app_name: str = "ledger"
    debug: bool = False
    database_password: SecretStr = SecretStr("dev")
    api_token: SecretStr | None = None
    database: Database = Database()


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for var in ("APP_NAME", "DEBUG", "DATABASE_PASSWORD", "API_TOKEN", "SETTINGS_SECRET_ID"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def test_defaults_without_any_source(workdir):
    settings = AppSettings()
    assert settings.app_name == "ledger"
    assert settings.database_password.get_secret_value() == "dev"
    assert settings_sources(AppSettings) == ["init", "environment", "dotenv", "secrets-dir"]


def test_dotenv_then_dotenv_local_then_environment(workdir, monkeypatch):
    (workdir / ".env").write_text(
        "APP_NAME=from-dotenv\nDEBUG=true\nDATABASE_PASSWORD=pw-dotenv\nDATABASE__PORT=6543\n"
    )
    (workdir / ".env.local").write_text("DATABASE_PASSWORD=pw-local\n")
    settings = AppSettings()
    assert settings.app_name == "from-dotenv"
    assert settings.debug is True
    assert settings.database_password.get_secret_value() == "pw-local"
    assert settings.database.port == 6543
    monkeypatch.setenv("APP_NAME", "from-env")
    assert AppSettings().app_name == "from-env"
    assert AppSettings(app_name="init").app_name == "init"


def test_secrets_never_show_in_repr(workdir):
    (workdir / ".env").write_text("DATABASE_PASSWORD=hunter2\n")
    settings = AppSettings()
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings.model_dump())


@pytest.fixture
def settings_secret(moto_srv):
    client = boto3.client(
        "secretsmanager",
        endpoint_url=moto_srv.url,
        config=Config(connect_timeout=5, read_timeout=5),
    )
    name = f"ledger/{uuid.uuid4().hex[:10]}"
    client.create_secret(
        Name=name,
        SecretString=json.dumps(
            {
                "DATABASE_PASSWORD": "prod-pw",
                "api_token": "prod-token",
                "app_name": "ledger-prod",
                "database": {"host": "db.internal", "port": 5433},
            }
        ),
    )
    return name


def settings_with_moto(url: str) -> type[AppSettings]:
    class ProdSettings(AppSettings):
        secrets_manager_endpoint_url: ClassVar[str | None] = url
        secrets_manager_region: ClassVar[str | None] = "us-east-1"
        secrets_policy: ClassVar[SecretPolicy] = SecretPolicy(timeout_s=2.0, attempts=2)

    return ProdSettings


def test_settings_from_secrets_manager(workdir, monkeypatch, moto_srv, settings_secret):
    monkeypatch.setenv("SETTINGS_SECRET_ID", settings_secret)
    prod = settings_with_moto(moto_srv.url)
    assert "aws-secrets-manager" in settings_sources(prod)
    settings = prod()
    assert settings.database_password.get_secret_value() == "prod-pw"
    assert settings.api_token is not None
    assert settings.api_token.get_secret_value() == "prod-token"
    assert settings.app_name == "ledger-prod"
    assert settings.database == Database(host="db.internal", port=5433)


def test_environment_and_dotenv_override_secrets_manager(
    workdir, monkeypatch, moto_srv, settings_secret
):
    monkeypatch.setenv("SETTINGS_SECRET_ID", settings_secret)
    monkeypatch.setenv("APP_NAME", "from-env")
    (workdir / ".env").write_text("API_TOKEN=from-dotenv\n")
    settings = settings_with_moto(moto_srv.url)()
    assert settings.app_name == "from-env"
    assert settings.api_token is not None
    assert settings.api_token.get_secret_value() == "from-dotenv"
    assert settings.database_password.get_secret_value() == "prod-pw"


def test_secret_id_as_a_class_attribute(workdir, moto_srv, settings_secret):
    base = settings_with_moto(moto_srv.url)

    class Pinned(base):  # type: ignore[valid-type,misc]
        secrets_manager_secret_id: ClassVar[str | None] = settings_secret

    assert Pinned().app_name == "ledger-prod"


def test_missing_settings_secret_fails_loudly(workdir, monkeypatch, moto_srv):
    monkeypatch.setenv("SETTINGS_SECRET_ID", "does-not-exist")
    with pytest.raises(SecretNotFound, match="does-not-exist"):
        settings_with_moto(moto_srv.url)()
