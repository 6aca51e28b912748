"""Production settings: read from an AWS Secrets Manager secret (moto's real server), and
refused with a clear message when a secret is missing."""

from __future__ import annotations

import json
import uuid

import boto3
import pytest
from ledger.cli import app
from ledger.settings import LedgerSettings, ProductionSettingsError
from typer.testing import CliRunner

runner = CliRunner()


@pytest.fixture
def secret_id(moto_srv, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_srv.url)
    monkeypatch.setenv("LEDGER_ENV", "production")
    name = f"ledger/{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("LEDGER_SETTINGS_SECRET_ID", name)
    return name


def put_secret(moto_url: str, name: str, values: dict[str, str]) -> None:
    sm = boto3.client("secretsmanager", endpoint_url=moto_url, region_name="us-east-1")
    sm.create_secret(Name=name, SecretString=json.dumps(values))


def test_production_reads_the_store_url_from_secrets_manager(moto_srv, secret_id, tmp_path):
    url = f"sqlite:///{tmp_path}/prod.db?synchronous=full"
    put_secret(
        moto_srv.url,
        secret_id,
        {"store_url": url, "otlp_endpoint": "http://c:4318", "secret_key": "s3cret-" * 6},
    )
    settings = LedgerSettings(_env_file=None)
    assert settings.store_url.get_secret_value() == url
    assert settings.otlp_endpoint == "http://c:4318"
    made = runner.invoke(app, ["keys", "create", "--tenant", "acme"])
    assert made.exit_code == 0, made.output
    assert (tmp_path / "prod.db").exists()


def test_production_without_the_store_url_secret_refuses_to_start(moto_srv, secret_id):
    put_secret(moto_srv.url, secret_id, {"log_level": "INFO"})  # store_url forgotten
    with pytest.raises(ProductionSettingsError, match="LEDGER_STORE_URL is the development"):
        LedgerSettings(_env_file=None)
    refused = runner.invoke(app, ["serve"])
    assert refused.exit_code == 2
    assert "refuses to start" in refused.output
    assert "Traceback" not in refused.output
