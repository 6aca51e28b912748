"""stalwart: production-hardening building blocks for Python backends.

The most used names are re-exported here; each concern has its own subpackage with the full
API: :mod:`stalwart.resilience`, :mod:`stalwart.storage`, :mod:`stalwart.idempotency`,
:mod:`stalwart.observability`, :mod:`stalwart.config`, :mod:`stalwart.web`. Engine and framework
integrations (``stalwart.storage.redis``, ``stalwart.idempotency.fastapi``, ...) are imported
from their own modules so that ``import stalwart`` needs no optional extra.

>>> import stalwart
>>> store = stalwart.open_store("sqlite:///:memory:?table=demo")
>>> store.create(stalwart.Key("acct-1"), {"cents": 0}).version
1
>>> store.close()
"""

from importlib import import_module
from importlib.metadata import version as _version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stalwart.config import SecretFetcher, Settings
    from stalwart.idempotency import IdempotencyError, idempotent
    from stalwart.observability import (
        bind,
        configure_logging,
        get_logger,
        metrics_scope,
        put_metric,
    )
    from stalwart.resilience import (
        CircuitBreaker,
        CircuitOpen,
        DeadlineExceeded,
        ResilienceError,
        deadline,
        fallback,
        remaining,
        resilient,
        retry,
    )
    from stalwart.storage import (
        AlreadyExists,
        Key,
        Record,
        StorageError,
        StoreUnavailable,
        VersionConflict,
        open_async_store,
        open_store,
    )

# Loaded on first use, so `import stalwart.observability` does not import every subpackage.
_LAZY: dict[str, str] = {
    "SecretFetcher": "stalwart.config",
    "Settings": "stalwart.config",
    "IdempotencyError": "stalwart.idempotency",
    "idempotent": "stalwart.idempotency",
    "bind": "stalwart.observability",
    "configure_logging": "stalwart.observability",
    "get_logger": "stalwart.observability",
    "metrics_scope": "stalwart.observability",
    "put_metric": "stalwart.observability",
    "CircuitBreaker": "stalwart.resilience",
    "CircuitOpen": "stalwart.resilience",
    "DeadlineExceeded": "stalwart.resilience",
    "ResilienceError": "stalwart.resilience",
    "deadline": "stalwart.resilience",
    "fallback": "stalwart.resilience",
    "remaining": "stalwart.resilience",
    "resilient": "stalwart.resilience",
    "retry": "stalwart.resilience",
    "AlreadyExists": "stalwart.storage",
    "Key": "stalwart.storage",
    "Record": "stalwart.storage",
    "StorageError": "stalwart.storage",
    "StoreUnavailable": "stalwart.storage",
    "VersionConflict": "stalwart.storage",
    "open_async_store": "stalwart.storage",
    "open_store": "stalwart.storage",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'stalwart' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__version__ = _version("stalwart")

__all__ = [
    "AlreadyExists",
    "CircuitBreaker",
    "CircuitOpen",
    "DeadlineExceeded",
    "IdempotencyError",
    "Key",
    "Record",
    "ResilienceError",
    "SecretFetcher",
    "Settings",
    "StorageError",
    "StoreUnavailable",
    "VersionConflict",
    "__version__",
    "bind",
    "configure_logging",
    "deadline",
    "fallback",
    "get_logger",
    "idempotent",
    "metrics_scope",
    "open_async_store",
    "open_store",
    "put_metric",
    "remaining",
    "resilient",
    "retry",
]
