"""The ledger's settings: ``LEDGER_*`` variables, ``.env`` locally, Secrets Manager in production.

Read once at start-up through :class:`stalwart.config.Settings` (init > environment >
``.env.local`` > ``.env`` > the Secrets Manager JSON secret named by
``LEDGER_SETTINGS_SECRET_ID``, whose keys are the field names: ``{"store_url": "rediss://..."}``).

>>> settings = LedgerSettings(_env_file=None)
>>> settings.env.value, settings.port, settings.store_url.get_secret_value()
('development', 8000, 'sqlite:///./ledger.db?synchronous=full')
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import ClassVar, Final

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from ledger.auth import MAX_KEY_CACHE_S
from stalwart.config import ConfigError, Settings

DEVELOPMENT_STORE_URL: Final = "sqlite:///./ledger.db?synchronous=full"
"""The embedded default: SQLite in ``./ledger.db``, fsync on every commit (a payments ledger
must not lose an acknowledged write to a power cut)."""

DEVELOPMENT_SECRET_KEY: Final = "ledger-development-secret-key-not-for-production"  # noqa: S105
"""The back-office's session secret when ``LEDGER_SECRET_KEY`` is unset in development: the
same in every worker (a random one per process would log people out between workers);
production refuses it."""

LOCAL_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1"})


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class ProductionSettingsError(ConfigError):
    """``LEDGER_ENV=production`` with a development default or a missing secret."""


class LedgerSettings(Settings):
    """Everything ``ledger serve`` and ``create_app`` need; see ``docs/ledger.md``."""

    model_config = SettingsConfigDict(env_prefix="LEDGER_")  # merged with the base config
    # The name of an environment variable, not a secret.
    secrets_manager_secret_id_env: ClassVar[str] = "LEDGER_SETTINGS_SECRET_ID"  # noqa: S105

    env: Environment = Field(
        default=Environment.DEVELOPMENT,
        description="development (embedded defaults, a first key printed at start) or "
        "production (refuses development defaults and missing secrets)",
    )
    # A secret: a Redis, MongoDB or DynamoDB URL may carry a password.
    store_url: SecretStr = Field(
        default=SecretStr(DEVELOPMENT_STORE_URL),
        description="the stalwart storage URL of the ledger",
    )
    host: str = Field(default="127.0.0.1", description="the address uvicorn binds")
    port: int = Field(default=8000, ge=0, le=65535, description="the port uvicorn binds")
    workers: int = Field(
        default=1, ge=1, le=64, description="uvicorn worker processes on one store"
    )
    otlp_endpoint: str | None = Field(
        default=None, description="OTLP/HTTP collector URL; traces are exported only when it is set"
    )
    expire_interval_s: float = Field(
        default=5.0,
        ge=0,
        description="how often each worker voids the pending transfers whose timeout passed "
        "(0: never; jittered so workers do not run in step)",
    )
    webhook_worker: bool = Field(
        default=False,
        description="run the webhook delivery worker inside each `ledger serve` process "
        "(`ledger serve --with-worker`); else run `ledger worker` beside it",
    )
    webhook_retry_schedule_s: list[float] = Field(
        default=[60, 300, 1800, 7200, 18000, 36000, 86400],
        min_length=1,
        description="waits (seconds) after each failed webhook attempt, then dead-letter; "
        "JSON in the environment: LEDGER_WEBHOOK_RETRY_SCHEDULE_S='[60, 300]'",
    )
    webhook_timeout_s: float = Field(
        default=10.0, gt=0, description="the longest one webhook delivery attempt may take"
    )
    webhook_lease_s: float = Field(
        default=60.0,
        gt=0,
        description="how long a worker holds a delivery it claimed (longer than the timeout; "
        "a killed worker's deliveries are taken over after it)",
    )
    webhook_poll_s: float = Field(
        default=1.0, gt=0, description="how often an idle webhook worker looks for due work"
    )
    webhook_breaker_open_s: float = Field(
        default=60.0,
        gt=0,
        description="how long an endpoint's circuit breaker stays open (its deliveries wait, "
        "spending no attempt) before probing",
    )
    request_deadline_s: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="every API request's deadline: a store call still waiting then is cut "
        "and the request answers 503 store-unavailable (keep the store URL's own timeout= "
        "below it)",
    )
    store_breaker_open_s: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="how long the store's circuit breaker, once open (half of the last 20 "
        "store calls failed), answers 503 circuit-open at once before it probes the store",
    )
    api_key_cache_s: float = Field(
        default=1.0,
        ge=0,
        le=MAX_KEY_CACHE_S,
        description="how long each worker trusts an API key it verified without reading it "
        "again (0: read it on every request; at most 2): a revoked key is refused within this",
    )
    log_level: str = Field(default="INFO", description="the root log level")
    metrics_namespace: str = Field(default="Ledger", description="the CloudWatch EMF namespace")
    secret_key: SecretStr | None = Field(
        default=None,
        description="the back-office's session signing secret (required in production; in "
        "development a fixed development key stands in)",
    )
    session_cookie_secure: bool | None = Field(
        default=None,
        description="send the back-office session cookie only over HTTPS (default: yes, unless "
        "the host is 127.0.0.1/localhost)",
    )
    login_attempts: int = Field(
        default=5, ge=1, le=100, description="failed logins in a row that lock an operator out"
    )
    lockout_minutes: float = Field(
        default=15.0, gt=0, description="how long a locked-out operator must wait"
    )
    import_dir: Path = Field(
        default=Path("./ledger-imports"),
        description="where the back-office keeps uploaded import files and their rejects "
        "(shared by all workers)",
    )

    assistant_models: str = Field(
        default="",
        description="the assistant's models in fallback order, comma-separated provider:name "
        "(openai:gpt-4o-mini, anthropic:claude-sonnet-4-5, bedrock:<model id>); a model whose "
        "provider has no key is left out; none left: the deterministic offline assistant",
    )
    openai_api_key: SecretStr | None = Field(default=None, description="OpenAI API key")
    openai_base_url: str | None = Field(
        default=None, description="an OpenAI-compatible server's /v1 URL (no key needed)"
    )
    anthropic_api_key: SecretStr | None = Field(default=None, description="Anthropic API key")

    def session_secret(self) -> str:
        """The back-office's session secret (the development key when none is set)."""
        if self.secret_key is None:
            return DEVELOPMENT_SECRET_KEY
        return self.secret_key.get_secret_value()

    def cookie_secure(self) -> bool:
        """Whether the session cookie carries ``Secure`` (explicit, else not on loopback)."""
        if self.session_cookie_secure is not None:
            return self.session_cookie_secure
        return self.host not in LOCAL_HOSTS

    @model_validator(mode="after")
    def _lease_outlasts_an_attempt(self) -> LedgerSettings:
        if self.webhook_lease_s <= self.webhook_timeout_s:
            raise ValueError("LEDGER_WEBHOOK_LEASE_S must be longer than LEDGER_WEBHOOK_TIMEOUT_S")
        if any(wait <= 0 for wait in self.webhook_retry_schedule_s):
            raise ValueError("every wait of LEDGER_WEBHOOK_RETRY_SCHEDULE_S must be > 0")
        return self

    @model_validator(mode="after")
    def _production_is_explicit(self) -> LedgerSettings:
        if self.env is Environment.PRODUCTION:
            problems = production_problems(self)
            if problems:
                raise ProductionSettingsError(
                    "LEDGER_ENV=production refuses to start: " + "; ".join(problems)
                )
        return self


def production_problems(settings: LedgerSettings) -> list[str]:
    """What keeps ``settings`` from being a production configuration (empty when fine).

    >>> [store, secret] = production_problems(LedgerSettings(_env_file=None))
    >>> store.startswith("LEDGER_STORE_URL is the development default"), secret[:24]
    (True, 'LEDGER_SECRET_KEY is not')
    """
    problems = []
    url = settings.store_url.get_secret_value()
    if not url:
        problems.append("LEDGER_STORE_URL is empty (a missing secret?)")
    elif url == DEVELOPMENT_STORE_URL:
        problems.append(
            "LEDGER_STORE_URL is the development default (a local SQLite file): set it, or "
            "store_url in the secret named by LEDGER_SETTINGS_SECRET_ID"
        )
    elif url.startswith("sqlite:") and ":memory:" in url:
        problems.append("LEDGER_STORE_URL is an in-memory SQLite database: nothing would persist")
    secret = settings.secret_key.get_secret_value() if settings.secret_key is not None else ""
    if not secret or secret == DEVELOPMENT_SECRET_KEY:
        problems.append(
            "LEDGER_SECRET_KEY is not set (the back-office's session secret): set it, or "
            "secret_key in the secret named by LEDGER_SETTINGS_SECRET_ID"
        )
    return problems


__all__ = [
    "DEVELOPMENT_SECRET_KEY",
    "DEVELOPMENT_STORE_URL",
    "Environment",
    "LedgerSettings",
    "ProductionSettingsError",
    "production_problems",
]
