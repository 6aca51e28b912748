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

from importlib.metadata import version as _version

from stalwart.config import SecretFetcher, Settings
from stalwart.idempotency import IdempotencyError, idempotent
from stalwart.observability import bind, configure_logging, get_logger, metrics_scope, put_metric
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
