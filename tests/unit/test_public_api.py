"""The curated top-level API, and that it needs no optional extra."""

from __future__ import annotations

import subprocess
import sys

import pytest

import stalwart

EXPECTED = {
    "AlreadyExists", "CircuitBreaker", "CircuitOpen", "DeadlineExceeded", "IdempotencyError",
    "Key", "Record", "ResilienceError", "SecretFetcher", "Settings", "StorageError",
    "StoreUnavailable", "VersionConflict", "__version__", "bind", "configure_logging",
    "deadline", "fallback", "get_logger", "idempotent", "metrics_scope", "open_async_store",
    "open_store", "put_metric", "remaining", "resilient", "retry",
}  # fmt: skip

OPTIONAL = ("redis", "boto3", "botocore", "aiobotocore", "pymongo", "fastapi", "flask",
            "pandas", "pydantic_ai", "opentelemetry")  # fmt: skip


def test_all_is_the_curated_list() -> None:
    assert set(stalwart.__all__) == EXPECTED
    assert sorted(stalwart.__all__) == stalwart.__all__
    for name in stalwart.__all__:
        assert getattr(stalwart, name) is not None


def test_lazy_names_match_all() -> None:
    assert set(stalwart._LAZY) | {"__version__"} == set(stalwart.__all__)


def test_import_needs_no_optional_extra() -> None:
    """Block every optional package, then import stalwart and its core subpackages."""
    blocked = ", ".join(repr(name) for name in OPTIONAL)
    program = f"""
import sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ({blocked}):
            raise ImportError(f"blocked {{name}}")
sys.meta_path.insert(0, Blocker())
import stalwart, stalwart.resilience, stalwart.storage, stalwart.storage.sqlite
import stalwart.idempotency, stalwart.observability, stalwart.config, stalwart.web
import stalwart.http
store = stalwart.open_store("sqlite:///:memory:?table=t")
assert store.create(stalwart.Key("a"), {{}}).version == 1
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


@pytest.mark.parametrize(
    ("missing", "module", "extra"),
    [("redis", "stalwart.storage.redis", "redis"), ("pandas", "stalwart.frames", "pandas")],
)
def test_missing_extra_names_the_extra(missing: str, module: str, extra: str) -> None:
    program = f"""
import sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == {missing!r}:
            raise ImportError("blocked")
sys.meta_path.insert(0, Blocker())
try:
    import {module}
except ImportError as exc:
    print(exc)
"""
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    assert f"stalwart[{extra}]" in done.stdout, done.stdout + done.stderr
