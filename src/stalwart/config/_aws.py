"""Secrets Manager calls with a timeout on each call and retries with jittered backoff.

Shared by the settings source (read once at start-up) and the runtime fetcher (read often).
botocore's own retries are turned off so that one policy, ours, decides every attempt.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from stalwart._extras import require_extra
from stalwart.config._errors import SecretError, SecretNotFound, SecretUnavailable

if TYPE_CHECKING:
    from collections.abc import Callable

    from mypy_boto3_secretsmanager import SecretsManagerClient

_NOT_FOUND: Final = frozenset({"ResourceNotFoundException"})
_TRANSIENT: Final = frozenset(
    {
        "InternalServiceError",
        "InternalFailure",
        "ServiceUnavailable",
        "ThrottlingException",
        "Throttling",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)


@dataclass(frozen=True, slots=True)
class SecretPolicy:
    """How secrets are fetched and cached.

    ``ttl_s`` is the cache lifetime, shortened at random by up to ``jitter`` (a fraction) so
    a fleet does not refresh in step. Each Secrets Manager call gets ``timeout_s`` to connect
    and ``timeout_s`` to read; up to ``attempts`` calls are made, sleeping a full-jitter
    backoff (``backoff_s`` doubling, capped at ``backoff_max_s``) between them. When a
    refresh fails, the cached value is served (and logged) for up to ``max_stale_s`` past its
    TTL (None: without limit), and the next refresh is tried after ``error_retry_s``.

    >>> SecretPolicy(ttl_s=60).ttl_s
    60
    """

    ttl_s: float = 300.0
    jitter: float = 0.1
    timeout_s: float = 2.0
    attempts: int = 3
    backoff_s: float = 0.1
    backoff_max_s: float = 2.0
    max_stale_s: float | None = None
    error_retry_s: float = 5.0

    def __post_init__(self) -> None:
        if self.ttl_s <= 0 or self.timeout_s <= 0:
            raise ValueError("ttl_s and timeout_s must be positive")
        if not 0.0 <= self.jitter < 1.0:
            raise ValueError(f"jitter is a fraction of the TTL in [0, 1), got {self.jitter}")
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {self.attempts}")

    def backoff(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """Full-jitter sleep before attempt ``attempt + 1`` (attempts count from 1).

        >>> SecretPolicy(backoff_s=0.1).backoff(1, rng=lambda: 1.0)
        0.1
        """
        return rng() * min(self.backoff_max_s, self.backoff_s * 2.0 ** (attempt - 1))


def secretsmanager_client(
    *,
    region_name: str | None = None,
    endpoint_url: str | None = None,
    timeout_s: float = 2.0,
) -> SecretsManagerClient:
    """A boto3 Secrets Manager client with connect/read timeouts and botocore retries off.

    Region and endpoint default to boto3's usual lookup (``AWS_REGION``/``AWS_DEFAULT_REGION``,
    ``AWS_ENDPOINT_URL_SECRETS_MANAGER``).

    >>> secretsmanager_client(region_name="eu-west-1").meta.region_name
    'eu-west-1'
    """
    boto3 = require_extra("boto3", "aws", feature="AWS Secrets Manager")
    config_mod = require_extra("botocore.config", "aws", feature="AWS Secrets Manager")
    config = config_mod.Config(
        connect_timeout=timeout_s,
        read_timeout=timeout_s,
        retries={"total_max_attempts": 1, "mode": "standard"},
    )
    client: SecretsManagerClient = boto3.client(
        "secretsmanager", region_name=region_name, endpoint_url=endpoint_url, config=config
    )
    return client


@dataclass(frozen=True, slots=True)
class FetchedSecret:
    """One version of a secret as Secrets Manager returned it."""

    value: str
    version_id: str


def _classify(exc: Exception, secret_id: str) -> SecretError | None:
    """A permanent error to raise now, or None when the call is worth another attempt."""
    response: Any = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None  # timeouts and connection errors carry no response: transient
    code = str(response.get("Error", {}).get("Code", ""))
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    if code in _NOT_FOUND:
        return SecretNotFound(f"secret {secret_id!r} not found: {code}")
    if code in _TRANSIENT or status >= 500 or status == 429:
        return None
    return SecretError(f"secret {secret_id!r} could not be read: {code or status}")


def fetch_secret(
    client: SecretsManagerClient,
    secret_id: str,
    policy: SecretPolicy,
    *,
    version_stage: str = "AWSCURRENT",
    sleep: Callable[[float], None] = time.sleep,
) -> FetchedSecret:
    """Read a secret string, retrying transient failures as ``policy`` says.

    Raises :class:`SecretNotFound` at once, :class:`SecretUnavailable` once every attempt
    failed, :class:`SecretError` for other refusals (e.g. access denied) or binary secrets.
    """
    botocore_exceptions = require_extra("botocore.exceptions", "aws", feature="AWS Secrets Manager")
    retryable = (botocore_exceptions.BotoCoreError, botocore_exceptions.ClientError)
    last: Exception | None = None
    for attempt in range(1, policy.attempts + 1):
        try:
            response = client.get_secret_value(SecretId=secret_id, VersionStage=version_stage)
        except retryable as exc:
            permanent = _classify(exc, secret_id)
            if permanent is not None:
                raise permanent from exc
            last = exc
        else:
            if "SecretString" not in response:
                raise SecretError(f"secret {secret_id!r} is binary; only string secrets are read")
            return FetchedSecret(response["SecretString"], response.get("VersionId", ""))
        if attempt < policy.attempts:
            sleep(policy.backoff(attempt))
    raise SecretUnavailable(
        f"secret {secret_id!r}: Secrets Manager failed {policy.attempts} time(s): {last}"
    ) from last
